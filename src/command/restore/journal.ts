/**
 * The journal that makes `restore` resumable. A restore is a sequence of steps, each either
 * atomic (a rename) or repeatable; before each step the journal beside the destination records
 * what was decided and which step comes next, durably. A rerun after a crash (kill -9, power
 * loss) at any point reads it and carries on from there, so the set is never lost in between and
 * the destination is never half replaced.
 */
import { readFileSync, unlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { ioError, isErrno, LockHeldError, WalmgrError, ExitCode } from "../../errors";
import { processAlive, processStart } from "../../proc";
import { removeStaleTemps, writeFileDurable } from "../../storage/durable";

/** The steps, in order; the journal names the next one to run. */
export const RESTORE_STEPS = ["stage", "prepare", "swap", "finish", "start"] as const;
export type RestoreStep = (typeof RESTORE_STEPS)[number];

export interface RestoreJournal {
  version: 1;
  step: RestoreStep;
  /** The command as given, for messages ("restore", "restore data.master.1 /srv/pitr --target-…"). */
  command: string;
  /** The set as found when the restore began. */
  set: string;
  /** The set is in an object store (a path there): it is fetched (copied), never moved. */
  stored?: boolean;
  /** The set is one of the block repository's (`set` is its name): materialized, never moved. */
  repo?: boolean;
  /** The newest set is moved (consumed); a named one is copied. */
  move: boolean;
  /** move: the set's name beside the sets while it is being restored (renamed there first). */
  claimed?: string;
  /**
   * The record beside the sets that keeps the set's WAL while this restore is pending
   * (slavedir/pending-restores.ts): written before the set is taken, removed at step "finish". Missing in
   * journals of older versions and for a set in an object store.
   */
  pending?: string;
  /** The first WAL segment the set needs (from its metadata or backup_label), when known. */
  startWal?: string;
  dst: string;
  /** --target-* settings (empty: a standby). */
  target: Record<string, string>;
  /** DST is slave_data: a standby that is started and whose control files are reset. */
  standbyRestore: boolean;
  /** Owner of the restored tree (root restores on behalf of the postgres user). */
  owner: { uid: number; gid: number };
  /** Where the old data directory goes: DST.N (backup_datadir) or the trash (removed). */
  old?: string;
  keepOld: boolean;
  /** Tablespace OID → the directory it is restored to (decided once, then kept). */
  tablespaces?: Record<string, string>;
  /**
   * Tablespace OID → the directory this restore made (or took empty) at that path, claimed
   * (claim.ts): a rerun writes only into a directory whose identity matches. Missing in
   * journals of older versions: their directories are not known to be ours.
   */
  tablespaceDirs?: Record<string, ClaimedDir>;
  /** Names this restore in the markers of the directories it claims (random). */
  token?: string;
  startedAt: string;
}

/** A directory a restore made for a tablespace. */
export interface ClaimedDir {
  /** Its identity when claimed (dev:ino). */
  id: string;
  /** Files of the tablespace are being moved in: what is there is needed, and ours. */
  moving?: boolean;
}

/** The hidden names a restore into `dst` uses beside it. */
export interface RestorePaths {
  dst: string;
  /** Held (create-exclusive, our pid) while a restore runs. */
  lock: string;
  journal: string;
  /** The new data directory is built here, and renamed to DST when complete. */
  stage: string;
  /** The old data directory while it is being removed (backup_datadir = no). */
  trash: string;
}

export function restorePaths(dst: string): RestorePaths {
  const dir = dirname(dst);
  const name = basename(dst);
  return {
    dst,
    lock: join(dir, `.walmgr-restore.${name}.lock`),
    journal: join(dir, `.walmgr-restore.${name}.json`),
    stage: join(dir, `.walmgr-restore.${name}.new`),
    trash: join(dir, `.walmgr-restore.${name}.old`),
  };
}

/**
 * The name a moved set has beside the other sets while it is restored: hidden (not listed as a
 * set), unique per restore, and not ending in a pid, so no cleaner of dead writers' temps takes
 * it for one (the restore that claimed it may be dead and still pending).
 */
export function claimedName(set: string, pid = process.pid): string {
  return join(dirname(set), `.walmgr-restore.${basename(set)}.${pid}.claimed`);
}

/** Reads the journal; undefined when no restore into this destination is pending. */
export function readJournal(paths: RestorePaths): RestoreJournal | undefined {
  let text: string;
  try {
    text = readFileSync(paths.journal, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw ioError("cannot read", paths.journal, err);
  }
  try {
    const j = JSON.parse(text) as RestoreJournal;
    if (j.version !== 1 || !RESTORE_STEPS.includes(j.step) || typeof j.set !== "string" || j.dst !== paths.dst)
      throw new Error("unexpected content");
    return j;
  } catch (err) {
    throw new WalmgrError(
      `${paths.journal} (the journal of an interrupted restore) is corrupt: ${(err as Error).message}`,
      ExitCode.IO,
      `look at ${paths.stage} and the backup sets, move the journal away and restore again`,
    );
  }
}

/** Records the journal durably (temp file, fsync, rename, directory fsync). */
export function writeJournal(paths: RestorePaths, journal: RestoreJournal): void {
  writeFileDurable(paths.journal, Buffer.from(`${JSON.stringify(journal, null, 2)}\n`));
}

/** Removes the journal and the temp files a killed writer of it may have left. */
export function removeJournal(paths: RestorePaths): void {
  try {
    unlinkSync(paths.journal);
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw ioError("cannot remove", paths.journal, err);
  }
  removeStaleTemps(dirname(paths.journal), basename(paths.journal));
}

/** True when the lock text ("PID STARTTIME") names a process that is still the one that wrote it. */
function holderAlive(text: string): boolean {
  const [pidText = "", start] = text.trim().split(" ");
  const pid = Number.parseInt(pidText, 10);
  if (!Number.isInteger(pid) || pid <= 0 || String(pid) !== pidText) return false;
  if (pid === process.pid) return false;
  if (!processAlive(pid)) return false;
  const now = processStart(pid);
  // A recycled pid has another start time; without /proc, alive is all we know.
  return start === undefined || now === undefined || now === start;
}

/** The pid of the restore into `dst` running now (its lock names a live process); undefined when none runs. */
export function runningRestore(dst: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(restorePaths(dst).lock, "utf8");
  } catch {
    return undefined;
  }
  return holderAlive(text) ? Number.parseInt(text, 10) : undefined;
}

/**
 * Takes the restore lock of a destination: created exclusively, holding our pid and start time.
 * A live holder is refused (exit 4); a dead one's lock is re-read and removed only if unchanged,
 * then taken. Returns the release function.
 */
export function lockRestore(paths: RestorePaths, onStale: (msg: string) => void): () => void {
  const mine = `${process.pid} ${processStart(process.pid) ?? ""}`.trim();
  removeStaleTemps(dirname(paths.lock), basename(paths.lock));
  for (let attempt = 0; attempt < 3; attempt++) {
    if (writeFileDurable(paths.lock, Buffer.from(`${mine}\n`), { exclusive: true, mode: 0o644 })) {
      return () => {
        try {
          if (readFileSync(paths.lock, "utf8").trim() === mine) unlinkSync(paths.lock);
        } catch {
          // gone already
        }
      };
    }
    let text: string;
    try {
      text = readFileSync(paths.lock, "utf8");
    } catch (err) {
      if (isErrno(err, "ENOENT")) continue;
      throw ioError("cannot read", paths.lock, err);
    }
    if (holderAlive(text)) {
      throw new LockHeldError(
        `another restore into ${paths.dst} is running (pid ${text.trim().split(" ")[0] ?? "?"}, lock ${paths.lock})`,
        "wait for it to finish; two restores into one directory never run at once",
      );
    }
    onStale(`the restore that held ${paths.lock} (pid ${text.trim().split(" ")[0] ?? "?"}) is gone: taking it over`);
    try {
      if (readFileSync(paths.lock, "utf8") === text) unlinkSync(paths.lock);
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw ioError("cannot remove", paths.lock, err);
    }
  }
  throw new LockHeldError(`cannot take ${paths.lock}: another restore keeps creating it`);
}

/** The crash-test hook and its declared points (crash-point.ts), for restore's steps. */
export { crashPoint, RESTORE_CRASH_POINTS, OTHER_CRASH_POINTS, type CrashPoint } from "../../crash-point";
