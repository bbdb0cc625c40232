import { posix } from "node:path";
import { hostname } from "node:os";
import type { StorageDriver } from "./storage/driver";
import { LockHeldError, WalmgrError, ExitCode } from "./errors";
import { processAlive } from "./storage/durable";

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
/** Written by wal-restore: the standby's last restart point (%r); backup purging keeps WAL from it. */
export const STANDBY_RESTARTPOINT = ".walmgr-standby-restartpoint";

export class ControlFiles {
  constructor(
    readonly driver: StorageDriver,
    readonly dir: string,
  ) {}

  path(name: string): string {
    return posix.join(this.dir, name);
  }

  async exists(name: string): Promise<boolean> {
    return (await this.driver.stat(this.path(name))) !== undefined;
  }

  async create(name: string, content = ""): Promise<void> {
    await this.driver.publish(this.path(name), Buffer.from(content));
  }

  async remove(name: string): Promise<boolean> {
    return this.driver.remove(this.path(name));
  }

  async read(name: string): Promise<string | undefined> {
    return (await this.driver.read(this.path(name)))?.toString("utf8");
  }
}

export interface LockInfo {
  pid: number;
  host: string;
  started: string;
  command: string;
}

function describeHolder(info: LockInfo | undefined, raw: string): string {
  if (!info) return `unreadable holder (${JSON.stringify(raw.slice(0, 80))})`;
  return `pid ${info.pid} on ${info.host}, started ${info.started}, command: ${info.command}`;
}

function parseLock(raw: string): LockInfo | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LockInfo>;
    if (typeof v.pid === "number" && typeof v.host === "string") {
      return { pid: v.pid, host: v.host, started: String(v.started ?? "?"), command: String(v.command ?? "?") };
    }
  } catch {
    // walmgr.py's BACKUPLOCK is empty or free text
  }
  return undefined;
}

/** True when the holder is known to be gone: same host and its pid no longer exists. */
export function lockIsStale(info: LockInfo | undefined): boolean {
  return info !== undefined && info.host === hostname() && !processAlive(info.pid);
}

/**
 * Takes BACKUPLOCK atomically (create-exclusive). A held lock is refused with the holder named;
 * a stale one is reported as such and cleared only when `breakStale` is set.
 */
export async function acquireBackupLock(
  control: ControlFiles,
  command: string,
  opts: { breakStale?: boolean } = {},
): Promise<LockInfo> {
  const info: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString(), command };
  const body = `${JSON.stringify(info)}\n`;
  for (let attempt = 0; attempt < 2; attempt++) {
    if (await control.driver.publish(control.path(BACKUPLOCK), Buffer.from(body), { exclusive: true })) return info;
    const raw = (await control.read(BACKUPLOCK)) ?? "";
    const holder = parseLock(raw);
    if (lockIsStale(holder)) {
      if (opts.breakStale && attempt === 0) {
        await control.remove(BACKUPLOCK);
        continue;
      }
      throw new LockHeldError(
        `stale ${control.path(BACKUPLOCK)}: its holder is gone (${describeHolder(holder, raw)})`,
        "no backup is running: clear it with --clear-stale-lock (or remove the file)",
      );
    }
    throw new LockHeldError(
      `another backup holds ${control.path(BACKUPLOCK)}: ${describeHolder(holder, raw)}`,
      "wait for it to finish; if that process is gone, remove the file by hand",
    );
  }
  throw new WalmgrError(`could not take ${control.path(BACKUPLOCK)}`, ExitCode.LOCK_HELD);
}

/** Releases BACKUPLOCK if it is still ours (never another process's lock). */
export async function releaseBackupLock(control: ControlFiles, info: LockInfo): Promise<void> {
  const raw = await control.read(BACKUPLOCK);
  const holder = raw === undefined ? undefined : parseLock(raw);
  if (holder && holder.pid === info.pid && holder.host === info.host && holder.started === info.started) {
    await control.remove(BACKUPLOCK);
  }
}
