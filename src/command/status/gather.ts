/**
 * What `status` reports, gathered: the sync and its daemon, the master's position, the archiver,
 * the repositories, the standbys, the slave directory, replay and backups. Everything that cannot
 * be read is reported, with why, rather than failing the command; every wait is bounded
 * (monitor/timeout.ts).
 */
import { hostname } from "node:os";
import { posix } from "node:path";
import type { Context } from "../../context";
import { slaveLayout, type SlaveLayout } from "../../slavedir/layout";
import { connectMaster, type Db } from "../../pg/client";
import { readPidfile } from "../../slavedir/pidfile";
import { readDaemonState, type DaemonState } from "../../slavedir/daemon-state";
import { readPeriodicState } from "../../slavedir/periodic-state";
import { foreignHolder, newestLocalTimeline, systemIdentifier, type MasterSource } from "../sync/master-source";
import { readSyncState, SYNC_LOCK, syncStateTimeline, type SyncState } from "../../slavedir/sync-state";
import { readSyncLock } from "../../monitor/sync-lock";
import { driverFor } from "../../storage/open";
import {
  DEFAULT_SEGMENT_SIZE,
  judge,
  lagOf,
  readRegistry,
  standbyExpireSeconds,
  standbyName,
  type JudgedStandby,
} from "../../slavedir/standbys";
import { formatLsn, isWalSegmentSize, parseLsn, segmentNumber, tryParseLsn } from "../../wal/names";
import { formatLocation, sameStorage } from "../../config/load";
import { archiveRepositories } from "../archive/repositories";
import { archiverStats, readyBacklog, type ArchiverStats } from "../../monitor/archiver";
import { backupsStatus } from "../../monitor/backups";
import {
  controlFiles,
  freeDisk,
  newestSegment,
  partialSegment,
  segmentFile,
  type SegmentFile,
  type SlaveDirStatus,
} from "../../monitor/slave-dir";
import { standbyReplay } from "../../monitor/standby-replay";
import type { ArchiverStatus, RepositoryStatus, StandbyStatus, Status } from "../../monitor/status-report";
import {
  Budget,
  DB_TIMEOUT_MS,
  errorText,
  STORAGE_BUDGET_MS,
  STORAGE_TIMEOUT_S,
  withTimeout,
} from "../../monitor/timeout";

/** Each repository the master archives to (only with also_archive_to), and how far behind it is. */
async function gatherRepositories(ctx: Context): Promise<RepositoryStatus[] | undefined> {
  if (ctx.config.role !== "master" || !ctx.config.has("also_archive_to")) return undefined;
  // A repository that is down must not hang status: a short timeout, one retry.
  const repos = archiveRepositories(ctx.config, 5);
  const out = await Promise.all(
    repos.map(async (r): Promise<RepositoryStatus> => {
      const base = { name: r.name, location: formatLocation(r.loc), behindSegments: null };
      try {
        const names = await withTimeout(r.archive.driver.list(r.loc.path), STORAGE_BUDGET_MS, r.name);
        const newest = newestSegment(names ?? []);
        return newest === undefined ? base : { ...base, newestSegment: newest };
      } catch (err) {
        return { ...base, error: errorText(err) };
      }
    }),
  );
  const top = newestSegment(out.flatMap((r) => (r.newestSegment !== undefined ? [r.newestSegment] : [])));
  for (const r of out) {
    if (r.error !== undefined || top === undefined) continue;
    // Counted as the standbys' lag is, at the default segment size.
    r.behindSegments = r.newestSegment === undefined ? null : lagOf(r.newestSegment, top).segments;
  }
  return out;
}

/** The standby registry in completed_wals (listed as `names`), and how far each is behind `newest`. */
async function gatherStandbys(
  ctx: Context,
  layout: SlaveLayout,
  names: string[],
  newest: string | undefined,
  segSize: number,
  now: number,
): Promise<StandbyStatus[]> {
  const entries = await readRegistry(layout.driver, layout.completed.path, names);
  const expire = standbyExpireSeconds(ctx.config);
  return entries.map((e): StandbyStatus => {
    const j: JudgedStandby = judge(e, expire, now);
    const lag =
      j.restartpoint !== undefined && newest !== undefined ? lagOf(j.restartpoint, newest, segSize) : undefined;
    return {
      name: j.name,
      restartPoint: j.restartpoint ?? null,
      ...(j.host !== undefined ? { host: j.host } : {}),
      ...(j.slaveData !== undefined ? { slaveData: j.slaveData } : {}),
      updated: Number.isFinite(j.updatedMs) ? new Date(j.updatedMs).toISOString() : null,
      ageSeconds: Number.isFinite(j.ageSeconds) ? Math.round(j.ageSeconds * 10) / 10 : null,
      state: j.live ? "live" : "expired",
      behindSegments: lag?.segments ?? null,
      behindBytes: lag?.bytes ?? null,
      ...(j.legacy ? { legacy: true } : {}),
    };
  });
}

