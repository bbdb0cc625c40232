import { readdirSync, readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { join, posix } from "node:path";
import type { Context } from "../../context";
import { IoError, ioError, isErrno, LockHeldError, UsageError } from "../../errors";
import { describeHolder, type TakeResult } from "../../slavedir/lock";
import { slaveLayout, type SlaveLayout } from "../../slavedir/layout";
import { connectMaster, type Db } from "../../pg/client";
import { parseSize } from "../../pg/units";
import { WalArchive } from "../../storage/archive";
import { formatLsn, lsnToSegment, parseLsn, parseWalName, segmentName, segmentNumber } from "../../wal/names";
import { checkPageAddresses, validPrefix, writtenPrefix } from "../../wal/page";
import { walDirOf } from "../../pg/wal-dir";
import { readBytes, writeBytes } from "../../storage/bytes";
import { requireFeature } from "../../storage/driver";
import { parseSyncState, SYNC_STATE, type SyncState } from "../../slavedir/sync-state";
import { readRange } from "../../read-range";
import { ONE_SHOT_WAIT_MS, SyncLock, syncLockHeld, type SyncRole } from "./lock";
import { newestLocalTimeline, systemIdentifier, type MasterSource } from "./master-source";

/** At most this many whole segments are shipped when the master passed several in one loop. */
const MAX_SKIPPED_SEGMENTS = 4;
/** What one ship step did, for the daemon's bookkeeping and the one-shot log line. */
export interface StepResult {
  /** Bytes written to the slave in this step (0: nothing new). */
  shipped: number;
  /** The segment in progress on the master (record mode) or the newest one (file mode). */
  segment?: string;
  /** Where the master's WAL was when asked (record mode). */
  masterLsn?: string;
  /** The current segment differs from the one shipped before this step. */
  switched: boolean;
}

/**
 * The ship step of `sync`, shared by the one-shot command and the daemon: ships what is new in
 * the master's current WAL segment to partial_wals. In record mode the database connection is
 * kept between steps (the daemon calls `step` every loop_delay); any failure drops it, and the
 * next step connects again. Partial files on the slave are only ever written as a full-size
 * atomic publish or as an in-place durable write into an already full-size file: their size
 * never changes, so a stop at any point leaves no short file.
 */
export class Shipper {
  readonly layout: SlaveLayout;
  readonly dir: string;
  private db: Db | undefined;
  private server: { segSize: number; blockSize: number } | undefined;
  private state: SyncState | undefined;
  private stateLoaded = false;
  private lastFile: { name: string; mtimeMs: number; size: number } | undefined;
  /** The state file exactly as we last wrote or read it. */
  private stateRaw: Buffer | undefined;
  /** Someone else may have written partial_wals: ship whole segments, never in place, once. */
  private rewriteWhole = false;
  /** Log ship lines at debug (the daemon ships every second) instead of info. */
  quiet = false;
  /** SYNC_LOCK, taken before anything is written (undefined: -n, which writes nothing). */
  lock: SyncLock | undefined;
  /** What this sync ships from; timeline and system filled in once the master was asked. */
  private src: MasterSource;

  constructor(
    private readonly ctx: Context,
    role: SyncRole = "once",
  ) {
    if (ctx.config.role !== "master") throw new UsageError("sync runs on the master: pass the master's config file");
    this.layout = slaveLayout(ctx.config, "sync");
    this.dir = ctx.config.requireLocation("partial_wals", "sync").path;
    const masterData = ctx.config.path("master_data") ?? "";
    this.src = { host: hostname(), config: ctx.config.file, masterData, systemId: systemIdentifier(masterData) };
    if (!ctx.dryRun) this.lock = new SyncLock(ctx, this.layout, this.dir, role, this.src);
  }

  /** What this sync ships from, as far as it knows yet (timeline: once a step asked the master). */
  get source(): MasterSource {
    return this.src;
  }

  /**
   * The master's timeline and system, learnt by a step: kept for the shipped state and the
   * heartbeat, and written into the lock (before anything is shipped) when it changed.
   */
  private async noteSource(timeline: number): Promise<void> {
    const systemId = this.src.systemId ?? systemIdentifier(this.src.masterData);
    this.src = { ...this.src, timeline, ...(systemId !== undefined ? { systemId } : {}) };
    const lock = this.lock;
    if (!lock || (await lock.describeSource({ timeline, systemId }))) return;
    // Lost since the step began (cleared or replaced): take it again (with the new body) or refuse.
    this.ctx.log.warn(`${lock.path} no longer holds this process's lock: taking it again before writing`);
    this.rewriteWhole = true;
    await this.ensureLock();
  }

  /**
   * This master's timeline for a message (the lock refused): the one a step learnt, else the
   * newest segment in pg_wal (on a running master the one being written). Local reads only: a
   * refusal stays immediate, whatever the database does.
   */
  identify(): MasterSource {
    if (this.src.timeline !== undefined || !this.src.masterData) return this.src;
    const timeline = newestLocalTimeline(this.src.masterData);
    return timeline === undefined ? this.src : { ...this.src, timeline };
  }

  /** The error for SYNC_LOCK held by someone else, saying whether that is another master. */
  lockHeld(res: Extract<TakeResult, { taken: false }>): LockHeldError {
    const lock = this.lock;
    if (!lock) throw new Error("no lock in a dry run");
    return syncLockHeld(lock, res, this.identify());
  }

  /**
   * Makes sure we hold SYNC_LOCK before writing: checks that the lock file still holds our body
   * (nobody cleared or replaced it), else takes it again. When it had been lost, or a dead
   * holder's lock was cleared to take it, the next write republishes whole: another writer may
   * have replaced the files meanwhile. Throws LockHeldError naming the holder.
   */
  async ensureLock(): Promise<void> {
    const lock = this.lock;
    if (!lock) return;
    if (lock.held) {
      if (await lock.stillOurs()) return;
      this.ctx.log.warn(`${lock.path} no longer holds this process's lock: taking it again before writing`);
      this.rewriteWhole = true;
    }
    const res = await lock.take();
    if (!res.taken) throw this.lockHeld(res);
    if (res.broke) this.rewriteWhole = true;
    this.stateLoaded = false;
    this.lastFile = undefined;
  }

  get lastState(): SyncState | undefined {
    return this.state;
  }

  get recordMode(): boolean {
    return this.ctx.config.bool("use_xlog_functions");
  }

  private note(msg: string): void {
    if (this.quiet) this.ctx.log.debug(msg);
    else this.ctx.log.info(msg);
  }

  /** Checks that partial_wals exists (an I/O error naming it otherwise). */
  async checkTarget(): Promise<void> {
    if (!(await this.layout.driver.info(this.dir))?.isDirectory) {
      throw new IoError(
        `partial_wals ${this.dir} does not exist`,
        "create the slave directory layout with `wal-ctl CONFIG setup`",
      );
    }
  }

  async step(): Promise<StepResult> {
    try {
      await this.ensureLock();
      return this.recordMode ? await this.recordStep() : await this.fileStep();
    } catch (err) {
      // Start from what is on disk and a fresh connection next time.
      await this.close();
      this.stateLoaded = false;
      this.lastFile = undefined;
      throw err;
    }
  }

  async close(): Promise<void> {
    const db = this.db;
    this.db = undefined;
    await db?.close();
  }

  /**
   * The shipped state, read from disk at every step: the offset in memory is trusted only while
   * the file still holds what we last wrote. If it changed, someone else wrote partial_wals: the
   * next write republishes the segment whole instead of writing in place.
   */
  private async loadState(): Promise<SyncState | undefined> {
    const raw = await readBytes(this.layout.driver, posix.join(this.dir, SYNC_STATE));
    if (this.stateLoaded && !(raw === undefined ? this.stateRaw === undefined : this.stateRaw?.equals(raw))) {
      this.ctx.log.warn(
        `${posix.join(this.dir, SYNC_STATE)} changed under this sync: shipping the segment whole again`,
      );
      this.rewriteWhole = true;
    }
    this.stateRaw = raw;
    this.state = parseSyncState(raw);
    this.stateLoaded = true;
    return this.state;
  }

  private async saveState(shipped: SyncState): Promise<void> {
    const src = this.src;
    const next: SyncState = {
      ...shipped,
      ...(src.timeline !== undefined ? { timeline: src.timeline } : {}),
      ...(src.systemId !== undefined ? { systemId: src.systemId } : {}),
      host: src.host,
      ...(src.masterData ? { masterData: src.masterData } : {}),
    };
    const raw = Buffer.from(`${JSON.stringify(next)}\n`);
    await writeBytes(this.layout.driver, posix.join(this.dir, SYNC_STATE), raw);
    this.state = next;
    this.stateRaw = raw;
    this.stateLoaded = true;
  }

  private async connect(): Promise<Db> {
    if (this.db) return this.db;
    this.db = await connectMaster(this.ctx.config, "sync (use_xlog_functions = 1)");
    this.server = undefined;
    return this.db;
  }

  private async archived(name: string): Promise<boolean> {
    const archive = new WalArchive(this.layout.driver, this.layout.completed.path);
    return (await this.layout.driver.info(archive.path(name))) !== undefined;
  }

  /**
   * Record mode (use_xlog_functions = 1): ship only the bytes written to the current segment
   * since the last sync. When the master has moved on to a new segment, the rest of the old one
   * (and any segment passed over in between) is shipped first, so the slave has no gap should
   * the master die before archive_command has copied them.
   */
  private async recordStep(): Promise<StepResult> {
    const ctx = this.ctx;
    const masterData = ctx.config.requirePath("master_data", "sync");
    const db = await this.connect();
    const v10 = db.serverVersion >= 100000;
    const row = await db.one<{ rec: boolean; lsn: string; file: string; seg: string; blk: string }>(
      `SELECT pg_is_in_recovery() AS rec, ${v10 ? "pg_current_wal_lsn" : "pg_current_xlog_location"}()::text AS lsn,
              ${v10 ? "pg_walfile_name(pg_current_wal_lsn())" : "pg_xlogfile_name(pg_current_xlog_location())"} AS file,
              current_setting('wal_segment_size') AS seg, current_setting('wal_block_size') AS blk`,
    );
    if (row.rec) throw new UsageError(`${db.where} is in recovery: sync runs against the master`);
    const lsnText = row.lsn;
    const timeline = Number.parseInt(row.file.slice(0, 8), 16);
    if (!ctx.dryRun) await this.noteSource(timeline);
    this.server ??= { segSize: parseSize(row.seg), blockSize: Number.parseInt(row.blk, 10) };
    const { segSize, blockSize } = this.server;
    const lsn = parseLsn(lsnText);
    const { name, offset } = lsnToSegment(lsn, timeline, segSize);
    const walDir = walDirOf(masterData);
    const dest = posix.join(this.dir, name);
    const state = await this.loadState();
    const switched = state !== undefined && state.name !== name;
    let shipped = 0;
    if (switched) shipped += await this.finishPrevious(state, name, walDir, segSize, blockSize);
    if (offset === 0) {
      this.note(`master at ${lsnText}, the start of ${name}: nothing in progress to ship`);
      if (switched && !ctx.dryRun)
        await this.saveState({ name, offset: 0, lsn: lsnText, time: new Date().toISOString() });
      await this.prune(name);
      return { shipped, segment: name, masterLsn: lsnText, switched };
    }
    const existing = await this.layout.driver.info(dest);
    // Storage that cannot update part of an object (S3) gets the segment republished whole.
    const incremental =
      this.layout.driver.features.writeAt !== undefined &&
      !this.rewriteWhole &&
      state?.name === name &&
      state.offset <= offset &&
      existing?.isFile === true && // a planted link is replaced whole, never written through
      existing.size === segSize;
    const from = incremental ? state.offset : 0;
    if (from === offset) {
      this.note(`${name} already shipped up to ${lsnText}: nothing new`);
      return { shipped, segment: name, masterLsn: lsnText, switched };
    }
    const src = join(walDir, name);
    const segLsn = lsn - BigInt(offset);
    const pageStart = Math.floor(from / blockSize) * blockSize;
    const bytes = readRange(src, pageStart, offset - pageStart);
    if (bytes.length < offset - pageStart) throw new IoError(`${src} is shorter than the master's position ${lsnText}`);
    // Zero pages after a switch record hold no WAL: shipped (and recorded) is what comes before.
    const upto = Math.max(from, pageStart + writtenPrefix(bytes, pageStart, segLsn, blockSize, src));
    if (upto === from) {
      this.note(`${name} holds no WAL to ship past offset ${from} yet (the rest of a switched segment)`);
      return { shipped, segment: name, masterLsn: lsnText, switched };
    }
    const chunk = bytes.subarray(from - pageStart, upto - pageStart);
    const shippedLsn = upto === offset ? lsnText : formatLsn(segLsn + BigInt(upto));
    if (ctx.dryRun) {
      ctx.out(`[not really] ship ${chunk.length} bytes of ${name} (offset ${from}..${upto}) to ${dest}`);
      return { shipped: 0, segment: name, masterLsn: lsnText, switched };
    }
    if (incremental) {
      await requireFeature(this.layout.driver, "writeAt").writeAt(dest, from, chunk);
    } else {
      await writeBytes(this.layout.driver, dest, chunk, { padTo: segSize });
    }
    await this.saveState({ name, offset: upto, lsn: shippedLsn, time: new Date().toISOString() });
    this.rewriteWhole = false;
    this.note(`shipped ${chunk.length} bytes of ${name} (up to ${shippedLsn}) to ${dest}`);
    await this.prune(name);
    return { shipped: shipped + chunk.length, segment: name, masterLsn: lsnText, switched };
  }

  /**
   * The master left `state.name` for `current`: ship the rest of the old segment (its pages
   * that carry their own address: the rest is unwritten) and, whole, any segment in between
   * that is not archived yet. Returns the bytes shipped.
   */
  private async finishPrevious(
    state: SyncState,
    current: string,
    walDir: string,
    segSize: number,
    blockSize: number,
  ): Promise<number> {
    const prev = parseWalName(state.name);
    const cur = parseWalName(current);
    if (!prev || !cur || prev.kind !== "segment" || prev.timeline !== cur.timeline) return 0;
    const prevNo = segmentNumber(state.name, segSize);
    const curNo = segmentNumber(current, segSize);
    if (prevNo >= curNo) return 0;
    let shipped = await this.shipRest(state.name, state.offset, walDir, segSize, blockSize);
    const between = curNo - prevNo - 1n;
    if (between > BigInt(MAX_SKIPPED_SEGMENTS)) {
      this.ctx.log.warn(
        `the master passed ${between} segments since the last sync; shipping the newest ${MAX_SKIPPED_SEGMENTS} of them and relying on archive_command for the rest`,
      );
    }
    const first = between > BigInt(MAX_SKIPPED_SEGMENTS) ? curNo - BigInt(MAX_SKIPPED_SEGMENTS) : prevNo + 1n;
    for (let no = first; no < curNo; no++) {
      shipped += await this.shipRest(segmentName(prev.timeline, no, segSize), 0, walDir, segSize, blockSize);
    }
    this.ctx.log.info(`the master switched from ${state.name} to ${current}`);
    return shipped;
  }

  /** Ships `name` from byte `from` to the end of its written pages, unless it is archived. */
  private async shipRest(
    name: string,
    from: number,
    walDir: string,
    segSize: number,
    blockSize: number,
  ): Promise<number> {
    if (await this.archived(name)) return 0;
    const src = join(walDir, name);
    const dest = posix.join(this.dir, name);
    const pageStart = Math.floor(from / blockSize) * blockSize;
    let bytes: Buffer;
    try {
      bytes = readRange(src, pageStart, segSize - pageStart);
    } catch (err) {
      // Recycled already: then it was archived too.
      if (err instanceof IoError && !statSafe(src)) return 0;
      throw err;
    }
    const segLsn = segmentNumber(name, segSize) * BigInt(segSize);
    const end = pageStart + validPrefix(bytes, pageStart, segLsn, blockSize);
    if (end <= from) return 0;
    const existing = await this.layout.driver.info(dest);
    const inPlace =
      this.layout.driver.features.writeAt !== undefined &&
      !this.rewriteWhole &&
      from > 0 &&
      existing?.isFile === true &&
      existing.size === segSize;
    const chunk = bytes.subarray(inPlace ? from - pageStart : 0, end - pageStart);
    if (this.ctx.dryRun) {
      this.ctx.out(`[not really] ship the rest of ${name} (offset ${inPlace ? from : 0}..${end}) to ${dest}`);
      return 0;
    }
    if (inPlace) {
      await requireFeature(this.layout.driver, "writeAt").writeAt(dest, from, chunk);
    } else {
      // Without the shipped start in place, ship the whole written part from the segment's start.
      const whole = pageStart === 0 ? chunk : readRange(src, 0, end);
      checkPageAddresses(whole, 0, segLsn, blockSize, src);
      await writeBytes(this.layout.driver, dest, whole, { padTo: segSize });
    }
    this.note(`shipped the rest of ${name} (up to offset ${end}) to ${dest}`);
    return chunk.length;
  }

  /** File mode (use_xlog_functions = 0): copy the newest segment file of pg_wal, whole. */
  private async fileStep(): Promise<StepResult> {
    const ctx = this.ctx;
    const masterData = ctx.config.requirePath("master_data", "sync");
    const walDir = walDirOf(masterData);
    let newest: { name: string; mtimeMs: number; size: number } | undefined;
    let names: string[];
    try {
      names = readdirSync(walDir);
    } catch (err) {
      throw ioError("cannot list", walDir, err);
    }
    const stats = new Map<string, { mtimeMs: number; size: number }>();
    for (const n of names) {
      if (parseWalName(n)?.kind !== "segment") continue;
      try {
        const st = statSync(join(walDir, n));
        stats.set(n, { mtimeMs: st.mtimeMs, size: st.size });
        if (!newest || st.mtimeMs > newest.mtimeMs) newest = { name: n, mtimeMs: st.mtimeMs, size: st.size };
      } catch (err) {
        if (!isErrno(err, "ENOENT")) throw ioError("cannot stat", join(walDir, n), err);
      }
    }
    if (!newest) {
      this.note(`no WAL segment in ${walDir}: nothing to ship`);
      return { shipped: 0, switched: false };
    }
    const tli = parseWalName(newest.name)?.timeline;
    if (tli !== undefined && !ctx.dryRun) await this.noteSource(tli);
    const last = this.lastFile;
    if (last && last.name === newest.name && last.mtimeMs === newest.mtimeMs && last.size === newest.size) {
      this.note(`${newest.name} unchanged since the last sync: nothing new`);
      return { shipped: 0, segment: newest.name, switched: false };
    }
    let shipped = 0;
    const switched = last !== undefined && last.name !== newest.name;
    if (switched) {
      // The old segment is complete now; ship its final content unless it is archived already.
      const prev = stats.get(last.name);
      if (prev && (prev.mtimeMs !== last.mtimeMs || prev.size !== last.size) && !(await this.archived(last.name))) {
        shipped += await this.copyWhole(walDir, last.name);
      }
      ctx.log.info(`the newest segment is now ${newest.name} (was ${last.name})`);
    }
    shipped += await this.copyWhole(walDir, newest.name);
    if (!ctx.dryRun) this.lastFile = newest;
    await this.prune(newest.name);
    return { shipped, segment: newest.name, switched };
  }

  private async copyWhole(walDir: string, name: string): Promise<number> {
    const src = join(walDir, name);
    const dest = posix.join(this.dir, name);
    let data: Buffer;
    try {
      data = readFileSync(src);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return 0;
      throw ioError("cannot read", src, err);
    }
    if (this.ctx.dryRun) {
      this.ctx.out(`[not really] copy ${src} (${data.length} bytes) to ${dest}`);
      return 0;
    }
    await writeBytes(this.layout.driver, dest, data);
    this.note(`shipped ${name} (whole file, ${data.length} bytes) to ${dest}`);
    await this.saveState({ name, offset: data.length, lsn: "", time: new Date().toISOString() });
    return data.length;
  }

  /** Removes partial segments whose complete segment has been archived. */
  async prune(keep: string): Promise<void> {
    const names = (await this.layout.driver.list(this.dir)) ?? [];
    for (const n of names) {
      const w = parseWalName(n);
      if (!w || w.kind !== "segment" || n === keep) continue;
      if (await this.archived(n)) {
        await this.ctx.act(`remove partial ${posix.join(this.dir, n)} (complete segment archived)`, () =>
          this.layout.driver.remove(posix.join(this.dir, n)),
        );
      }
    }
  }
}

function statSafe(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * `sync` (one shot): ships the in-progress segment to partial_wals. (`--daemon` is routed to
 * the daemon by daemon.ts's syncCommand, which imports this file: never the other way round.)
 */
export async function syncOnce(ctx: Context): Promise<void> {
  const shipper = new Shipper(ctx, "once");
  await shipper.checkTarget();
  try {
    await takeOneShotLock(ctx, shipper);
    await shipper.step();
  } finally {
    await shipper.close();
    await shipper.lock?.release();
  }
}

/**
 * A one-shot sync waits (at most ONE_SHOT_WAIT_MS) while another one-shot sync holds SYNC_LOCK,
 * and refuses at once (exit 4, naming it) while the sync daemon holds it.
 */
async function takeOneShotLock(ctx: Context, shipper: Shipper): Promise<void> {
  const lock = shipper.lock;
  if (!lock) return;
  const deadline = Date.now() + ONE_SHOT_WAIT_MS;
  let told = false;
  for (;;) {
    const res = await lock.take();
    if (res.taken) return;
    if (res.holder?.role === "daemon" || Date.now() >= deadline) throw shipper.lockHeld(res);
    if (!told) ctx.log.info(`waiting for another sync (${describeHolder(res.holder, res.raw)}) to finish`);
    told = true;
    await new Promise((r) => setTimeout(r, 100));
  }
}
