import { hostname } from "node:os";
import { posix } from "node:path";
import type { Context } from "../context";
import { slaveLayout } from "../layout";
import { connectMaster } from "../pg/client";
import { readPidfile } from "../pidfile";
import { DAEMON_STATE, type DaemonState } from "./daemon";
import { readPeriodicState, type PeriodicState } from "./periodic";
import { readSyncState, type SyncState } from "./sync";
import { readBytes } from "../storage/bytes";
import {
  DEFAULT_SEGMENT_SIZE,
  formatAge,
  judge,
  lagOf,
  readRegistry,
  standbyExpireSeconds,
  type JudgedStandby,
} from "../standbys";
import { isWalSegmentSize, parseWalName, comparePosition } from "../wal/names";
import { formatLocation } from "../config/load";
import { archiveRepositories } from "./archive/repositories";
import type { SlaveLayout } from "../layout";

export interface Status {
  role: "master" | "slave";
  daemon: {
    /** running: the pidfile's process is alive (master) or the heartbeat is recent (slave). */
    state: "running" | "stopped" | "stale" | "unknown" | "not running";
    pid?: number;
    host?: string;
    pidfile?: string;
    detail: string;
    heartbeat?: string;
    loopDelay?: number;
    mode?: string;
    failures?: number;
    lastError?: string;
  };
  lastSync?: SyncState & { secondsAgo: number };
  master?: { lsn: string; bytesBehind: number | null; asOf: string };
  periodic?: PeriodicState;
  /** Each standby recorded in completed_wals (see standbys.ts), with its lag. */
  standbys?: StandbyStatus[];
  /** With also_archive_to: each repository, its newest segment and how far it is behind the newest of all. */
  repositories?: RepositoryStatus[];
  /** The newest complete segment in completed_wals, which the lags are measured against. */
  newestSegment?: string;
}

export interface StandbyStatus {
  name: string;
  /** Its restart point (%r); null when its record cannot be read. */
  restartPoint: string | null;
  host?: string;
  slaveData?: string;
  updated: string | null;
  ageSeconds: number | null;
  state: "live" | "expired";
  /** Segments (and bytes) between its restart point and the newest archived segment. */
  behindSegments: number | null;
  behindBytes: number | null;
  /** The one restart-point file of earlier versions. */
  legacy?: boolean;
}

export interface RepositoryStatus {
  name: string;
  location: string;
  /** Its newest complete segment (undefined: none, or unreachable). */
  newestSegment?: string;
  /** Segments it lacks up to the newest segment of any repository (null: unknown). */
  behindSegments: number | null;
  /** Why it could not be read (down, no credentials …). */
  error?: string;
}

