import { closeSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import type { Context } from "../context";
import { IoError, ioError, isErrno, UsageError } from "../errors";
import { slaveLayout, type SlaveLayout } from "../layout";
import { connectMaster } from "../pg/client";
import { parseSize } from "../pg/units";
import { WalArchive } from "../storage/archive";
import { lsnToSegment, parseLsn, parseWalName, formatLsn } from "../wal/names";

/** Kept in partial_wals: how far the in-progress segment has been shipped. */
export const SYNC_STATE = ".walmgr-sync-state";

interface SyncState {
  name: string;
  offset: number;
  lsn: string;
  time: string;
}

const XLP_PAGEADDR_OFFSET = 8;

/** Reads `length` bytes at `position` of a file; fewer only if the file is shorter. */
function readRange(path: string, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, position + got);
      if (n === 0) break;
      got += n;
    }
    return got === length ? buf : buf.subarray(0, got);
  } catch (err) {
    throw ioError("cannot read", path, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Checks that every WAL page header in `pages` (read from `fileStart` bytes into a segment that
 * begins at `segLsn`) carries its own address, so a recycled or renamed segment file is never
 * shipped as if it held current WAL.
 */
export function checkPageAddresses(
  pages: Buffer,
  fileStart: number,
  segLsn: bigint,
  blockSize: number,
  what: string,
): void {
  for (let off = 0; off + 16 <= pages.length; off += blockSize) {
    const addr = pages.readBigUInt64LE(off + XLP_PAGEADDR_OFFSET);
    const expected = segLsn + BigInt(fileStart + off);
    if (addr !== expected) {
      throw new IoError(
        `${what}: page at offset ${fileStart + off} holds WAL for ${formatLsn(addr)}, expected ${formatLsn(expected)} (the segment was recycled while reading?)`,
        "run sync again",
      );
    }
  }
}

async function readState(layout: SlaveLayout, dir: string): Promise<SyncState | undefined> {
  const raw = await layout.driver.read(posix.join(dir, SYNC_STATE));
  if (!raw) return undefined;
  try {
    return JSON.parse(raw.toString("utf8")) as SyncState;
  } catch {
    return undefined;
  }
}

/** Removes partial segments whose complete segment has been archived. */
async function prunePartials(ctx: Context, layout: SlaveLayout, dir: string, keep: string): Promise<void> {
  const names = (await layout.driver.list(dir)) ?? [];
  const archive = new WalArchive(layout.driver, layout.completed.path);
  for (const n of names) {
    const w = parseWalName(n);
    if (!w || w.kind !== "segment" || n === keep) continue;
    if (await layout.driver.stat(archive.path(n))) {
      await ctx.act(`remove partial ${posix.join(dir, n)} (complete segment archived)`, () =>
        layout.driver.remove(posix.join(dir, n)),
      );
    }
  }
}

/**
 * Record mode (use_xlog_functions = 1): ship only the bytes written to the current segment
 * since the last sync. The partial file on the slave is always full-size, zero-padded.
 */
async function recordSync(ctx: Context, layout: SlaveLayout, dir: string): Promise<void> {
  const masterData = ctx.config.requirePath("master_data", "sync");
  const db = await connectMaster(ctx.config, "sync (use_xlog_functions = 1)");
  let lsnText: string;
  let timeline: number;
  let segSize: number;
  let blockSize: number;
  try {
    const v10 = db.serverVersion >= 100000;
    const row = await db.one<{ rec: boolean; lsn: string; file: string; seg: string; blk: string }>(
      `SELECT pg_is_in_recovery() AS rec, ${v10 ? "pg_current_wal_lsn" : "pg_current_xlog_location"}()::text AS lsn,
              ${v10 ? "pg_walfile_name(pg_current_wal_lsn())" : "pg_xlogfile_name(pg_current_xlog_location())"} AS file,
              current_setting('wal_segment_size') AS seg, current_setting('wal_block_size') AS blk`,
    );
    if (row.rec) throw new UsageError(`${db.where} is in recovery: sync runs against the master`);
    lsnText = row.lsn;
    timeline = Number.parseInt(row.file.slice(0, 8), 16);
    segSize = parseSize(row.seg);
    blockSize = Number.parseInt(row.blk, 10);
  } finally {
    await db.close();
  }
  const lsn = parseLsn(lsnText);
  const { name, offset } = lsnToSegment(lsn, timeline, segSize);
  const walDir = join(masterData, v10Dir(masterData));
  const src = join(walDir, name);
  const dest = posix.join(dir, name);
  const segLsn = lsn - BigInt(offset);
  if (offset === 0) {
    ctx.log.info(`master at ${lsnText}, the start of ${name}: nothing in progress to ship`);
    await prunePartials(ctx, layout, dir, name);
    return;
  }
  const state = await readState(layout, dir);
  const existing = await layout.driver.stat(dest);
  const incremental = state?.name === name && state.offset <= offset && existing?.size === segSize;
  const from = incremental ? state.offset : 0;
  if (from === offset) {
    ctx.log.info(`${name} already shipped up to ${lsnText}: nothing new`);
    return;
  }
  const pageStart = Math.floor(from / blockSize) * blockSize;
  const bytes = readRange(src, pageStart, offset - pageStart);
  if (bytes.length < offset - pageStart) throw new IoError(`${src} is shorter than the master's position ${lsnText}`);
  checkPageAddresses(bytes, pageStart, segLsn, blockSize, src);
  const chunk = bytes.subarray(from - pageStart);
  if (ctx.dryRun) {
    ctx.out(`[not really] ship ${chunk.length} bytes of ${name} (offset ${from}..${offset}) to ${dest}`);
    return;
  }
  if (incremental) {
    await layout.driver.writeAt(dest, from, chunk);
  } else {
    await layout.driver.publish(dest, chunk, { padTo: segSize });
  }
  const next: SyncState = { name, offset, lsn: lsnText, time: new Date().toISOString() };
  await layout.driver.publish(posix.join(dir, SYNC_STATE), Buffer.from(`${JSON.stringify(next)}\n`));
  ctx.log.info(`shipped ${chunk.length} bytes of ${name} (up to ${lsnText}) to ${dest}`);
  await prunePartials(ctx, layout, dir, name);
}

function v10Dir(dataDir: string): string {
  try {
    statSync(join(dataDir, "pg_wal"));
    return "pg_wal";
  } catch {
    return "pg_xlog";
  }
}

/** File mode (use_xlog_functions = 0): copy the newest segment file of pg_wal, whole. */
async function fileSync(ctx: Context, layout: SlaveLayout, dir: string): Promise<void> {
  const masterData = ctx.config.requirePath("master_data", "sync");
  const walDir = join(masterData, v10Dir(masterData));
  let newest: { name: string; mtime: number } | undefined;
  let names: string[];
  try {
    names = readdirSync(walDir);
  } catch (err) {
    throw ioError("cannot list", walDir, err);
  }
  for (const n of names) {
    if (parseWalName(n)?.kind !== "segment") continue;
    try {
      const st = statSync(join(walDir, n));
      if (!newest || st.mtimeMs > newest.mtime) newest = { name: n, mtime: st.mtimeMs };
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw ioError("cannot stat", join(walDir, n), err);
    }
  }
  if (!newest) {
    ctx.log.info(`no WAL segment in ${walDir}: nothing to ship`);
    return;
  }
  const src = join(walDir, newest.name);
  const dest = posix.join(dir, newest.name);
  let data: Buffer;
  try {
    const { readFileSync } = await import("node:fs");
    data = readFileSync(src);
  } catch (err) {
    throw ioError("cannot read", src, err);
  }
  if (ctx.dryRun) {
    ctx.out(`[not really] copy ${src} (${data.length} bytes) to ${dest}`);
    return;
  }
  await layout.driver.publish(dest, data);
  ctx.log.info(`shipped ${newest.name} (whole file, ${data.length} bytes) to ${dest}`);
  await prunePartials(ctx, layout, dir, newest.name);
}

/** `sync` (one shot): ships the in-progress segment to partial_wals. */
export async function syncOnce(ctx: Context): Promise<void> {
  if (ctx.options.has("daemon")) {
    throw new UsageError("--daemon is not available in this version; run wal-sync from cron, or see the README");
  }
  if (ctx.config.role !== "master") throw new UsageError("sync runs on the master: pass the master's config file");
  const layout = slaveLayout(ctx.config, "sync");
  const dir = ctx.config.requireLocation("partial_wals", "sync").path;
  if (!(await layout.driver.stat(dir))?.isDirectory) {
    throw new IoError(
      `partial_wals ${dir} does not exist`,
      "create the slave directory layout with `wal-ctl CONFIG setup`",
    );
  }
  if (ctx.config.bool("use_xlog_functions")) await recordSync(ctx, layout, dir);
  else await fileSync(ctx, layout, dir);
}