function secondsSince(iso: string | undefined, now: number): number {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? Math.max(0, (now - t) / 1000) : NaN;
}

/**
 * The slave directory with a driver whose requests time out after STORAGE_TIMEOUT_S (an ssh or
 * S3 slave directory that does not answer must not hang status; ssh_timeout/s3_timeout are
 * sized for shipping, not for a look).
 */
function statusLayout(ctx: Context): SlaveLayout {
  const layout = slaveLayout(ctx.config, "status");
  return { ...layout, driver: driverFor(layout.completed, ctx.config, { timeout: STORAGE_TIMEOUT_S }) };
}

/** The daemon's state, from its pidfile (master) or its heartbeat in partial_wals. */
function daemonStatus(ctx: Context, hb: DaemonState | undefined, now: number): Status["daemon"] {
  const role = ctx.config.role;
  const hbAge = secondsSince(hb?.heartbeat, now);
  const hbFields = hb
    ? {
        heartbeat: hb.heartbeat,
        loopDelay: hb.loopDelay,
        mode: hb.mode,
        failures: hb.failures,
        ...(hb.lastError ? { lastError: hb.lastError } : {}),
      }
    : {};
  const pidfile = role === "master" ? ctx.config.path("pidfile") : undefined;
  if (pidfile) {
    const st = readPidfile(pidfile, ctx.config.file);
    if (st.kind === "running") {
      return { state: "running", pid: st.pid, pidfile, detail: `running (pid ${st.pid})`, ...hbFields };
    } else if (st.kind === "stale") {
      return { state: "stale", pid: st.pid, pidfile, detail: `not running: stale pidfile (${st.why})` };
    } else if (st.kind === "unknown") {
      return { state: "unknown", pid: st.pid, pidfile, detail: `cannot tell: ${st.why}` };
    } else if (st.kind === "invalid") {
      return { state: "unknown", pidfile, detail: `pidfile ${pidfile} does not hold a pid` };
    }
    return { state: "not running", pidfile, detail: `not running (no ${pidfile})` };
  }
  const masterData = role === "master" ? ctx.config.path("master_data") : undefined;
  if (
    hb &&
    masterData !== undefined &&
    hb.masterData !== undefined &&
    (hb.masterData !== masterData || hb.host !== hostname())
  ) {
    // A master without pidfile: the heartbeat there is another master's daemon (an old master's after a failover).
    return {
      state: "unknown",
      detail: `no heartbeat of this master's daemon: the one in partial_wals is of a daemon shipping ${hb.host}:${hb.masterData}${hb.timeline !== undefined ? ` (timeline ${hb.timeline})` : ""}, pid ${hb.pid}, last heard at ${hb.heartbeat}`,
    };
  }
  if (hb) {
    // The slave side (or a master without pidfile) knows the daemon by its heartbeat only.
    const limit = Math.max(3 * hb.loopDelay, 30) + 5;
    const where = `pid ${hb.pid} on ${hb.host === hostname() ? "this host" : hb.host}`;
    if (hb.stopped) {
      return { state: "stopped", pid: hb.pid, host: hb.host, detail: `stopped at ${hb.stopped} (${where})` };
    }
    if (hbAge <= limit) {
      return {
        state: "running",
        pid: hb.pid,
        host: hb.host,
        detail: `running (${where}, heard from ${hbAge.toFixed(1)} s ago)`,
        ...hbFields,
      };
    }
    return {
      state: "stale",
      pid: hb.pid,
      host: hb.host,
      detail: `not heard from for ${hbAge.toFixed(0)} s (${where}): not running?`,
      ...hbFields,
    };
  }
  return {
    state: "unknown",
    detail: role === "master" ? "pidfile is not set and no daemon has run" : "no daemon has shipped here",
  };
}

/**
 * The master's side, over one connection to master_db: its WAL position against what was
 * shipped (when the sync state has an LSN), and pg_stat_archiver. Bounded by DB_TIMEOUT_MS.
 */
