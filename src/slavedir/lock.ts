/**
 * Lock files kept in the slave directory (BACKUPLOCK in completed_wals, the sync lock in
 * partial_wals), through the storage driver, so they work the same on a local and on a remote
 * slave directory. A lock is taken by an exclusive publish of a small JSON body naming its holder
 * (pid, host, start, command, and the holder's process start time and boot id, which identify the
 * process exactly); it is released by its holder only while it still holds that exact body.
 *
 * A lock whose holder is provably gone (same host, and its pid is gone, or now belongs to
 * another process, or is not one of our programs, or the host rebooted) is stale. Breaking a
 * stale lock is itself serialised: the breaker first takes a guard named after the exact body it
 * judged stale (an exclusive publish: one breaker per stale body), then re-reads the lock and
 * removes it only if it still holds that body. While the guard exists nobody else removes that
 * body (its holder is dead, other breakers lose the guard), so the re-read and the removal see
 * the same file. A breaker killed while holding a guard leaves a guard that is stale in turn and
 * broken the same way; the next process that takes the lock sweeps such guards (sweepDeadGuards).
 */
import { readFileSync, unlinkSync } from "node:fs";
import { hostname } from "node:os";
import { posix } from "node:path";
import type { StorageDriver } from "../storage/driver";
import { readBytes, writeBytes } from "../storage/bytes";
import { sha256 } from "../storage/sha256";
import { crashPoint } from "../crash-point";
import {
  describeHolder,
  judgeHolder,
  lockBody,
  parseLockInfo,
  selfLockInfo,
  type LockInfo,
  type Verdict,
} from "../holder";

// The holder identity lives below storage (holder.ts); the lock API hands it on.
export {
  describeHolder,
  judgeHolder,
  lockBody,
  parseLockInfo,
  selfLockInfo,
  type LockInfo,
  type SyncLockSource,
  type Verdict,
} from "../holder";

export type TakeResult =
  | { taken: true; broke: boolean }
  | { taken: false; holder: LockInfo | undefined; raw: string; verdict: Verdict; broke: boolean };

export interface TakeOptions {
  /** Programs a live holder runs (for the stale test). */
  programs: readonly string[];
  /** Break a stale lock (always exact: only a provably dead holder's). */
  breakStale: boolean;
  /** Called once per stale lock broken, before it is. */
  onStale?: (msg: string) => void;
  /** Break a stale lock of this holder even without `breakStale` (a kind of holder whose death leaves nothing to clear up). */
  breakIf?: (holder: LockInfo | undefined) => boolean;
}

/** Guard guards nest when breakers die inside the tiny guarded step; this bounds it. */
const MAX_GUARD_DEPTH = 3;

function guardPath(path: string, raw: Buffer): string {
  const token = sha256(raw).slice(0, 16);
  return posix.join(posix.dirname(path), `.walmgr-break.${posix.basename(path).replace(/^\.+/, "")}.${token}`);
}

/**
 * Tries once (plus the retries breaking a stale lock needs) to take the lock at `path` with
 * `body`. Returns `taken: true` (and whether a stale lock was cleared on the way), or who holds it and whether that holder is live/stale/unknown.
 */
export async function tryTakeLock(
  driver: StorageDriver,
  path: string,
  body: Buffer,
  opts: TakeOptions,
  depth = 0,
): Promise<TakeResult> {
  let broke = false;
  let reported: string | undefined;
  let last: TakeResult | undefined;
  for (let attempt = 0; attempt < 20; attempt++) {
    if (await writeBytes(driver, path, body, { exclusive: true })) {
      if (depth === 0) await sweepDeadGuards(driver, path, opts.programs);
      return { taken: true, broke };
    }
    const raw = await readBytes(driver, path);
    if (raw === undefined) continue; // released meanwhile: try again
    const text = raw.toString("utf8");
    const holder = parseLockInfo(text);
    const verdict = judgeHolder(holder, opts.programs);
    last = { taken: false, holder, raw: text, verdict, broke };
    if (verdict.state !== "stale" || !(opts.breakStale || opts.breakIf?.(holder) === true)) return last;
    if (reported !== text)
      opts.onStale?.(`stale ${path} (${describeHolder(holder, text)}): ${verdict.why}; clearing it`);
    reported = text;
    if (await breakStaleLock(driver, path, raw, opts, depth)) broke = true;
    // Another process is clearing it: give it a moment, then look again.
    else await new Promise((r) => setTimeout(r, 10 + Math.random() * 20));
  }
  return (
    last ?? {
      taken: false,
      holder: undefined,
      raw: "",
      verdict: { state: "unknown", why: `${path} keeps appearing and vanishing` },
      broke,
    }
  );
}

