import { hostname } from "node:os";
import type { StorageDriver } from "./driver";

/**
 * Signal-time cleanup of a backup on a remote slave, synchronously (it runs from a SIGINT/SIGTERM
 * handler): removes the half-built set (unless `tmpTree` is undefined) and releases BACKUPLOCK if
 * it is still ours, through the driver's releaseNow feature (ssh: the slave's helper; S3: a child
 * process). Returns false for a driver without it, local storage (the caller then cleans up the
 * local files itself).
 */
export function releaseRemoteNow(driver: StorageDriver, tmpTree: string | undefined, lockPath: string): boolean {
  const remote = driver.features.releaseNow;
  if (remote === undefined) return false;
  if (tmpTree !== undefined) remote.removeTreeSync(tmpTree);
  remote.releaseLockSync(lockPath, process.pid, hostname());
  return true;
}