async function askMaster(
  ctx: Context,
  sync: SyncState | undefined,
): Promise<{ master?: NonNullable<Status["master"]>; stats?: ArchiverStats; error?: string }> {
  const syncLsn = sync?.lsn || undefined;
  // Not configured is not an error: the archiver's counters are then simply not shown.
  if (!ctx.config.has("master_db")) return {};
  let db: Db | undefined;
  try {
    db = await withTimeout(connectMaster(ctx.config, "status"), DB_TIMEOUT_MS, "the master", (late) => {
      void late.close();
    });
    const conn = db;
    return await withTimeout(
      (async () => {
        // A server that accepted the connection and then stalls must not hold status up.
        await conn.query("SET statement_timeout = 5000");
        let master: Status["master"];
        if (sync && syncLsn) {
          const v10 = conn.serverVersion >= 100000;
          const fn = v10 ? "pg_current_wal_lsn()" : "pg_current_xlog_location()";
          const file = v10 ? "pg_walfile_name" : "pg_xlogfile_name";
          const row = await conn.one<{ lsn: string; file: string }>(
            `SELECT ${fn}::text AS lsn, ${file}(${fn}) AS file`,
          );
          const timeline = Number.parseInt(row.file.slice(0, 8), 16);
          master = {
            lsn: row.lsn,
            timeline,
            ...behind(sync, row.lsn, timeline, systemIdentifier(ctx.config.path("master_data") ?? "")),
            asOf: new Date().toISOString(),
          };
        }
        const stats = await archiverStats(conn);
        return master ? { master, stats } : { stats };
      })(),
      DB_TIMEOUT_MS,
      `the master (${conn.where})`,
    );
  } catch (err) {
    return { error: errorText(err) };
  } finally {
    await db?.close();
  }
}

/**
 * Why the last sync's position cannot be compared with the master's (another timeline, another
 * database system), or undefined when it can: positions of two timelines share numbers, not
 * WAL, so their difference means nothing (an old master left running after a failover ships
 * its own timeline, ahead of the new master's position).
 */
export function notComparable(
  sync: SyncState,
  masterTimeline: number | undefined,
  masterSystem: string | undefined,
): string | undefined {
  const syncTli = syncStateTimeline(sync);
  if (syncTli !== undefined && masterTimeline !== undefined && syncTli !== masterTimeline) {
    return `last sync was of timeline ${syncTli} (another master, or this one before the failover); this master is on timeline ${masterTimeline}: nothing of it shipped yet by sync`;
  }
  if (sync.systemId !== undefined && masterSystem !== undefined && sync.systemId !== masterSystem) {
    return `last sync was of database system ${sync.systemId}, this master is system ${masterSystem}: another cluster ships into this slave directory; nothing of this master shipped yet by sync`;
  }
  return undefined;
}

/** How far the master (at `lsn` on `timeline`) is ahead of the last sync; never negative. */
function behind(
  sync: SyncState,
  lsn: string,
  timeline: number | undefined,
  system: string | undefined,
): { bytesBehind: number | null; notComparable?: string } {
  const why = notComparable(sync, timeline, system);
  if (why !== undefined) return { bytesBehind: null, notComparable: why };
  let d: bigint;
  try {
    d = parseLsn(lsn) - parseLsn(sync.lsn);
  } catch {
    return { bytesBehind: null };
  }
  if (d < 0n) {
    // One master's position never goes back: the state was written by another writer.
    return {
      bytesBehind: null,
      notComparable: `last sync (${sync.lsn}) is ahead of this master (${formatLsn(parseLsn(lsn))}) on the same timeline: it was shipped by another master (or the master was restored since)`,
    };
  }
  return { bytesBehind: Number(d) };
}

/** The archiver part of the master's status. */
function archiverStatus(ctx: Context, asked: { stats?: ArchiverStats; error?: string }, now: number): ArchiverStatus {
  const out: ArchiverStatus = { ready: null, stats: asked.stats ?? null };
  if (asked.error !== undefined) out.statsError = asked.error;
  const data = ctx.config.path("master_data");
  if (data === undefined) {
    out.readyError = "master_data is not set";
  } else {
    try {
      out.ready = readyBacklog(data, now);
    } catch (err) {
      out.readyError = errorText(err);
    }
  }
  return out;
}

/**
 * What status sees in the slave directory, within `budget`: `listed` is completed_wals' listing
 * (or why it failed), `stateError` why the state files in partial_wals could not be read.
 */
