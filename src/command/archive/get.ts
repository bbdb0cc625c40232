import { posix, resolve } from "node:path";
import type { Context } from "../../context";
import { BOOT_END_OF_WAL, BOOT_PARTIAL_SERVED, ControlFiles, PAUSE, STOP } from "../../slavedir/control";
import { controlFilesFor } from "../../slavedir/layout";
import { setCallDeadline } from "../../deadline";
import { ExitCode, TransportError, type ExitCodeValue } from "../../errors";
import { WalArchive } from "../../storage/archive";
import type { StorageDriver } from "../../storage/driver";
import { fetchToFile } from "../../storage/files";
import { driverFor } from "../../storage/open";
import { isWalSegmentSize, requireWalName, type WalName } from "../../wal/names";
import {
  formatAge,
  noteStandby,
  standbyExpireSeconds,
  standbyName,
  usableRestartPoint,
  type StandbyEntry,
} from "../../slavedir/standbys";
import { cleanupBefore } from "./cleanup";
import { ensurePrefetcher, prefetchOn, spoolBinding } from "./prefetch";
import { Spool } from "./spool";

/**
 * restore_command (walmgr's xrestore). Exit 0 with the file at `destPath`, or 1 when it is not
 * (yet) available, which PostgreSQL in standby mode answers by retrying later. PAUSE holds back
 * all WAL; STOP serves the partial segment after the complete ones and then records, for
 * `boot`, that the standby has asked past the end of all WAL there is.
 */
export async function restoreGet(
  ctx: Context,
  name: string,
  destPath: string,
  keepFrom?: string,
): Promise<ExitCodeValue> {
  // PostgreSQL's startup process waits for this call: restore_timeout bounds all of it (each S3
  // request and its retries; a peer that trickles is cut off like one that is silent).
  setCallDeadline(ctx.config.float("restore_timeout"), "restore_timeout");
  try {
    return await restoreGetFrom(ctx, name, destPath, keepFrom);
  } catch (err) {
    // An unreachable slave host is "not available" (PostgreSQL retries), never fatal to recovery.
    if (!(err instanceof TransportError)) throw err;
    ctx.log.error(`${err.message}: ${name} not available${err.hint ? `\nHINT: ${err.hint}` : ""}`);
    return ExitCode.NOT_AVAILABLE;
  }
}

async function restoreGetFrom(ctx: Context, name: string, destPath: string, keepFrom?: string): Promise<ExitCodeValue> {
  const wal = requireWalName(name);
  const served = await serve(ctx, wal, destPath);
  if (served === undefined) return ExitCode.NOT_AVAILABLE;
  // Every call with %r (a segment served or not, paused or not: a live standby asks every few
  // seconds) records this standby's restart point; with keep_backups = 0 a served segment also
  // cleans up WAL no live standby and no kept set needs.
  if (keepFrom !== undefined && !ctx.dryRun) {
    const own = await recordRestartPoint(ctx, served.driver, served.dir, keepFrom);
    if (served.code === ExitCode.OK && wal.kind === "segment" && ctx.config.int("keep_backups") === 0) {
      try {
        await cleanupBefore(ctx, served.driver, new WalArchive(served.driver, served.dir), keepFrom, own);
      } catch (err) {
        // The segment is at %p: a failed cleanup is for the next call, never a failed restore.
        ctx.log.warn(`WAL cleanup in ${served.dir} failed: ${(err as Error).message}`);
      }
    }
  }
  return served.code;
}

/**
 * Serves `wal` to `destPath`; undefined when completed_wals is not there at all (nothing to
 * record a restart point in either).
 */
