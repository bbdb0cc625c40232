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
} from "../../lock";
import { formatLocation, isLocal } from "../../config/load";
import { controlFilesFor } from "../../layout";
import { WalArchive } from "../../storage/archive";
import { driverFor } from "../../storage/open";
import { LocalDriver } from "../../storage/local";
import { comparePosition, parseWalName, segmentName, segmentNumber } from "../../wal/names";
import { bootId, readSysid, Spool, type SpoolMeta } from "./spool";
import { childProcess } from "../../lazy";

/** The program a prefetcher runs as (its lock names it; the stale test looks for it). */
export const PREFETCH_PROGRAM = "wal-prefetch";

/** How long a prefetcher with nothing to do (spool full and untouched, or nothing new archived) lives on. */
const IDLE_EXIT_MS = 30_000;

/** Fetches at once from a local archive: one hashes while the other waits on the disk. */
const PREFETCH_WORKERS = 2;

/** How often an idle prefetcher looks whether the shell front took entries. */
const POLL_MS = 10;

/** How long before a segment found not archived is asked for again. */
const MISSING_RETRY_MS = 200;

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
 * makes sure one prefetcher fills the spool from there. Starting one is cheap to skip: its lock
 * names a live prefetcher. Never fails the restore: a spool that cannot be made is only logged.
 */
export function ensurePrefetcher(ctx: Context, spool: Spool, served: string, segSize: number): void {
  const depth = ctx.config.int("restore_prefetch");
  if (depth <= 0) return;
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
    spool.setWant(served);
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

/**
 * A promoted server (neither standby.signal nor recovery.signal) never asks for archived WAL
 * again: its spool would only hold disk, so it goes.
 */
function discardIfPromoted(spool: Spool): void {
  if (existsSync(join(spool.dataDir, "standby.signal")) || existsSync(join(spool.dataDir, "recovery.signal"))) return;
  if (existsSync(join(spool.dataDir, "recovery.conf"))) return; // before PostgreSQL 12
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
 * The prefetcher (one per data directory, under the spool's lock): keeps the next
 * `restore_prefetch` complete segments after the position in the spool, each verified against
 * its checksum before it appears under its name, PREFETCH_WORKERS at a time from a local archive
 * (one at a time over ssh: the command's one session). The position is the newest segment
 * wal-restore served itself (`want`); entries the shell front served have simply gone. Never the
 * partial segment (it changes), never a file without a checksum. Ends when the spool is
 * discarded or rebound, or after IDLE_EXIT_MS with nothing to do; a fetch under way is always
 * finished (or failed) before it lets go of the lock.
 */
export async function runPrefetcher(ctx: Context, spoolDir: string): Promise<void> {
  const spool = new Spool(resolve(spoolDir), dirname(dirname(resolve(spoolDir))));
  const bound = spoolBinding(ctx, spool);
  if (bound === undefined || spool.mismatch(bound.expect) !== undefined) return;
  const meta = spool.readMeta();
  if (meta === undefined) return;
  const depth = ctx.config.int("restore_prefetch");
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
    for (;;) {
      if (spool.mismatch(bound.expect) !== undefined) return; // discarded or rebound: not ours
      // The server stopped: nobody will ask for WAL until it starts again (and restarts us).
      if (!existsSync(join(spool.dataDir, "postmaster.pid"))) return;
      const w = spool.want();
      if (w !== undefined && w !== want) {
        want = w;
        next = undefined;
      }
      if (want === undefined) return;
      const wantWal = parseWalName(want);
      if (wantWal === undefined) return;
      const succ = (name: string): string =>
        segmentName(wantWal.timeline, segmentNumber(name, meta.segSize) + 1n, meta.segSize);
      // Entries at or before the position, or of another timeline, are never asked for again.
      const ahead: string[] = [];
      for (const e of spool.entries()) {
        if (e.slice(0, 8) !== want.slice(0, 8) || comparePosition(e, want) <= 0) spool.remove(e);
        else ahead.push(e);
      }
      // Check records of entries served (or removed) since: only ours under way are kept.
      for (const c of spool.checkRecords()) if (!ahead.includes(c) && !inflight.has(c)) spool.remove(c);
      if (missing !== undefined) {
        // Go back to the oldest one not there yet, and give the archive a moment.
        next = missing;
        missing = undefined;
        retryAt = Date.now() + MISSING_RETRY_MS;
      }
      if (next === undefined || comparePosition(next, want) <= 0) {
        const newest = [...ahead, ...inflight.keys()].sort().pop();
        next = succ(newest !== undefined && comparePosition(newest, want) > 0 ? newest : want);
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
      if (inflight.size === 0 && Date.now() - idleSince > IDLE_EXIT_MS) return discardIfPromoted(spool);
      // Wake when a fetch ends; when full, soon anyway (the shell front takes entries without
      // telling); when the archive had no more, at the retry.
      const now = Date.now();
      const nap = inflight.size > 0 ? 200 : retryAt > now ? retryAt - now : POLL_MS;
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