async function gatherSlaveDir(
  ctx: Context,
  layout: SlaveLayout,
  listed: { names?: string[]; error?: string },
  newest: SegmentFile | null,
  newestError: string | undefined,
  sync: SyncState | undefined,
  stateError: string | undefined,
  now: number,
  budget: Budget,
): Promise<SlaveDirStatus> {
  const out: SlaveDirStatus = {
    location: formatLocation(ctx.config.location("slave") ?? layout.completed),
    ...(listed.error !== undefined ? { error: listed.error } : {}),
    newestSegment: newest,
    ...(newestError !== undefined ? { newestSegmentError: newestError } : {}),
    partial: null,
    controlFiles: await controlFiles(ctx.config, layout.completed, layout.driver, now, budget),
    freeDisk: freeDisk(layout.completed),
  };
  if (layout.partial !== undefined) {
    const dir = layout.partial.path;
    try {
      out.partial = await budget.run(() => partialSegment(layout.driver, dir, sync, now));
    } catch (err) {
      out.partialError = errorText(err);
    }
  }
  // The sync and daemon state files are in partial_wals: a failure to read them is its failure.
  if (stateError !== undefined && out.partialError === undefined) out.partialError = stateError;
  return out;
}

/** Bytes from `lsn` to the end of the segment `newest` (of `segSize` bytes); null when unknown. */
function bytesToEndOf(newest: string | undefined, segSize: number, lsn: string | null | undefined): number | null {
  if (newest === undefined || !lsn) return null;
  try {
    const end = (segmentNumber(newest, segSize) + 1n) * BigInt(segSize);
    const d = end - parseLsn(lsn);
    // Streaming can take a standby past the archive: then it is not behind it.
    return d > 0n ? Number(d) : 0;
  } catch {
    return null;
  }
}

/**
 * Gathers the status. Nothing waits without a limit: the databases get DB_TIMEOUT_MS, the slave
 * directory STORAGE_BUDGET_MS for all its reads; the database, the slave directory, the
 * repositories and the standby server are asked at the same time.
 */