async function serve(
  ctx: Context,
  wal: WalName,
  destPath: string,
): Promise<{ code: ExitCodeValue; driver: StorageDriver; dir: string } | undefined> {
  const name = wal.name;
  const loc = ctx.config.requireLocation("completed_wals", "wal-restore");
  const driver = driverFor(loc, ctx.config, { timeout: ctx.config.float("restore_timeout") });
  const code = (c: ExitCodeValue): { code: ExitCodeValue; driver: StorageDriver; dir: string } => ({
    code: c,
    driver,
    dir: loc.path,
  });
  const control = controlFilesFor(ctx.config, loc, driver);
  const dir = await driver.info(loc.path);
  if (!dir?.isDirectory) {
    ctx.log.error(
      `completed_wals ${loc.path} is not there (${ctx.config.where("completed_wals")}): ${name} not available`,
    );
    return undefined;
  }
  const stop = await control.exists(STOP);
  if (!stop && (await control.exists(PAUSE))) {
    ctx.log.info(`replay is paused (${control.path(PAUSE)} exists): not serving ${name}`);
    return code(ExitCode.NOT_AVAILABLE);
  }
  const dest = resolve(destPath);
  const archive = new WalArchive(driver, loc.path);
  if (ctx.dryRun) {
    if ((await driver.info(archive.path(wal.name))) !== undefined) {
      ctx.out(`[not really] restore ${archive.path(wal.name)} to ${dest}`);
      return code(ExitCode.OK);
    }
  }
  // The prefetch spool first (bin/wal-restore's shell front serves it without Node when it can;
  // this is the same rule for the calls it passes on: under STOP, say).
  const spool = wal.kind === "segment" && !ctx.dryRun ? Spool.forDest(destPath) : undefined;
  const spooled = spool !== undefined ? serveFromSpool(ctx, spool, wal.name, dest) : undefined;
  if (spooled !== undefined) ctx.log.info(`restored ${wal.name} from the prefetch spool ${spool?.dir ?? ""}`);
  // Not in the spool: start the prefetcher now, so that its start-up overlaps our own copy
  // (it goes on from this segment; the size is the archived file's, which PostgreSQL's own
  // sizes bound: a corrupt one only makes the prefetcher skip, never serve, what differs).
  let early: number | undefined;
  if (spool !== undefined && spooled === undefined && prefetchOn(ctx.config)) {
    const size = (await driver.info(archive.path(wal.name)))?.size;
    if (size !== undefined && isWalSegmentSize(size)) {
      ensurePrefetcher(ctx, spool, wal.name, size);
      early = size;
    }
  }
  // Streams through sha256 into a temp beside %p, renamed only when the digest matches: never
  // a short, partial or corrupt file at %p (safety rule 3). No fsync: PostgreSQL treats the
  // restored file as a copy.
  const found = spooled !== undefined || ctx.dryRun ? undefined : await archive.restoreTo(wal.name, dest);
  if (found) {
    if (!found.verified) ctx.log.warn(`${archive.path(wal.name)} has no checksum file; served it unverified`);
    ctx.log.info(`restored ${wal.name} from ${loc.path}`);
  }
  if (spooled !== undefined || found) {
    // Only a verified segment tells the prefetcher its size and where to go on from.
    const segSize = spooled ?? (found?.verified === true ? found.bytes : undefined);
    if (spool !== undefined && segSize !== undefined && segSize !== early)
      ensurePrefetcher(ctx, spool, wal.name, segSize);
    return code(ExitCode.OK);
  }
  if (!stop || wal.kind !== "segment") {
    ctx.log.debug(`${wal.name} is not in ${loc.path} (yet)`);
    return code(ExitCode.NOT_AVAILABLE);
  }
  return code(await servePartialUnderStop(ctx, driver, control, wal.name, dest));
}

/**
 * Serves `name` from the prefetch spool when the spool is bound to this data directory,
 * cluster, config and archive (else the whole spool is discarded) and holds it complete and
 * unaltered since it was verified (its sha256 against the check record; see Spool.take).
 * Returns the segment size served, or undefined when it did not serve.
 */
