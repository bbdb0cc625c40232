/**
 * The slave directory as status shows it: the newest complete segment, the in-progress
 * (partial) segment, the control files (PAUSE, STOP, BACKUPLOCK: who holds it, and whether
 * that holder is gone) and the free space of its file system. Read through the storage driver,
 * so it works from the slave and from a master that reaches its slave directory over ssh or S3.
 */
import { statfsSync } from "node:fs";
import { posix } from "node:path";
import { formatLocation, type Config, type Location } from "../config/load";
import { BACKUP_PROGRAMS, PAUSE, STOP } from "../slavedir/control";
import { controlFilesFor } from "../slavedir/layout";
import { judgeHolder, parseLockInfo, type Verdict } from "../slavedir/lock";
import type { SyncState } from "../slavedir/sync-state";
import { readBytes } from "../storage/bytes";
import type { StorageDriver } from "../storage/driver";
import { comparePosition, parseWalName } from "../wal/names";
import { ageSeconds, errorText, type Budget } from "./timeout";

/** A WAL file in the slave directory. */
export interface SegmentFile {
  name: string;
  bytes: number | null;
  mtime: string | null;
  ageSeconds: number | null;
}

/** The in-progress segment in partial_wals (stored full-size: `bytes` is the segment size). */
export interface PartialSegment extends SegmentFile {
  /** How far into it the last sync shipped (.walmgr-sync-state); null when the state names another file. */
  shippedBytes: number | null;
  /** The LSN that position is (record mode), or null. */
  lsn: string | null;
  /** Its timeline (from its name). */
  timeline?: number;
  /**
   * Master side: set when it is of another timeline than this master's (an old master's sync
   * after a failover, or this master's from before one), saying so.
   */
  otherMaster?: string;
}

/** One control file. `present: null`: it could not be looked at (`error` says why). */
export interface ControlFileStatus {
  present: boolean | null;
  path: string;
  mtime?: string;
  ageSeconds?: number;
  error?: string;
}

/** Who a BACKUPLOCK names (see lock.ts). */
export interface LockHolder {
  pid: number;
  host: string;
  started: string;
  command: string;
}

/** BACKUPLOCK, with its holder and whether that holder is provably gone (then it is stale). */
export interface BackupLockStatus extends ControlFileStatus {
  /** null: the file names no holder (walmgr.py's empty lock, or free text). */
  holder?: LockHolder | null;
  /** live / stale / unknown (another host, unreadable /proc): see lock.ts judgeHolder. */
  verdict?: Verdict["state"];
  stale?: boolean;
  why?: string;
}

/** The three control files, by their names in completed_wals. */
export interface ControlFilesStatus {
  PAUSE: ControlFileStatus;
  STOP: ControlFileStatus;
  BACKUPLOCK: BackupLockStatus;
}

/** Free space of the file system holding the slave directory; null with `reason` when unknown. */
export interface FreeDisk {
  path: string;
  /** Bytes an unprivileged user may still write (statfs f_bavail). */
  freeBytes: number | null;
  totalBytes: number | null;
  reason?: string;
}

/** What status shows of the slave directory. */
export interface SlaveDirStatus {
  location: string;
  /** Set when completed_wals could not be listed. */
  error?: string;
  newestSegment: SegmentFile | null;
  newestSegmentError?: string;
  partial: PartialSegment | null;
  partialError?: string;
  controlFiles: ControlFilesStatus;
  freeDisk: FreeDisk;
}

/** The newest complete segment among `names` (anything else ignored); undefined when none. */
export function newestSegment(names: string[]): string | undefined {
  let newest: string | undefined;
  for (const n of names) {
    if (parseWalName(n)?.kind === "segment" && (newest === undefined || comparePosition(n, newest) > 0)) newest = n;
  }
  return newest;
}

/** Size and time of the file `dir`/`name`; null when it is not there. */
export async function segmentFile(
  driver: StorageDriver,
  dir: string,
  name: string,
  now: number,
): Promise<SegmentFile | null> {
  const info = await driver.info(posix.join(dir, name));
  if (info === undefined) return null;
  const known = Number.isFinite(info.mtimeMs) && info.mtimeMs > 0;
  return {
    name,
    bytes: info.size,
    mtime: known ? new Date(info.mtimeMs).toISOString() : null,
    ageSeconds: known ? ageSeconds(info.mtimeMs, now) : null,
  };
}

