/**
 * The sync lock of partial_wals (slavedir/sync-state.ts names it): held by the daemon for as long
 * as it runs and by a one-shot sync for its step, and the error that names its holder.
 */
import { posix } from "node:path";
import type { Context } from "../../context";
import { LockHeldError } from "../../errors";
import {
  describeHolder,
  lockBody,
  parseLockInfo,
  releaseLock,
  releaseLockNow,
  selfLockInfo,
  tryTakeLock,
  type LockInfo,
  type TakeResult,
} from "../../slavedir/lock";
import { type SlaveLayout } from "../../slavedir/layout";
import { readBytes, writeBytes } from "../../storage/bytes";
import { SYNC_LOCK, SYNC_PROGRAMS } from "../../slavedir/sync-state";
import { foreignHolder, type MasterSource } from "./master-source";

/** How long a one-shot sync waits for another one-shot sync to finish. */
export const ONE_SHOT_WAIT_MS = 15_000;

export type SyncRole = "daemon" | "once";

/** SYNC_LOCK of one partial_wals, through the storage driver (local or ssh). */
export class SyncLock {
  readonly path: string;
  /** The body the file holds while this process holds the lock. */
  private body: Buffer | undefined;
  /** The holder info this process writes (the same pid, host and start for every attempt). */
  private info: LockInfo | undefined;
  /** Every body this process has written: a lock file holding one of them is its own. */
  private readonly ours = new Set<string>();
  private unregister: (() => void) | undefined;

  constructor(
    private readonly ctx: Context,
    readonly layout: SlaveLayout,
    dir: string,
    readonly role: SyncRole,
    /** Written into the lock: what this process ships from (timeline and system as it learns them). */
    private source: MasterSource,
  ) {
    this.path = posix.join(dir, SYNC_LOCK);
  }

  /** Which lock this is (a reload keeps the lock when partial_wals stays the same). */
  get key(): string {
    return `${this.layout.driver.description} ${this.path}`;
  }

  get held(): boolean {
    return this.body !== undefined;
  }

  /**
   * One attempt: takes the lock (clearing a provably stale one) or says who holds it. A lock
   * file holding a body this process wrote before (the slave directory was away for a while
   * and came back) is this process's own: it is held again as it is.
   */
  async take(): Promise<TakeResult> {
    this.info ??= selfLockInfo(
      `${this.role === "daemon" ? "sync daemon" : "sync"} ${this.ctx.config.file}`,
      this.role,
      sourceFields(this.source),
    );
    const body = lockBody(this.info);
    this.ours.add(body.toString("utf8"));
    const res = await tryTakeLock(this.layout.driver, this.path, body, {
      programs: SYNC_PROGRAMS,
      breakStale: true,
      onStale: (msg) => this.ctx.log.warn(msg),
    });
    if (!res.taken && this.ours.has(res.raw)) {
      this.hold(Buffer.from(res.raw));
      return { taken: true, broke: false };
    }
    if (res.taken) this.hold(body);
    return res;
  }

  private hold(body: Buffer): void {
    this.unregister?.();
    this.body = body;
    const driver = this.layout.driver;
    this.unregister = this.ctx.onCleanup(() => releaseLockNow(driver, this.path, body));
  }

  /**
   * Records in the lock which timeline and database system this process ships (known only once
   * the master was asked, after the lock was taken), so that others can tell an old master's
   * daemon from this master's. Rewrites the lock (atomically, whole) only when that changed and
   * while the file still holds this process's body. Returns false when the lock is not held
   * (any more): it is left alone, and the next take writes the new body.
   */
  async describeSource(next: Pick<MasterSource, "timeline" | "systemId">): Promise<boolean> {
    const fields = sourceFields(next);
    this.source = { ...this.source, ...fields };
    if (this.info) this.info = { ...this.info, ...fields };
    const held = this.body;
    if (!held || !this.info) return false;
    const now = parseLockInfo(held.toString("utf8"));
    if (now !== undefined && now.timeline === this.info.timeline && now.systemId === this.info.systemId) return true;
    const body = lockBody(this.info);
    if (!(await this.stillOurs())) return false;
    this.ours.add(body.toString("utf8"));
    await writeBytes(this.layout.driver, this.path, body);
    this.hold(body);
    return true;
  }

  /** True while the file still holds our exact body: nobody broke or replaced it. */
  async stillOurs(): Promise<boolean> {
    if (!this.body) return false;
    const now = await readBytes(this.layout.driver, this.path);
    if (now?.equals(this.body)) return true;
    this.forget();
    return false;
  }

  async release(): Promise<void> {
    const body = this.body;
    if (!body) return;
    this.forget();
    await releaseLock(this.layout.driver, this.path, body);
  }

  private forget(): void {
    this.body = undefined;
    this.unregister?.();
    this.unregister = undefined;
  }
}

/** The fields of `src` a lock records, without the unknown ones. */
function sourceFields(src: Partial<MasterSource>): Pick<LockInfo, "config" | "masterData" | "timeline" | "systemId"> {
  return {
    ...(src.config !== undefined ? { config: src.config } : {}),
    ...(src.masterData !== undefined ? { masterData: src.masterData } : {}),
    ...(src.timeline !== undefined ? { timeline: src.timeline } : {}),
    ...(src.systemId !== undefined ? { systemId: src.systemId } : {}),
  };
}

/**
 * The error for a SYNC_LOCK held by someone else, naming the holder: pid, host, start, what it
 * ships (master data directory, timeline), and, when that is another master than `self` (an old
 * master's daemon left running after a failover), saying so and how to stop it.
 */
export function syncLockHeld(
  lock: SyncLock,
  res: Extract<TakeResult, { taken: false }>,
  self?: MasterSource,
): LockHeldError {
  const who = describeHolder(res.holder, res.raw);
  const unknown = res.verdict.state === "unknown" ? ` (${res.verdict.why})` : "";
  const h = res.holder;
  const foreign = self ? foreignHolder(h, self) : undefined;
  if (h && foreign !== undefined) {
    const stop = h.config !== undefined ? `\`wal-ctl ${h.config} stop\` on ${h.host}` : `its stop on ${h.host}`;
    return new LockHeldError(
      `${lock.path} is held by a sync of another master (or of this one before a failover): ${who}${unknown}; ${foreign}. ` +
        `Two masters must not ship into one slave directory: this master's WAL is not synced while it holds the lock`,
      `stop that ${h.role === "daemon" ? "daemon" : "sync"} and fence its master: ${stop} (it also turns that master's archiving off), or kill ${h.pid} there; then run sync again` +
        (unknown ? `; if ${h.host} is down for good, remove ${lock.path}` : ""),
    );
  }
  if (res.holder?.role === "daemon") {
    return new LockHeldError(
      `the sync daemon ships to ${posix.dirname(lock.path)} already (${who})${unknown}`,
      lock.role === "daemon"
        ? `one daemon per slave directory: stop the other one first (${stopHint(res.holder)})`
        : `no one-shot sync is needed while it runs; to sync by hand, stop it first (${stopHint(res.holder)})${unknown ? `; if it is gone, remove ${lock.path}` : ""}`,
    );
  }
  return new LockHeldError(
    `another sync holds ${lock.path} (${who})${unknown}`,
    unknown ? `wait for it; if that process is gone, remove ${lock.path}` : "wait for it to finish and run sync again",
  );
}

function stopHint(h: LockInfo | undefined): string {
  return h?.config !== undefined ? `wal-ctl ${h.config} stop, on ${h.host}` : "wal-ctl CONFIG stop";
}
