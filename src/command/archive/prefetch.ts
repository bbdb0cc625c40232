import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Context } from "../../context";
import { LockHeldError } from "../../errors";
import {
  judgeHolder,
  lockBody,
  parseLockInfo,
  releaseLock,
  releaseLockNow,
  selfLockInfo,
  tryTakeLock,
} from "../../slavedir/lock";
import { formatLocation, isLocal, type Config } from "../../config/load";
import { controlFilesFor } from "../../slavedir/layout";
import { WalArchive } from "../../storage/archive";
import { driverFor } from "../../storage/open";
import { LocalDriver } from "../../storage/local/driver";
import { comparePosition, parseWalName, segmentName, segmentNumber } from "../../wal/names";
import { bootId, readSysid, Spool, type SpoolMeta } from "./spool";
import { childProcess } from "../../lazy";
import { readPostmaster } from "../../pg/server";
import { standbyRestartPoint } from "../../pg/control-file";
import type { StorageDriver } from "../../storage/driver";
import { cleanupBefore } from "./cleanup";
import {
  refreshSeconds,
  refreshStandby,
  removeStandby,
  standbyExpireSeconds,
  standbyName,
} from "../../slavedir/standbys";

/** The program a prefetcher runs as (its lock names it; the stale test looks for it). */
export const PREFETCH_PROGRAM = "wal-prefetch";

/**
 * How long a prefetcher with nothing to do (spool full and untouched, or nothing new archived)
 * lives on, when it is not the heartbeat of a running standby (which it stays, dormant).
 */
const IDLE_EXIT_MS = 30_000;
/** The WAL cleanup for entries the front served runs at most this often (cleanupAfterFront). */
const CLEANUP_EVERY_MS = 1000;

/** Fetches at once from a local archive: one hashes while the other waits on the disk. */
const PREFETCH_WORKERS = 2;

/** How often an idle prefetcher looks whether the shell front took entries. */
const POLL_MS = 10;

/** How long before a segment found not archived is asked for again. */
const MISSING_RETRY_MS = 200;

/**
 * How often a prefetcher that has had nothing to do for IDLE_EXIT_MS, and lives on as the
 * heartbeat, looks whether the shell front took entries (a standby resuming after its apply
 * delay or a pause) or restore_command moved the position.
 */
const DORMANT_POLL_MS = 250;

/** How soon a heartbeat whose write failed tries again (at most: never more often than it beats). */
const HEARTBEAT_RETRY_MS = 5_000;

/** What a spool must be bound to, for this config and data directory. */
export function spoolBinding(
  ctx: Context,
  spool: Spool,
): { expect: Omit<SpoolMeta, "version" | "created" | "segSize">; localArchive: string | undefined } | undefined {
  const sysid = readSysid(spool.dataDir);
  if (sysid === undefined) return undefined;
  const loc = ctx.config.requireLocation("completed_wals", "wal-restore");
  return {
    expect: { config: resolve(ctx.config.file), archive: formatLocation(loc), sysid, boot: bootId() },
    // What the shell front looks into for PAUSE and STOP: completed_wals, or an object store's local control_dir.
    localArchive: isLocal(loc)
      ? loc.path
      : loc.bucket !== undefined
        ? controlFilesFor(ctx.config, loc, driverFor(loc, ctx.config)).dir
        : undefined,
  };
}

/**
 * After wal-restore served `served` (a complete segment) itself: records it as the position and
 * makes sure one prefetcher fills the spool from there and keeps the standby's heartbeat
 * (runPrefetcher). Starting one is cheap to skip: its lock names a live prefetcher. Never fails
 * the restore: a spool that cannot be made is only logged.
 */
/**
 * Whether wal-restore fetches ahead at all (restore_prefetch above 0): the one place that reads
 * the switch. The prefetcher process may still run as the standby's heartbeat with it off.
 */
export function prefetchOn(config: Config): boolean {
  return config.int("restore_prefetch") > 0;
}