/** The segment the sync state names (else the newest segment) in partial_wals; null when none. */
export async function partialSegment(
  driver: StorageDriver,
  dir: string,
  sync: SyncState | undefined,
  now: number,
): Promise<PartialSegment | null> {
  const names = (await driver.list(dir)) ?? [];
  const name = sync !== undefined && names.includes(sync.name) ? sync.name : newestSegment(names);
  if (name === undefined) return null;
  const file = await segmentFile(driver, dir, name, now);
  if (file === null) return null;
  const ours = sync?.name === name;
  const timeline = parseWalName(name)?.timeline;
  return {
    ...file,
    shippedBytes: ours ? sync.offset : null,
    lsn: ours && sync.lsn ? sync.lsn : null,
    ...(timeline !== undefined ? { timeline } : {}),
  };
}

async function controlFile(driver: StorageDriver, path: string, now: number): Promise<ControlFileStatus> {
  const info = await driver.info(path);
  if (info === undefined) return { present: false, path };
  return {
    present: true,
    path,
    ...(info.mtimeMs > 0
      ? { mtime: new Date(info.mtimeMs).toISOString(), ageSeconds: ageSeconds(info.mtimeMs, now) }
      : {}),
  };
}

/** BACKUPLOCK and its holder, judged as a second backup would judge it. */
async function backupLock(driver: StorageDriver, path: string, now: number): Promise<BackupLockStatus> {
  const file = await controlFile(driver, path, now);
  if (!file.present) return file;
  const raw = (await readBytes(driver, path))?.toString("utf8");
  if (raw === undefined) return { present: false, path }; // released meanwhile
  const info = parseLockInfo(raw);
  const verdict = judgeHolder(info, BACKUP_PROGRAMS);
  return {
    ...file,
    holder: info ? { pid: info.pid, host: info.host, started: info.started, command: info.command } : null,
    verdict: verdict.state,
    stale: verdict.state === "stale",
    why: verdict.why,
  };
}

/**
 * PAUSE, STOP and BACKUPLOCK of the slave directory at `completed`. On S3 PAUSE and STOP are
 * in each standby's local control_dir: the master cannot see them, and says so.
 */
export async function controlFiles(
  config: Config,
  completed: Location,
  driver: StorageDriver,
  now: number,
  budget: Budget,
): Promise<ControlFilesStatus> {
  const control = controlFilesFor(config, completed, driver);
  const one = async (name: typeof PAUSE | typeof STOP): Promise<ControlFileStatus> => {
    const path = control.path(name);
    if (config.role === "master" && completed.bucket !== undefined) {
      return { present: null, path, error: "kept in each standby's control_dir: look on the standby" };
    }
    try {
      return await budget.run(() => controlFile(control.driver, path, now));
    } catch (err) {
      return { present: null, path, error: errorText(err) };
    }
  };
  const lockPath = control.lockPath();
  let lock: BackupLockStatus;
  try {
    lock = await budget.run(() => backupLock(control.lock.driver, lockPath, now));
  } catch (err) {
    lock = { present: null, path: lockPath, error: errorText(err) };
  }
  return { PAUSE: await one(PAUSE), STOP: await one(STOP), BACKUPLOCK: lock };
}

/** Free space where `loc` is: measured for a local folder only. */
export function freeDisk(loc: Location): FreeDisk {
  const path = formatLocation(loc);
  if (loc.bucket !== undefined) {
    return { path, freeBytes: null, totalBytes: null, reason: "an object store has no free-space figure" };
  }
  if (loc.host !== undefined) {
    // The ssh helper has no request for it; a new verb for one number is not worth the protocol.
    return {
      path,
      freeBytes: null,
      totalBytes: null,
      reason: `not measured over ssh: run status with the slave config on ${loc.host}, or df there`,
    };
  }
  try {
    const st = statfsSync(loc.path);
    return { path, freeBytes: st.bavail * st.bsize, totalBytes: st.blocks * st.bsize };
  } catch (err) {
    return { path, freeBytes: null, totalBytes: null, reason: errorText(err) };
  }
}
