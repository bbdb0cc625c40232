/**
 * Backup sets in the slave directory: their names (`data.master`, `data.master.0`, … newest
 * first; the hidden temp and removing names a backup uses beside them), their metadata
 * (`.walmgr-backup.json`) and manifest's file name, and their rotation (shift, prune). Written by
 * backup (command/backup/run.ts); read by restore, listbackups, verify, check, status and the WAL
 * retention rule.
 */
import { posix } from "node:path";
import { IoError } from "../errors";
import { requireFeature, type StorageDriver } from "../storage/driver";
import { TMP_PREFIX } from "../storage/durable";
import { testPause } from "../test-pause";
import { readBytes } from "../storage/bytes";

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

/** A set's metadata; undefined when it has none or it cannot be read (a walmgr.py set, a damaged file). */
export async function readBackupInfo(driver: StorageDriver, set: string): Promise<Partial<BackupInfo> | undefined> {
  const raw = await readBytes(driver, posix.join(set, BACKUP_INFO));
  if (!raw) return undefined;
  try {
    const v = JSON.parse(raw.toString("utf8")) as unknown;
    return typeof v === "object" && v !== null ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The first WAL segment a backup set needs: from its metadata, or its backup_label. */
export async function setStartWal(driver: StorageDriver, set: string): Promise<string | undefined> {
  const info = await readBytes(driver, posix.join(set, BACKUP_INFO));
  if (info) {
    try {
      return (JSON.parse(info.toString("utf8")) as BackupInfo).startWal;
    } catch {
      // fall back to the label
    }
  }
  const label = await readBytes(driver, posix.join(set, "backup_label"));
  return label ? /START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/.exec(label.toString("utf8"))?.[1] : undefined;
}

/** Where a backup builds its new set: hidden (`.walmgr-tmp.data.master.PID`), beside the sets. */
export function tempSetPath(fullBackup: string, pid = process.pid): string {
  return posix.join(posix.dirname(fullBackup), `${TMP_PREFIX}${posix.basename(fullBackup)}.${pid}`);
}

/** Where a set goes just before its removal (hidden, so a half-removed set is never listed). */
function removingPath(fullBackup: string, set: string, pid = process.pid): string {
  return posix.join(posix.dirname(fullBackup), `${TMP_PREFIX}${posix.basename(set)}.removing.${pid}`);
}

/**
 * The pid in the name of a hidden set a backup left beside the sets of `fullBackup`: a temp set
 * (`.walmgr-tmp.data.master.PID`) or a set being removed (`.walmgr-tmp.data.master[.N].removing.PID`).
 * undefined for any other name.
 */
export function leftoverPid(fullBackup: string, name: string): number | undefined {
  const prefix = `${TMP_PREFIX}${posix.basename(fullBackup)}.`;
  if (!name.startsWith(prefix)) return undefined;
  const m = /^(?:(?:\d+\.)?removing\.)?(\d+)$/.exec(name.slice(prefix.length));
  return m ? Number(m[1]) : undefined;
}

/**
 * Frees the name `fullBackup` for a new set: every set moves to the next number, so the newest
 * becomes data.master.0, data.master.0 becomes data.master.1 … (gaps in the numbering close).
 * Each step is one rename and no set ever passes another, so a crash at any point leaves every
 * set complete, visible and in order; a rerun finishes the job.
 */
export async function shiftSets(driver: StorageDriver, fullBackup: string): Promise<void> {
  const sets = await listSets(driver, fullBackup);
  const num = (set: string): number => (set === fullBackup ? -1 : Number(set.slice(fullBackup.length + 1)));
  // Set i ends as `fullBackup.i`. The sets that move up (only a run at the newest end: they sit
  // at i - 1) go oldest first; those that move down (closing gaps) go newest first. Either way
  // the target name is free when the rename happens.
  for (let i = sets.length - 1; i >= 0; i--) {
    const set = sets[i];
    if (set !== undefined && num(set) < i) await requireFeature(driver, "tree").renameDir(set, `${fullBackup}.${i}`);
  }
  for (let i = 0; i < sets.length; i++) {
    const set = sets[i];
    if (set !== undefined && num(set) > i) await requireFeature(driver, "tree").renameDir(set, `${fullBackup}.${i}`);
  }
}

/**
 * Removes the oldest sets until at most `keep` remain (at least one always remains), oldest
 * first. `beforeRemove` runs before each removal (walmgr's archive_command hook); when it throws,
 * that set and the newer ones stay. A set is renamed to a hidden name before its files are
 * removed, so a crash never leaves a half-removed set among the listed ones; the hidden rest is
 * a leftover the next backup removes (`leftoverPid`).
 */
export async function pruneSets(
  driver: StorageDriver,
  fullBackup: string,
  keep: number,
  beforeRemove?: (set: string) => Promise<void>,
): Promise<string[]> {
  const sets = await listSets(driver, fullBackup);
  const removed: string[] = [];
  for (let i = sets.length - 1; i >= Math.max(keep, 1); i--) {
    const set = sets[i];
    if (set === undefined) continue;
    if (beforeRemove) await beforeRemove(set);
    const hidden = removingPath(fullBackup, set);
    await requireFeature(driver, "tree").renameDir(set, hidden);
    await testPause("removing");
    await requireFeature(driver, "tree").removeTree(hidden);
    removed.push(set);
  }
  return removed;
}