export function ensurePrefetcher(ctx: Context, spool: Spool, served: string, segSize: number): void {
  // With prefetch off it still runs, as the standby's heartbeat, unless records never expire.
  if (!prefetchOn(ctx.config) && standbyExpireSeconds(ctx.config) <= 0) return;
  try {
    const bound = spoolBinding(ctx, spool);
    if (bound === undefined) return;
    const why = !existsSync(spool.dir)
      ? "none yet"
      : (spool.mismatch(bound.expect) ??
        (spool.readMeta()?.segSize !== segSize
          ? `made for segments of another size than ${segSize} bytes`
          : undefined));
    if (why !== undefined) {
      if (why !== "none yet") ctx.log.info(`prefetch spool ${spool.dir} discarded: ${why}`);
      spool.discard();
      spool.create({ version: 2, ...bound.expect, segSize, created: new Date().toISOString() }, bound.localArchive);
    }
    // The position only matters to a prefetcher that fetches (it costs an fsync per segment).
    if (prefetchOn(ctx.config)) spool.setWant(served);
    if (prefetcherLive(spool)) return; // it reads `want` on its next round
    const child = childProcess().spawn(
      process.execPath,
      [join(__dirname, `${PREFETCH_PROGRAM}.js`), resolve(ctx.config.file), spool.dir],
      // Its own session, no stdio: it never holds PostgreSQL's pipes or process group; its
      // working directory is /, so it never keeps the data directory's file system busy.
      { cwd: "/", detached: true, stdio: "ignore" },
    );
    child.unref();
  } catch (err) {
    ctx.log.warn(`restore prefetch not started: ${(err as Error).message}`);
  }
}

/** The data directory is still in recovery (a standby, or recovery towards a target). */
function inRecovery(dataDir: string): boolean {
  return (
    existsSync(join(dataDir, "standby.signal")) ||
    existsSync(join(dataDir, "recovery.signal")) ||
    existsSync(join(dataDir, "recovery.conf")) // before PostgreSQL 12
  );
}

/**
 * A promoted server (neither standby.signal nor recovery.signal) never asks for archived WAL
 * again: its spool would only hold disk, so it goes.
 */
function discardIfPromoted(spool: Spool): void {
  if (inRecovery(spool.dataDir)) return;
  spool.discard();
}

/** True when the spool's lock names a live prefetcher. */
function prefetcherLive(spool: Spool): boolean {
  let raw: string;
  try {
    raw = readFileSync(spool.path("lock"), "utf8");
  } catch {
    return false;
  }
  return judgeHolder(parseLockInfo(raw), [PREFETCH_PROGRAM]).state === "live";
}

/**
 * What one beat of the heartbeat found: the standby runs and is in recovery ("live": its record
 * was refreshed as due), its server is not running ("down"), or it was promoted ("promoted").
 */
type Beat = "live" | "down" | "promoted";

/**
 * The standby's liveness heartbeat (see refreshStandby): while a postgres runs in the data
 * directory (postmaster.pid naming a live postgres whose working directory it is) and the data
 * directory is in recovery, refreshes this standby's record with its restart point from
 * pg_control. Checked again after the write: a server promoted meanwhile (boot removes its
 * record once promoted) gets the record it may just have written back removed.
 */
async function beat(
  ctx: Context,
  driver: StorageDriver,
  dir: string,
  spool: Spool,
  segSize: number,
  expireSeconds: number,
): Promise<Beat> {
  if (readPostmaster(spool.dataDir) === undefined) return "down";
  if (!inRecovery(spool.dataDir)) return "promoted";
  const slaveData = ctx.config.path("slave_data") ?? spool.dataDir;
  const name = standbyName(ctx.config, spool.dataDir);
  const rp = standbyRestartPoint(spool.dataDir, segSize);
  const entry = await refreshStandby(driver, dir, name, rp, { expireSeconds, slaveData });
  if (entry !== undefined && !inRecovery(spool.dataDir)) {
    await removeStandby(driver, dir, name);
    return "promoted";
  }
  if (entry !== undefined) ctx.log.debug(`heartbeat: standby ${JSON.stringify(name)} at ${entry.restartpoint ?? "?"}`);
  return "live";
}

/**
 * With keep_backups = 0, the WAL cleanup wal-restore does with %r for each segment it serves
 * (cleanup.ts), for the segments the shell front served instead (it starts no Node, so without
 * this the archive would only grow while the front keeps up): with the restart point from
 * pg_control, which is what PostgreSQL passes as %r, refreshed into this standby's record first.
 * Only while the server runs in recovery; a failure is logged and tried again next time.
 */
async function cleanupAfterFront(
  ctx: Context,
  driver: StorageDriver,
  archive: WalArchive,
  spool: Spool,
  segSize: number,
  expireSeconds: number,
): Promise<void> {
  if (ctx.config.int("keep_backups") !== 0) return;
  if (readPostmaster(spool.dataDir) === undefined || !inRecovery(spool.dataDir)) return;
  const rp = standbyRestartPoint(spool.dataDir, segSize);
  if (rp === undefined) return;
  try {
    const slaveData = ctx.config.path("slave_data") ?? spool.dataDir;
    const own = await refreshStandby(driver, archive.completedDir, standbyName(ctx.config, spool.dataDir), rp, {
      expireSeconds,
      slaveData,
    });
    await cleanupBefore(ctx, driver, archive, rp, own);
  } catch (err) {
    ctx.log.warn(`WAL cleanup in ${archive.completedDir} failed: ${(err as Error).message}`);
  }
}