function serveFromSpool(ctx: Context, spool: Spool, name: string, dest: string): number | undefined {
  if (!prefetchOn(ctx.config)) return undefined;
  const meta = spool.readMeta();
  if (meta === undefined) return undefined;
  const bound = spoolBinding(ctx, spool);
  const why = bound === undefined ? "the data directory has no pg_control" : spool.mismatch(bound.expect);
  if (why !== undefined) {
    ctx.log.warn(`prefetch spool ${spool.dir} discarded: ${why}`);
    try {
      spool.discard();
    } catch (err) {
      ctx.log.warn(`cannot remove ${spool.dir} (${(err as Error).message}); not serving from it`);
    }
    return undefined;
  }
  const took = spool.take(name, dest, meta.segSize);
  if (took === "served") return meta.segSize;
  if (took !== "absent")
    ctx.log.warn(`prefetch spool entry ${spool.path(name)} not served: ${took.refused}; serving the archived copy`);
  return undefined;
}

async function servePartialUnderStop(
  ctx: Context,
  driver: StorageDriver,
  control: ControlFiles,
  name: string,
  dest: string,
): Promise<ExitCodeValue> {
  const partialLoc = ctx.config.location("partial_wals");
  const served = (await control.read(BOOT_PARTIAL_SERVED))?.trim();
  const partialPath = partialLoc ? posix.join(partialLoc.path, name) : undefined;
  const wanted = partialPath !== undefined && served !== name ? partialPath : undefined;
  if (ctx.dryRun) {
    const there = wanted !== undefined && (await driver.info(wanted)) !== undefined;
    ctx.out(`[not really] STOP: ${there ? `serve partial ${partialPath ?? ""}` : "mark the end of WAL for boot"}`);
    return there ? ExitCode.OK : ExitCode.NOT_AVAILABLE;
  }
  // Streamed into a temp beside %p and renamed: never a short file at %p.
  const partial = wanted !== undefined ? await fetchToFile(driver, wanted, dest) : undefined;
  if (partial) {
    await control.create(BOOT_PARTIAL_SERVED, `${name}\n`);
    ctx.log.info(`STOP: served in-progress segment ${name} from ${partialPath ?? ""} (${partial.bytes} bytes)`);
    return ExitCode.OK;
  }
  const why =
    served === name ? `the partial segment ${name} has been replayed` : `no ${name} in completed or partial WAL`;
  await control.create(BOOT_END_OF_WAL, `${JSON.stringify({ requested: name, at: new Date().toISOString() })}\n`);
  ctx.log.info(`STOP: end of shipped WAL reached (${why}); recovery can end`);
  return ExitCode.NOT_AVAILABLE;
}

/**
 * Records %r as this standby's restart point in the registry (`standbys.ts`), so that purging
 * keeps the WAL it needs: one read of its record, a write only when something changed or the
 * record is due for a refresh. Never fails the call: a record that cannot be written is a
 * warning (until it is, less WAL is kept for this standby; its older record still holds).
 * Returns the record as it now stands (undefined when there is none to go by).
 */
async function recordRestartPoint(
  ctx: Context,
  driver: StorageDriver,
  dir: string,
  keepFrom: string,
): Promise<StandbyEntry | undefined> {
  if (!usableRestartPoint(keepFrom)) return undefined; // zeros before redo starts: nothing known yet
  try {
    const name = standbyName(ctx.config);
    const res = await noteStandby(driver, dir, name, keepFrom, {
      expireSeconds: standbyExpireSeconds(ctx.config),
      slaveData: ctx.config.path("slave_data") ?? process.cwd(),
    });
    if (res.written && res.conflict !== undefined) {
      ctx.log.warn(
        `standby_name ${JSON.stringify(name)} was last recorded by another standby ` +
          `(${res.conflict.host ?? "?"}:${res.conflict.slaveData ?? "?"}, ${formatAge((Date.now() - res.conflict.updatedMs) / 1000)} ago): ` +
          `give each standby its own standby_name, or WAL one of them needs may be purged`,
      );
    }
    if (res.written) ctx.log.debug(`recorded restart point ${keepFrom} of standby ${JSON.stringify(name)}`);
    return res.entry;
  } catch (err) {
    ctx.log.warn(`cannot record the restart point ${keepFrom} in ${dir}: ${(err as Error).message}`);
    return undefined;
  }
}