/** Each repository the master archives to (only with also_archive_to), and how far behind it is. */
async function gatherRepositories(ctx: Context): Promise<RepositoryStatus[] | undefined> {
  if (ctx.config.role !== "master" || !ctx.config.has("also_archive_to")) return undefined;
  // A repository that is down must not hang status: a short timeout, one retry.
  const repos = archiveRepositories(ctx.config, 5);
  const out = await Promise.all(
    repos.map(async (r): Promise<RepositoryStatus> => {
      const base = { name: r.name, location: formatLocation(r.loc), behindSegments: null };
      try {
        const newest = newestSegment((await r.archive.driver.list(r.loc.path)) ?? []);
        return newest === undefined ? base : { ...base, newestSegment: newest };
      } catch (err) {
        return { ...base, error: (err as Error).message };
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

/** The newest complete segment among `names` (anything else ignored); undefined when none. */
function newestSegment(names: string[]): string | undefined {
  let newest: string | undefined;
  for (const n of names) {
    if (parseWalName(n)?.kind === "segment" && (newest === undefined || comparePosition(n, newest) > 0)) newest = n;
  }
  return newest;
}

/** The standby registry and how far each is behind the newest complete segment. */
async function gatherStandbys(
  ctx: Context,
  layout: SlaveLayout,
  now: number,
): Promise<{ standbys: StandbyStatus[]; newest?: string }> {
  const dir = layout.completed.path;
  const names = (await layout.driver.list(dir)) ?? [];
  const newest = newestSegment(names);
  const entries = await readRegistry(layout.driver, dir, names);
  let segSize = DEFAULT_SEGMENT_SIZE;
  if (newest !== undefined && entries.length > 0) {
    const size = (await layout.driver.info(posix.join(dir, newest)))?.size;
    if (size !== undefined && isWalSegmentSize(size)) segSize = size;
  }
  const expire = standbyExpireSeconds(ctx.config);
  const standbys = entries.map((e): StandbyStatus => {
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
  return newest !== undefined ? { standbys, newest } : { standbys };
}

async function readDaemonState(ctx: Context, dir: string): Promise<DaemonState | undefined> {
  const layout = slaveLayout(ctx.config, "status");
  const raw = await readBytes(layout.driver, posix.join(dir, DAEMON_STATE));
  if (!raw) return undefined;
  try {
    return JSON.parse(raw.toString("utf8")) as DaemonState;
  } catch {
    return undefined;
  }
}

function secondsSince(iso: string | undefined, now: number): number {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? Math.max(0, (now - t) / 1000) : NaN;
}

/** Gathers the status; the database is asked only on the master and only in record-capable setups. */
export async function gatherStatus(ctx: Context, now = Date.now()): Promise<Status> {
  const role = ctx.config.role;
  const layout = slaveLayout(ctx.config, "status");
  const dir = ctx.config.requireLocation("partial_wals", "status").path;
  const sync = await readSyncState(layout, dir);
  const hb = await readDaemonState(ctx, dir);
  const status: Status = { role, daemon: { state: "unknown", detail: "" } };
  if (sync) status.lastSync = { ...sync, secondsAgo: secondsSince(sync.time, now) };
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
      status.daemon = { state: "running", pid: st.pid, pidfile, detail: `running (pid ${st.pid})`, ...hbFields };
    } else if (st.kind === "stale") {
      status.daemon = { state: "stale", pid: st.pid, pidfile, detail: `not running: stale pidfile (${st.why})` };
    } else if (st.kind === "unknown") {
      status.daemon = { state: "unknown", pid: st.pid, pidfile, detail: `cannot tell: ${st.why}` };
    } else if (st.kind === "invalid") {
      status.daemon = { state: "unknown", pidfile, detail: `pidfile ${pidfile} does not hold a pid` };
    } else {
      status.daemon = { state: "not running", pidfile, detail: `not running (no ${pidfile})` };
    }
  } else if (hb) {
    // The slave side (or a master without pidfile) knows the daemon by its heartbeat only.
    const limit = Math.max(3 * hb.loopDelay, 30) + 5;
    const where = `pid ${hb.pid} on ${hb.host === hostname() ? "this host" : hb.host}`;
    if (hb.stopped) {
      status.daemon = { state: "stopped", pid: hb.pid, host: hb.host, detail: `stopped at ${hb.stopped} (${where})` };
    } else if (hbAge <= limit) {
      status.daemon = {
        state: "running",
        pid: hb.pid,
        host: hb.host,
        detail: `running (${where}, heard from ${hbAge.toFixed(1)} s ago)`,
        ...hbFields,
      };
    } else {
      status.daemon = {
        state: "stale",
        pid: hb.pid,
        host: hb.host,
        detail: `not heard from for ${hbAge.toFixed(0)} s (${where}): not running?`,
        ...hbFields,
      };
    }
  } else {
    status.daemon = {
      state: "unknown",
      detail: role === "master" ? "pidfile is not set and no daemon has run" : "no daemon has shipped here",
    };
  }
  if (role === "master" && ctx.config.has("master_db") && sync?.lsn) {
    try {
      const db = await connectMaster(ctx.config, "status");
      try {
        const v10 = db.serverVersion >= 100000;
        const fn = v10 ? "pg_current_wal_lsn()" : "pg_current_xlog_location()";
        const diff = v10 ? "pg_wal_lsn_diff" : "pg_xlog_location_diff";
        const row = await db.one<{ lsn: string; behind: string | null }>(
          `SELECT ${fn}::text AS lsn, ${diff}(${fn}, $1::pg_lsn)::text AS behind`,
          [sync.lsn],
        );
        status.master = {
          lsn: row.lsn,
          bytesBehind: row.behind === null ? null : Number(row.behind),
          asOf: new Date().toISOString(),
        };
      } finally {
        await db.close();
      }
    } catch (err) {
      ctx.log.warn(`cannot ask the master how far behind the slave is: ${(err as Error).message}`);
    }
  } else if (hb?.masterLsn && sync?.lsn) {
    // Without a connection: what the daemon saw at its last heartbeat.
    status.master = { lsn: hb.masterLsn, bytesBehind: lsnDiff(hb.masterLsn, sync.lsn), asOf: hb.heartbeat };
  }
  const periodic = role === "master" && ctx.config.has("periodic_command");
  if (periodic) {
    const p = await readPeriodicState(layout, dir);
    if (p) status.periodic = p;
  }
  const repos = await gatherRepositories(ctx);
  if (repos !== undefined) status.repositories = repos;
  try {
    const reg = await gatherStandbys(ctx, layout, now);
    status.standbys = reg.standbys;
    if (reg.newest !== undefined) status.newestSegment = reg.newest;
  } catch (err) {
    ctx.log.warn(`cannot read the standby records in ${layout.completed.path}: ${(err as Error).message}`);
  }
  return status;
}

function lsnDiff(a: string, b: string): number | null {
  const parse = (t: string): bigint | undefined => {
    const m = /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(t);
    return m ? (BigInt(`0x${m[1] ?? "0"}`) << 32n) + BigInt(`0x${m[2] ?? "0"}`) : undefined;
  };
  const x = parse(a);
  const y = parse(b);
  // The heartbeat may predate the last ship: never report a negative lag.
  return x === undefined || y === undefined ? null : Math.max(0, Number(x - y));
}

/** `wal-ctl CONFIG status` (either side; `--json` for a machine). Always exits 0. */
export async function status(ctx: Context): Promise<void> {
  const s = await gatherStatus(ctx);
  if (ctx.json) {
    ctx.out(JSON.stringify(s, null, 2));
    return;
  }
  const lines: string[] = [];
  const row = (k: string, v: string): number => lines.push(`${`${k}:`.padEnd(17)}${v}`);
  row("role", s.role);
  row("sync daemon", s.daemon.detail);
  if (s.daemon.mode !== undefined) {
    row(
      "",
      `${s.daemon.mode} mode, loop_delay ${s.daemon.loopDelay ?? "?"} s, last heartbeat ${s.daemon.heartbeat ?? "?"}`,
    );
  }
  if (s.daemon.failures) row("", `${s.daemon.failures} failed attempt(s) in a row; last: ${s.daemon.lastError ?? "?"}`);
  if (s.lastSync) {
    const at = s.lastSync.lsn ? `up to ${s.lastSync.lsn}` : `${s.lastSync.offset} bytes (whole file)`;
    row("last sync", `${s.lastSync.name} ${at} at ${s.lastSync.time} (${s.lastSync.secondsAgo.toFixed(1)} s ago)`);
  } else {
    row("last sync", "never (no sync state in partial_wals)");
  }
  if (s.master) {
    row(
      "master at",
      `${s.master.lsn}: ${s.master.bytesBehind === null ? "?" : s.master.bytesBehind} bytes not shipped yet (as of ${s.master.asOf})`,
    );
  }
  if (s.periodic) {
    const p = s.periodic;
    const how =
      p.ended === undefined
        ? "running or interrupted"
        : p.signal
          ? `killed by ${p.signal}`
          : `status ${p.status ?? "?"}`;
    row("periodic", `last started ${p.started} (${how})`);
  }
  for (const [i, r] of (s.repositories ?? []).entries()) {
    const text = `${r.name} ${r.location}: ${
      r.error !== undefined
        ? `UNREACHABLE (${r.error})`
        : r.newestSegment === undefined
          ? "no segment archived"
          : `newest ${r.newestSegment}, ${r.behindSegments === 0 ? "up to date" : `${r.behindSegments ?? "?"} segment(s) behind`}`
    }`;
    if (i === 0) row("repositories", text);
    else lines.push(`${"".padEnd(17)}${text}`);
  }
  if (s.standbys !== undefined) {
    if (s.standbys.length === 0) row("standbys", "none recorded in completed_wals");
    for (const [i, sb] of s.standbys.entries()) {
      const behind =
        sb.behindSegments === null
          ? "lag unknown"
          : `${sb.behindSegments} segment(s), ${sb.behindBytes ?? 0} bytes behind ${s.newestSegment ?? "?"}`;
      const where = [sb.host, sb.slaveData].filter((x) => x !== undefined).join(":");
      const text =
        `${sb.name}${where ? ` (${where})` : ""}: ${sb.state}, restart point ${sb.restartPoint ?? "unreadable"}, ` +
        `${behind}, recorded ${formatAge(sb.ageSeconds ?? NaN)} ago`;
      if (i === 0) row("standbys", text);
      else lines.push(`${"".padEnd(17)}${text}`);
    }
  }
  ctx.out(lines.join("\n"));
}
