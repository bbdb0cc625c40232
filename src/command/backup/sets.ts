import { posix } from "node:path";
import { IoError } from "../../errors";
import type { StorageDriver } from "../../storage/driver";

/** Backup metadata file inside each set (hidden: PostgreSQL ignores it in a data directory). */
export const BACKUP_INFO = ".walmgr-backup.json";
/** Size and sha256 of every file in the set, for `wal-ctl CONFIG verify`. */
export const BACKUP_MANIFEST = ".walmgr-manifest.json";

export interface BackupInfo {
  label: string;
  startLsn: string;
  stopLsn: string;
  startWal: string;
  stopWal?: string;
  timeline: number;
  startTime: string;
  stopTime: string;
  pgVersion: number;
  systemIdentifier: string;
  bytes: number;
  files: number;
  source: "master" | "slave";
}

/**
 * Parses a set's `.walmgr-backup.json` read from `file`. Bad JSON or a wrong shape is an IoError
 * naming the file (exit 9), never an internal error.
 */
export function parseBackupInfo(text: string, file: string): BackupInfo {
  const bad = (why: string): never => {
    throw new IoError(
      `backup metadata ${file} is damaged: ${why}`,
      "check the set with 'verify'; take a new backup if it is damaged too",
    );
  };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    bad(`not valid JSON (${(err as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return bad("not a JSON object");
  const v = value as Record<string, unknown>;
  for (const key of ["label", "startWal", "startTime"]) {
    if (typeof v[key] !== "string") bad(`'${key}' is missing or not a string`);
  }
  if (typeof v.bytes !== "number") bad("'bytes' is missing or not a number");
  return value as BackupInfo;
}

/** Set paths newest first: data.master, data.master.0, data.master.1 … (those that exist). */
export async function listSets(driver: StorageDriver, fullBackup: string): Promise<string[]> {
  const dir = posix.dirname(fullBackup);
  const base = posix.basename(fullBackup);
  const names = (await driver.list(dir)) ?? [];
  const numbered = names
    .map((n) => (n.startsWith(`${base}.`) ? /^\d+$/.exec(n.slice(base.length + 1))?.[0] : undefined))
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  const out: string[] = [];
  if (names.includes(base)) out.push(fullBackup);
  for (const n of numbered) out.push(`${fullBackup}.${n}`);
  return out;
}

/**
 * Makes room for a new set at `fullBackup`: keeps at most `keep - 1` older sets (the new one
 * makes `keep`), renaming data.master → data.master.0 → data.master.1 …, oldest removed first.
 * `keep` 0 means walmgr's default: only the newest set. `beforeRemove` runs before each removal.
 */
export async function rotateSets(
  driver: StorageDriver,
  fullBackup: string,
  keep: number,
  beforeRemove: (set: string) => Promise<void>,
): Promise<void> {
  const limit = Math.max(keep, 1) - 1;
  const sets = await listSets(driver, fullBackup);
  // Remove the oldest beyond what may stay.
  for (let i = sets.length - 1; i >= limit; i--) {
    const set = sets[i];
    if (set === undefined) continue;
    await beforeRemove(set);
    await driver.removeTree(set);
  }
  const remaining = sets.slice(0, limit);
  // Shift from oldest to newest so no rename lands on an existing name.
  for (let i = remaining.length - 1; i >= 0; i--) {
    const set = remaining[i];
    if (set === undefined) continue;
    const target = `${fullBackup}.${i}`;
    if (set !== target) await driver.rename(set, target);
  }
}
