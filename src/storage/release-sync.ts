import { hostname } from "node:os";
import type { StorageDriver } from "./driver";

interface SyncReleasing {
  releaseLockSync(lockPath: string, pid: number, host: string): void;
  removeTreeSync(path: string): void;
}

/**
 * Signal-time cleanup of a backup on a remote slave, synchronously (it runs from a SIGINT/SIGTERM
 * handler): removes the half-built set (unless `tmpTree` is undefined) and releases BACKUPLOCK if
 * it is still ours, through the slave's helper. Returns false for a driver that has no remote side (the caller then cleans up
 * the local files itself).
 */
export function releaseRemoteNow(driver: StorageDriver, tmpTree: string | undefined, lockPath: string): boolean {
  const d = driver as Partial<SyncReleasing>;
  if (typeof d.releaseLockSync !== "function" || typeof d.removeTreeSync !== "function") return false;
  if (tmpTree !== undefined) d.removeTreeSync(tmpTree);
  d.releaseLockSync(lockPath, process.pid, hostname());
  return true;
}
