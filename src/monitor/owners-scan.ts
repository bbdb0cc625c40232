/**
 * Files and folders of the slave directory another user could have written (storage/owners.ts),
 * for `verify` and `check`: what wal-restore, backup and restore refuse to read, found before
 * they need it. Through the storage driver, so over ssh the slave host judges its own files;
 * an object store has no owners (nothing to find).
 */
import { posix } from "node:path";
import type { SlaveLayout } from "../slavedir/layout";

/** A file or folder another user could have written. */
export interface UnsafeFile {
  path: string;
  /** Its owner and mode, and what they allow. */
  reason: string;
}

/**
 * completed_wals and partial_wals, every file in them, and the folder of full_backup: each that
 * another user could have written (folders: any write bit for the group or others counts, even
 * with the sticky bit: others could plant WAL under a name not archived yet). Empty for an
 * object store.
 */
export async function unsafeFiles(layout: SlaveLayout): Promise<UnsafeFile[]> {
  if (layout.completed.bucket !== undefined) return [];
  const out: UnsafeFile[] = [];
  const { driver } = layout;
  const dirs = [layout.completed.path, ...(layout.partial !== undefined ? [layout.partial.path] : [])];
  const folders = [...dirs, ...(layout.fullBackup !== undefined ? [posix.dirname(layout.fullBackup.path)] : [])];
  for (const d of folders) {
    const why = (await driver.info(d))?.foreign;
    if (why !== undefined) out.push({ path: d, reason: why });
  }
  for (const d of dirs) {
    for (const name of (await driver.list(d)) ?? []) {
      const path = posix.join(d, name);
      const why = (await driver.info(path))?.foreign;
      if (why !== undefined) out.push({ path, reason: why });
    }
  }
  return out;
}