export async function gatherStatus(ctx: Context, now = Date.now()): Promise<Status> {
  const role = ctx.config.role;
  const layout = statusLayout(ctx);
  const dir = ctx.config.requireLocation("partial_wals", "status").path;
  const budget = new Budget(STORAGE_BUDGET_MS, `the slave directory (${layout.driver.description})`);
  let storageError: string | undefined;
  const tryRead = async <T>(fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await budget.run(fn);
    } catch (err) {
      storageError ??= errorText(err);
      return undefined;
    }
  };
  const sync = await tryRead(() => readSyncState(layout, dir));
  const hb = await tryRead(() => readDaemonState(layout, dir));
  const status: Status = {
    role,
    job: ctx.config.jobName,
    time: new Date(now).toISOString(),
    daemon: daemonStatus(ctx, hb, now),
  };
  if (sync) {
    const timeline = syncStateTimeline(sync);
    status.lastSync = {
      ...sync,
      ...(timeline !== undefined ? { timeline } : {}),
      secondsAgo: secondsSince(sync.time, now),
    };
  }

  const lock = await tryRead(() => readSyncLock(layout.driver, dir, now));
  const masterLane = role === "master" ? askMaster(ctx, sync) : undefined;
  const reposLane = gatherRepositories(ctx);
  const replayLane = role === "slave" ? standbyReplay(ctx.config, now) : undefined;

  // The slave directory, one read after the other (an ssh session is one channel).
  if (role === "master" && ctx.config.has("periodic_command")) {
    const p = await tryRead(() => readPeriodicState(layout, dir));
    if (p) status.periodic = p;
  }
  const listed: { names?: string[]; error?: string } = {};
  try {
    const names = await budget.run(() => layout.driver.list(layout.completed.path));
    listed.names = names ?? [];
    if (names === undefined) {
      listed.error = `${formatLocation(layout.completed)} does not exist: run wal-ctl CONFIG setup`;
    }
  } catch (err) {
    listed.error = errorText(err);
  }
  const newestName = listed.names !== undefined ? newestSegment(listed.names) : undefined;
  let newest: SegmentFile | null = null;
  let newestError: string | undefined;
  if (newestName !== undefined) {
    try {
      newest = await budget.run(() => segmentFile(layout.driver, layout.completed.path, newestName, now));
    } catch (err) {
      newestError = errorText(err);
    }
  }
  const segSize = newest?.bytes != null && isWalSegmentSize(newest.bytes) ? newest.bytes : DEFAULT_SEGMENT_SIZE;
  if (listed.names !== undefined) {
    // A folder that does not exist (yet) lists no standby, as before; slaveDir.error says why.
    const names = listed.names;
    try {
      status.standbys = await budget.run(() => gatherStandbys(ctx, layout, names, newestName, segSize, now));
      if (newestName !== undefined) status.newestSegment = newestName;
    } catch (err) {
      ctx.log.warn(`cannot read the standby records in ${layout.completed.path}: ${errorText(err)}`);
    }
  }
  status.slaveDir = await gatherSlaveDir(ctx, layout, listed, newest, newestError, sync, storageError, now, budget);
  const fullBackup = ctx.config.location("full_backup");
  if (fullBackup !== undefined) {
    const driver = driverFor(fullBackup, ctx.config, { timeout: STORAGE_TIMEOUT_S });
    // Backups on other storage than the WAL get their own budget: one being down says nothing of the other.
    const own = sameStorage(fullBackup, layout.completed)
      ? budget
      : new Budget(STORAGE_BUDGET_MS, `full_backup (${driver.description})`);
    try {
      status.backups = await backupsStatus(driver, fullBackup, now, own);
    } catch (err) {
      status.backups = {
        location: formatLocation(fullBackup),
        count: 0,
        totalBytes: 0,
        withoutMetadata: 0,
        newest: null,
        oldest: null,
        error: errorText(err),
      };
    }
  }

  if (masterLane) {
    const asked = await masterLane;
    if (asked.master) {
      status.master = asked.master;
    } else if (asked.error !== undefined && ctx.config.has("master_db")) {
      ctx.log.warn(`cannot ask the master how far behind the slave is, nor pg_stat_archiver: ${asked.error}`);
    }
    status.archiver = archiverStatus(ctx, asked, now);
  }
  const self = role === "master" ? selfSource(ctx, status.master?.timeline) : undefined;
  if (!status.master && hb?.masterLsn && sync?.lsn && !(self && hb.masterData && otherMaster(hb, self))) {
    // Without a connection: what this master's daemon saw at its last heartbeat.
    const tli = hb.timeline ?? self?.timeline;
    const why = notComparable(sync, tli, hb.systemId ?? self?.systemId);
    status.master = {
      lsn: hb.masterLsn,
      bytesBehind: why === undefined ? lsnDiff(hb.masterLsn, sync.lsn) : null,
      ...(tli !== undefined ? { timeline: tli } : {}),
      ...(why !== undefined ? { notComparable: why } : {}),
      asOf: hb.heartbeat,
    };
  }
  if (sync && self && status.lastSync && !status.master?.notComparable) {
    const why = notComparable(sync, self.timeline, self.systemId);
    if (why !== undefined) status.lastSync.otherMaster = why;
  } else if (status.master?.notComparable !== undefined && status.lastSync) {
    status.lastSync.otherMaster = status.master.notComparable;
  }
  const partial = status.slaveDir.partial;
  if (self?.timeline !== undefined && partial?.timeline !== undefined && partial.timeline !== self.timeline) {
    partial.otherMaster = `of timeline ${partial.timeline} (another master, or this one before the failover); this master is on timeline ${self.timeline}`;
  }
  if (lock !== undefined) {
    const foreign = self && lock.holder ? foreignHolder(lock.holder, self) : undefined;
    status.syncLock = foreign !== undefined ? { ...lock, foreign } : lock;
  } else if (storageError !== undefined) {
    status.syncLock = { present: null, path: posix.join(dir, SYNC_LOCK), error: storageError };
  }
  const repos = await reposLane;
  if (repos !== undefined) status.repositories = repos;
  if (replayLane) {
    const replay = await replayLane;
    let name: string;
    try {
      name = standbyName(ctx.config);
    } catch (err) {
      name = `? (${errorText(err)})`;
    }
    status.replay = {
      standby: name,
      ...replay,
      ...(replay.running ? { behindArchiveBytes: bytesToEndOf(newestName, segSize, replay.replayLsn) } : {}),
    };
  }
  return status;
}

/**
 * This master as a sync would record it: host, config, master_data, its database system, and
 * its timeline (from the database when status asked it, else the newest segment in pg_wal).
 */
function selfSource(ctx: Context, timeline: number | undefined): MasterSource {
  const masterData = ctx.config.path("master_data") ?? "";
  const tli = timeline ?? (masterData ? newestLocalTimeline(masterData) : undefined);
  const systemId = masterData ? systemIdentifier(masterData) : undefined;
  return {
    host: hostname(),
    config: ctx.config.file,
    masterData,
    ...(tli !== undefined ? { timeline: tli } : {}),
    ...(systemId !== undefined ? { systemId } : {}),
  };
}

/** The heartbeat is of a daemon shipping from another host or data directory than `self`. */
function otherMaster(hb: DaemonState, self: MasterSource): boolean {
  return hb.host !== self.host || (hb.masterData !== undefined && hb.masterData !== self.masterData);
}

function lsnDiff(a: string, b: string): number | null {
  const x = tryParseLsn(a);
  const y = tryParseLsn(b);
  // The heartbeat may predate the last ship: never report a negative lag.
  return x === undefined || y === undefined ? null : Math.max(0, Number(x - y));
}