/**
 * Removes the lock at `path` if it still holds `stale` (judged stale by the caller), under a
 * guard that makes this removal the only one of that body. Returns true when it removed it.
 */
export async function breakStaleLock(
  driver: StorageDriver,
  path: string,
  stale: Buffer,
  opts: Pick<TakeOptions, "programs">,
  depth = 0,
): Promise<boolean> {
  if (depth >= MAX_GUARD_DEPTH) return false;
  const guard = guardPath(path, stale);
  const mine = lockBody(selfLockInfo(`clearing stale ${path}`));
  const quiet: TakeOptions = { programs: opts.programs, breakStale: true };
  const got = await tryTakeLock(driver, guard, mine, quiet, depth + 1);
  if (!got.taken) return false; // another process is clearing it: re-read and see
  try {
    const now = await readBytes(driver, path);
    if (now === undefined || !now.equals(stale)) return false;
    const removed = await driver.remove(path);
    crashPoint("stale-lock-removed"); // tests: a breaker killed here leaves its guard
    return removed;
  } finally {
    await releaseLock(driver, guard, mine);
  }
}

/**
 * Removes the guards breakers of the lock at `path` left when they were killed while holding one
 * (after removing the stale lock, before removing their guard: nobody breaks that body again, so
 * nothing else would ever remove the guard). Only a guard whose writer is provably dead goes,
 * through the same guarded removal as any stale lock; a live breaker's, or another host's, stays.
 * Run by whoever takes the lock (a guard of it is no use to anyone then). Best effort: a guard
 * that cannot be read or removed now is left for the next taker.
 */
export async function sweepDeadGuards(driver: StorageDriver, path: string, programs: readonly string[]): Promise<void> {
  const base = posix
    .basename(path)
    .replace(/^\.+/, "")
    .replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  // Guards of the lock, and guards of those guards (breakers of a dead breaker's guard).
  const pattern = new RegExp(`^\\.walmgr-break\\.(?:walmgr-break\\.)*${base}(?:\\.[0-9a-f]{16})+$`);
  try {
    for (const name of (await driver.list(posix.dirname(path))) ?? []) {
      if (!pattern.test(name)) continue;
      const guard = posix.join(posix.dirname(path), name);
      const raw = await readBytes(driver, guard);
      if (raw === undefined) continue;
      if (judgeHolder(parseLockInfo(raw.toString("utf8")), programs).state !== "stale") continue;
      await breakStaleLock(driver, guard, raw, { programs }, 1);
    }
  } catch {
    // litter only: the next taker tries again
  }
}

/** Removes the lock at `path` if it still holds exactly `body` (never another holder's lock). */
export async function releaseLock(driver: StorageDriver, path: string, body: Buffer): Promise<boolean> {
  const now = await readBytes(driver, path);
  if (now === undefined || !now.equals(body)) return false;
  return driver.remove(path);
}

/**
 * Synchronous release for signal handlers: through the driver's releaseNow feature when it has one
 * (it removes the file only while it names this pid and host), else the local file, only while
 * it holds exactly `body`.
 */
export function releaseLockNow(driver: StorageDriver, path: string, body: Buffer): void {
  const remote = driver.features.releaseNow;
  if (remote !== undefined) {
    remote.releaseLockSync(path, process.pid, hostname());
    return;
  }
  try {
    if (readFileSync(path).equals(body)) unlinkSync(path);
  } catch {
    // gone already
  }
}
