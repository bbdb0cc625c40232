/**
 * The sync lock (partial_wals/.walmgr-sync-lock) as status and verify see it: who holds it,
 * whether that holder is alive, and what it ships (master data directory, timeline, database
 * system), so that an old master's daemon left running after a failover is named as such.
 */
import { posix } from "node:path";
import { judgeHolder, parseLockInfo, type LockInfo, type Verdict } from "../slavedir/lock";
import { readBytes } from "../storage/bytes";
import type { StorageDriver } from "../storage/driver";
import { SYNC_LOCK, SYNC_PROGRAMS } from "../slavedir/sync-state";
import { ageSeconds } from "./timeout";

/** Who holds the sync lock, as its file names it (see lock.ts LockInfo). */
export type SyncLockHolder = Pick<
  LockInfo,
  "pid" | "host" | "started" | "command" | "role" | "config" | "masterData" | "timeline" | "systemId"
>;

/** The sync lock of partial_wals. `present: null`: it could not be read (`error` says why). */
export interface SyncLockStatus {
  present: boolean | null;
  path: string;
  error?: string;
  /** When the file was written (taken, or rewritten by its holder). */
  mtime?: string;
  ageSeconds?: number;
  /** null: the file names no holder. */
  holder?: SyncLockHolder | null;
  /** live / stale / unknown (another host, unreadable /proc): see lock.ts judgeHolder. */
  verdict?: Verdict["state"];
  why?: string;
  /**
   * Set (master side) when the holder ships from another master than this config's: another
   * timeline or database system, another data directory or host. It says how.
   */
  foreign?: string;
}

/** Reads and judges the sync lock in partial_wals folder `dir` (throws what the driver throws). */
export async function readSyncLock(driver: StorageDriver, dir: string, now: number): Promise<SyncLockStatus> {
  const path = posix.join(dir, SYNC_LOCK);
  const info = await driver.info(path);
  if (info === undefined) return { present: false, path };
  const raw = (await readBytes(driver, path))?.toString("utf8");
  if (raw === undefined) return { present: false, path }; // released meanwhile
  const holder = parseLockInfo(raw);
  const verdict = judgeHolder(holder, SYNC_PROGRAMS);
  return {
    present: true,
    path,
    ...(info.mtimeMs > 0
      ? { mtime: new Date(info.mtimeMs).toISOString(), ageSeconds: ageSeconds(info.mtimeMs, now) }
      : {}),
    holder: holder ? holderFields(holder) : null,
    verdict: verdict.state,
    why: verdict.why,
  };
}

function holderFields(h: LockInfo): SyncLockHolder {
  const { pid, host, started, command, role, config, masterData, timeline, systemId } = h;
  return {
    pid,
    host,
    started,
    command,
    ...(role !== undefined ? { role } : {}),
    ...(config !== undefined ? { config } : {}),
    ...(masterData !== undefined ? { masterData } : {}),
    ...(timeline !== undefined ? { timeline } : {}),
    ...(systemId !== undefined ? { systemId } : {}),
  };
}