/**
 * The prefetcher (one per data directory, under the spool's lock), which is also the standby's
 * liveness heartbeat.
 *
 * Prefetch: keeps the next `restore_prefetch` complete segments after the position in the
 * spool, each verified against its checksum before it appears under its name, PREFETCH_WORKERS
 * at a time from a local archive (one at a time over ssh: the command's one session). The
 * position is the newest segment wal-restore served itself (`want`); entries the shell front
 * served have simply gone. Never the partial segment (it changes), never a file without a
 * checksum.
 *
 * Heartbeat: every half `refreshSeconds(standby_expire)` it refreshes this standby's record
 * (`beat`), so a standby whose server runs is never taken for gone, however its WAL reaches it:
 * through the shell front (which records nothing), or not at all for a while (waiting out
 * recovery_min_apply_delay, paused). This is why it runs with `restore_prefetch = 0` too, and
 * lives as long as the server does (unless `standby_expire` is 0: records never expire).
 *
 * Ends when the spool is discarded or rebound, when the server stops (no postmaster.pid) or is
 * promoted, or after IDLE_EXIT_MS with nothing to do when there is no heartbeat to keep or no
 * running server to keep it for; a fetch under way is always finished (or failed) before it
 * lets go of the lock.
 */
export async function runPrefetcher(ctx: Context, spoolDir: string): Promise<void> {
  const spool = new Spool(resolve(spoolDir), dirname(dirname(resolve(spoolDir))));
  const bound = spoolBinding(ctx, spool);
  if (bound === undefined || spool.mismatch(bound.expect) !== undefined) return;
  const meta = spool.readMeta();
  if (meta === undefined) return;
  const depth = ctx.config.int("restore_prefetch");
  const expireSeconds = standbyExpireSeconds(ctx.config);
  // Twice per refresh period: a live standby's record is never older than 1.5 refresh periods
  // (0.15 standby_expire).
  const beatMs = expireSeconds > 0 ? (refreshSeconds(expireSeconds) * 1000) / 2 : undefined;
  const local = new LocalDriver();
  const lockPath = spool.path("lock");
  const body = lockBody(selfLockInfo("prefetch", "slave"));
  const got = await tryTakeLock(local, lockPath, body, { programs: [PREFETCH_PROGRAM], breakStale: true });
  if (!got.taken) {
    if (got.verdict.state === "live") return; // one is at work already
    throw new LockHeldError(`cannot take ${lockPath}: ${got.verdict.why}`);
  }
  const unregister = ctx.onCleanup(() => releaseLockNow(local, lockPath, body));
  const inflight = new Map<string, Promise<void>>();
  try {
    spool.removeTemps();
    const loc = ctx.config.requireLocation("completed_wals", "wal-restore");
    const driver = driverFor(loc, ctx.config, { timeout: ctx.config.float("restore_timeout") });
    const archive = new WalArchive(driver, loc.path);
    const workers = loc.host === undefined ? PREFETCH_WORKERS : 1;
    // Without a boot id to bind the spool to, entries must survive a crash of the machine.
    const durable = meta.boot === "";
    let want = spool.want();
    let next: string | undefined;
    let missing: string | undefined; // the oldest name found not archived (yet)
    let retryAt = 0;
    let idleSince = Date.now();
    let beatAt = 0;
    let server: Beat = "down";
    let aheadBefore = 0;
    let cleanupAt = 0;
    for (;;) {
      if (spool.mismatch(bound.expect) !== undefined) return; // discarded or rebound: not ours
      // The server stopped: nobody will ask for WAL until it starts again (and restarts us).
      if (!existsSync(join(spool.dataDir, "postmaster.pid"))) return;
      if (beatMs !== undefined && Date.now() >= beatAt) {
        beatAt = Date.now() + beatMs;
        try {
          server = await beat(ctx, driver, loc.path, spool, meta.segSize, expireSeconds);
        } catch (err) {
          // The next beat tries again; until then the record only ages (and the restore
          // calls, as ever, refresh it too).
          ctx.log.warn(`heartbeat: cannot refresh this standby's record in ${loc.path}: ${(err as Error).message}`);
          beatAt = Date.now() + Math.min(beatMs, HEARTBEAT_RETRY_MS);
        }
        if (server === "promoted") return discardIfPromoted(spool);
      }
      const dormant = Date.now() - idleSince > IDLE_EXIT_MS;
      if (inflight.size === 0 && dormant && (beatMs === undefined || server !== "live" || !inRecovery(spool.dataDir)))
        return discardIfPromoted(spool);
      const w = spool.want();
      if (w !== undefined && w !== want) {
        want = w;
        next = undefined;
        idleSince = Date.now();
        retryAt = 0;
      }
      const wantWal = want === undefined ? undefined : parseWalName(want);
      if (depth > 0 && want !== undefined && wantWal !== undefined) {
        const from = want;
        const succ = (name: string): string =>
          segmentName(wantWal.timeline, segmentNumber(name, meta.segSize) + 1n, meta.segSize);
        // Entries at or before the position, or of another timeline, are never asked for again.
        const ahead: string[] = [];
        for (const e of spool.entries()) {
          if (e.slice(0, 8) !== from.slice(0, 8) || comparePosition(e, from) <= 0) spool.remove(e);
          else ahead.push(e);
        }
        // The shell front took entries: the standby moves on (after its apply delay, say), and
        // the WAL cleanup its calls would have done in Node is done here (at most once a second).
        if (ahead.length < aheadBefore) {
          retryAt = 0;
          if (Date.now() >= cleanupAt) {
            cleanupAt = Date.now() + CLEANUP_EVERY_MS;
            await cleanupAfterFront(ctx, driver, archive, spool, meta.segSize, expireSeconds);
          }
        }
        aheadBefore = ahead.length;
        // Check records of entries served (or removed) since: only ours under way are kept.
        for (const c of spool.checkRecords()) if (!ahead.includes(c) && !inflight.has(c)) spool.remove(c);
        if (missing !== undefined) {
          // Go back to the oldest one not there yet, and give the archive a moment. Once
          // dormant, not again until the standby moves (the front takes an entry, or
          // restore_command serves a segment and moves `want`): a caught-up standby's own calls
          // serve what arrives, and the archive is not asked every moment for ever.
          next = missing;
          missing = undefined;
          retryAt = dormant ? Number.POSITIVE_INFINITY : Date.now() + MISSING_RETRY_MS;
        }
        if (next === undefined || comparePosition(next, from) <= 0) {
          const newest = [...ahead, ...inflight.keys()].sort().pop();
          next = succ(newest !== undefined && comparePosition(newest, from) > 0 ? newest : from);
        }
        while (inflight.size < workers && ahead.length + inflight.size < depth && Date.now() >= retryAt) {
          const name: string = next;
          if (inflight.has(name) || ahead.includes(name)) {
            next = succ(name);
            continue;
          }
          next = succ(name);
          const job = fetchEntry(ctx, archive, spool, name, meta.segSize, durable).then((r) => {
            inflight.delete(name);
            if (r === "missing") {
              if (missing === undefined || comparePosition(name, missing) < 0) missing = name;
            } else idleSince = Date.now();
          });
          inflight.set(name, job);
        }
      }
      // Wake when a fetch ends; when full, soon anyway (the shell front takes entries without
      // telling; once dormant, or with nothing to fetch ever, less often); when the archive had
      // no more, at the retry; and for the next beat.
      const now = Date.now();
      let nap =
        inflight.size > 0
          ? 200
          : dormant || depth <= 0
            ? DORMANT_POLL_MS
            : retryAt > now
              ? Math.min(retryAt - now, MISSING_RETRY_MS)
              : POLL_MS;
      if (beatMs !== undefined) nap = Math.max(1, Math.min(nap, beatAt - now));
      await Promise.race([...inflight.values(), sleep(nap)]);
    }
  } finally {
    await Promise.allSettled(inflight.values());
    unregister();
    await releaseLock(local, lockPath, body);
  }
}

