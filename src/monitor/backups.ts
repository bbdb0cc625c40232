/**
 * The backup sets in full_backup (data.master, data.master.0 …) as status shows them: how many,
 * the newest and the oldest, and their total size from each set's .walmgr-backup.json.
 */
import { posix } from "node:path";
import { listSets, readBackupInfo } from "../slavedir/backup-sets";
import { formatLocation, type Location } from "../config/load";
import type { StorageDriver } from "../storage/driver";
import { ageSeconds, type Budget } from "./timeout";

/** One set, from its metadata (null fields: a set without it, e.g. one taken by walmgr.py). */
export interface BackupSetSummary {
  name: string;
  startTime: string | null;
  stopTime: string | null;
  bytes: number | null;
  /** Seconds since the backup started (what a restore of it can reach back to). */
  ageSeconds: number | null;
}

/** The backup sets of one full_backup. */
export interface BackupsStatus {
  location: string;
  count: number;
  /** Sum of the sets' `bytes`; the sets without metadata are not in it (see withoutMetadata). */
  totalBytes: number;
  withoutMetadata: number;
  newest: BackupSetSummary | null;
  oldest: BackupSetSummary | null;
  error?: string;
}

/** Lists the sets of `fullBackup` and reads each one's metadata, within `budget`. */
export async function backupsStatus(
  driver: StorageDriver,
  fullBackup: Location,
  now: number,
  budget: Budget,
): Promise<BackupsStatus> {
  const sets = await budget.run(() => listSets(driver, fullBackup.path));
  const summaries: BackupSetSummary[] = [];
  for (const set of sets) {
    const info = await budget.run(() => readBackupInfo(driver, set));
    const start = typeof info?.startTime === "string" ? Date.parse(info.startTime) : NaN;
    summaries.push({
      name: posix.basename(set),
      startTime: typeof info?.startTime === "string" ? info.startTime : null,
      stopTime: typeof info?.stopTime === "string" ? info.stopTime : null,
      bytes: typeof info?.bytes === "number" ? info.bytes : null,
      ageSeconds: Number.isFinite(start) ? ageSeconds(start, now) : null,
    });
  }
  return {
    location: formatLocation(fullBackup),
    count: summaries.length,
    totalBytes: summaries.reduce((sum, s) => sum + (s.bytes ?? 0), 0),
    withoutMetadata: summaries.filter((s) => s.bytes === null).length,
    // listSets gives them newest first.
    newest: summaries[0] ?? null,
    oldest: summaries[summaries.length - 1] ?? null,
  };
}
