import { posix } from "node:path";
import type { StorageDriver } from "../storage/driver";
import { LockHeldError } from "../errors";
import { describeHolder, lockBody, parseLockInfo, selfLockInfo, tryTakeLock, type LockInfo } from "./lock";
import { readBytes, writeBytes } from "../storage/bytes";

/**
 * The control-file protocol, kept in completed_wals so that an existing walmgr.py slave
 * directory keeps working: PAUSE (no new WAL reaches the standby), STOP (replay everything,
 * then end recovery), BACKUPLOCK (one backup at a time). Files of our own start with a dot.
 */
export const STOP = "STOP";
export const PAUSE = "PAUSE";
export const BACKUPLOCK = "BACKUPLOCK";
/** Written by wal-restore under STOP: the name of the partial segment it served. */
export const BOOT_PARTIAL_SERVED = ".walmgr-boot-partial";
/** Written by wal-restore under STOP once the standby asked for WAL past everything there is. */
export const BOOT_END_OF_WAL = ".walmgr-boot-end";

/**
 * Where a slave directory's control files are: PAUSE, STOP and the boot markers in `dir` of
 * `driver` (completed_wals; for an object store, a local folder of the standby: they are about
 * that standby), BACKUPLOCK in `lock` (always beside the WAL, where every backup of this slave
 * directory, on the master or on the slave, meets it).
 */
export class ControlFiles {
  readonly lock: { driver: StorageDriver; dir: string };

  constructor(
    readonly driver: StorageDriver,
    readonly dir: string,
    lock?: { driver: StorageDriver; dir: string },
  ) {
    this.lock = lock ?? { driver, dir };
  }

  path(name: string): string {
    return posix.join(this.dir, name);
  }

  /** Where BACKUPLOCK is. */
  lockPath(): string {
    return posix.join(this.lock.dir, BACKUPLOCK);
  }

  /** True while a backup holds (or a dead one left) BACKUPLOCK. */
  async lockExists(): Promise<boolean> {
    return (await this.lock.driver.info(this.lockPath())) !== undefined;
  }

  async exists(name: string): Promise<boolean> {
    return (await this.driver.info(this.path(name))) !== undefined;
  }

  async create(name: string, content = ""): Promise<void> {
    if (this.lock.driver !== this.driver) await this.driver.pathCreate(this.dir); // a local control_dir
    await writeBytes(this.driver, this.path(name), Buffer.from(content));
  }

  async remove(name: string): Promise<boolean> {
    return this.driver.remove(this.path(name));
  }

  async read(name: string): Promise<string | undefined> {
    return (await readBytes(this.driver, this.path(name)))?.toString("utf8");
  }
}

export type { LockInfo } from "./lock";

/** Programs that may hold BACKUPLOCK: wal-backup, and wal-ctl's backup command. */
export const BACKUP_PROGRAMS = ["wal-backup", "wal-ctl"] as const;

/**
 * Takes BACKUPLOCK atomically (create-exclusive). A held lock is refused with the holder named;
 * a stale one (its holder provably not a running backup) is reported as such and cleared only
 * when `breakStale` is set, and then exactly once: of many clearers at once, one removes the
 * stale lock and one takes it (the others then find a live lock and are refused).
 */
export async function acquireBackupLock(
  control: ControlFiles,
  command: string,
  opts: { breakStale?: boolean; onStale?: (msg: string) => void } = {},
): Promise<LockInfo> {
  const info = selfLockInfo(command);
  const path = control.lockPath();
  const { driver } = control.lock;
  const res = await tryTakeLock(driver, path, lockBody(info), {
    programs: BACKUP_PROGRAMS,
    breakStale: opts.breakStale === true,
    // A dead restore's lock guarded only its taking of a set, which its journal makes
    // resumable: nothing is left to clear up, so it never needs --clear-stale-lock.
    breakIf: isRestoreHolder,
    ...(opts.onStale ? { onStale: opts.onStale } : {}),
  });
  if (res.taken && driver.exclusiveCreate === "checked") {
    // No atomic create-exclusive on this storage (an object store): its claims keep a second
    // backup out only where listings are consistent. As a second guard, wait and look again:
    // of two backups that both took it, the one whose lock is not there any more steps back.
    await new Promise((r) => setTimeout(r, CHECKED_LOCK_SETTLE_MS));
    const now = await readBytes(driver, path);
    if (now === undefined || !now.equals(lockBody(info))) {
      const other = now === undefined ? undefined : parseLockInfo(now.toString("utf8"));
      throw new LockHeldError(
        `another backup took ${path} at the same moment: ${other ? describeHolder(other, now?.toString("utf8") ?? "") : "it is gone again"}`,
        "wait for it to finish, then run the backup again",
      );
    }
  }
  if (res.taken) return info;
  const holder = describeHolder(res.holder, res.raw);
  if (res.verdict.state === "stale") {
    throw new LockHeldError(
      `stale ${path}: its holder is not a running backup (${holder}): ${res.verdict.why}`,
      opts.breakStale
        ? "another process is clearing it at the same moment: run the backup again"
        : "no backup is running: clear it with --clear-stale-lock",
    );
  }
  throw new LockHeldError(
    `${isRestoreHolder(res.holder) ? "a restore taking a backup set" : "another backup"} holds ${path}: ${holder}${res.verdict.state === "unknown" ? ` (${res.verdict.why})` : ""}`,
    res.verdict.state === "unknown"
      ? "wait for it to finish; if no backup runs there, remove the file by hand"
      : "wait for it to finish",
  );
}

/** How a restore's BACKUPLOCK names its command (see `isRestoreHolder`). */
export const RESTORE_LOCK_PREFIX = "restore of a backup set:";

/** True when BACKUPLOCK is held by a restore (which holds it while it takes a set), not a backup. */
export function isRestoreHolder(holder: LockInfo | undefined): boolean {
  return holder?.command.startsWith(RESTORE_LOCK_PREFIX) === true;
}

/** Releases BACKUPLOCK if it is still ours (never another process's lock). */
export async function releaseBackupLock(control: ControlFiles, info: LockInfo): Promise<void> {
  const raw = (await readBytes(control.lock.driver, control.lockPath()))?.toString("utf8");
  const holder = raw === undefined ? undefined : parseLockInfo(raw);
  if (holder && holder.pid === info.pid && holder.host === info.host && holder.started === info.started) {
    await control.lock.driver.remove(control.lockPath());
  }
}

/**
 * How long a backup on storage with a checked (not atomic) exclusive create waits before it
 * looks again whether its BACKUPLOCK is still its own: longer than any writer plausibly stalls
 * between its look and its write (one small PUT).
 */
export const CHECKED_LOCK_SETTLE_MS = 2000;