/**
 * Copies `name` from the archive into the spool: streamed through sha256 into a temp there
 * (fsynced when `durable`), renamed only when the digest matches the checksum, after its check
 * record (`.NAME.cksum`: its POSIX cksum and sha256) is written. A file without a checksum or of
 * the wrong size is not spooled ("skipped": wal-restore serves it itself).
 */
async function fetchEntry(
  ctx: Context,
  archive: WalArchive,
  spool: Spool,
  name: string,
  segSize: number,
  durable: boolean,
): Promise<"spooled" | "skipped" | "missing"> {
  const dest = spool.path(name);
  let got;
  try {
    got = await archive.restoreTo(name, dest, {
      durable,
      // What the entry is, recorded before it appears under its name: the shell front and the
      // Node path serve it only while it still is that.
      beforeRename: async (tmp, sum) => {
        if (!(await spool.recordCheck(name, tmp, sum.sha256)))
          throw new Error("cannot run cksum (POSIX; coreutils) to record what the entry is");
      },
    });
  } catch (err) {
    ctx.log.warn(`prefetch: ${name} not spooled: ${(err as Error).message}`);
    return "skipped";
  }
  if (got === undefined) return "missing";
  if (!got.verified || got.bytes !== segSize) {
    spool.remove(name);
    return "skipped";
  }
  ctx.log.debug(`prefetch: spooled ${name}`);
  return "spooled";
}
