/**
 * The one WAL retention rule of a slave directory: WAL older than the oldest of what the kept
 * backup sets need (their start WAL; with the sets of pending restores and the complete sets a
 * killed backup left hidden), what the live standbys of the registry hold (standbys.ts) and the
 * caller's own bound may go; `.history` files never. Nothing goes while any of those cannot be
 * read.
 *
 * Both removers of WAL decide with `walToKeep` and remove with `removeWalBefore`: backup's purge
 * (command/backup/purge.ts: the main slave directory and each also_archive_to repository) and
 * wal-restore's %r cleanup with keep_backups = 0 (command/archive/get.ts). What differs between
 * them is said by the parameters, each with the reason: the caller's own bound, the standby that
 * is the caller itself, and which kinds of WAL file go.
 */
import { posix } from "node:path";
import type { Context } from "../context";
import { isChecksumName, WalArchive } from "../storage/archive";
import type { StorageDriver } from "../storage/driver";
import { comparePosition, parseWalName, type WalKind } from "../wal/names";
import { leftoverPid, listSets, readBackupInfo, setStartWal, tempSetPath } from "./backup-sets";
import { restoreHolds, type RestoreHold } from "./pending-restores";
import { RepoLayout } from "../repo/layout";
import { listRepoSets, repoSetInfo } from "../repo/sets";
import { readRegistry, reportExpired, standbyHold, type JudgedStandby, type StandbyHold } from "./standbys";

/** What the sets beside `fullBackup` need: the oldest start WAL among them, and the pending restores. */
export interface SetsNeed {
  /** undefined: there is no set (and no pending restore). */
  from: string | undefined;
  restores: RestoreHold[];
  unknown?: undefined;
}

/**
 * The oldest WAL segment any kept backup set in `fullBackup` needs (the oldest start WAL among
 * them): `{ from: undefined }` when there is no set; `{ unknown: set }` when a set's start cannot
 * be read, in which case no WAL may be removed on its account. A complete set a killed backup
 * left hidden counts too (the next backup puts it in place), and so does the set of every
 * pending restore (pending-restores.ts: its record, or a claimed set without one; `restores`
 * names them). The one notion of "what the kept sets need", which `walToKeep` applies.
 */
export async function walNeededBySets(
  driver: StorageDriver,
  fullBackup: string,
  repoRoot?: string,
): Promise<SetsNeed | { unknown: string }> {
  let from: string | undefined;
  const keep = (start: string): void => {
    if (from === undefined || comparePosition(start, from) < 0) from = start;
  };
  // The block repository's sets (backup_format = repo) on the same storage: each needs WAL from
  // its start as a plain set does.
  if (repoRoot !== undefined) {
    const layout = new RepoLayout(repoRoot);
    for (const set of await listRepoSets(driver, layout)) {
      let start: unknown;
      try {
        start = (await repoSetInfo(driver, layout, set))?.startWal;
      } catch {
        start = undefined;
      }
      if (typeof start !== "string") return { unknown: layout.manifestPath(set) };
      keep(start);
    }
  }
  for (const set of await listSets(driver, fullBackup)) {
    const start = await setStartWal(driver, set);
    if (!start) return { unknown: set };
    keep(start);
  }
  const dir = posix.dirname(fullBackup);
  const names = (await driver.list(dir)) ?? [];
  for (const name of names) {
    const pid = leftoverPid(fullBackup, name);
    if (pid === undefined || posix.join(dir, name) !== tempSetPath(fullBackup, pid)) continue;
    // Only a complete one (metadata written last) can become a set; a partial one never will.
    const info = await readBackupInfo(driver, posix.join(dir, name));
    if (typeof info?.startWal === "string") keep(info.startWal);
  }
  const restores = await restoreHolds(driver, fullBackup, names);
  for (const r of restores) {
    if (r.startWal === undefined) return { unknown: r.path };
    keep(r.startWal);
  }
  return { from, restores };
}

/** What `walToKeep` is asked about one WAL folder. */
export interface RetentionInput {
  /** The WAL folder (a logs.complete). */
  walDir: string;
  /**
   * Its listing, when the caller has just read it (an also_archive_to repository: to tell that
   * it is missing); otherwise it is listed once the sets have been read, as late as it can be.
   */
  names?: string[];
  /**
   * The sets (full_backup) whose WAL is kept, with their pending restores and hidden complete
   * sets. undefined: none are considered (wal-restore without full_backup).
   */
  fullBackup?: string;
  /** The block repository (backup_format = repo) on the same storage, whose sets count as the plain ones do. */
  repoRoot?: string;
  /**
   * A bound of the caller's own, kept whatever the sets and standbys say: this standby's %r
   * (cleanup: it is what PostgreSQL itself no longer needs), or the main slave directory's
   * cut-off (an also_archive_to repository: never removing there what the main rule keeps).
   * undefined (the main slave directory's purge): the sets alone start the bound, and without
   * any set there is nothing to measure against, so nothing is removed.
   */
  bound?: string;
  /**
   * A standby left out of the registry: the caller's own (cleanup), whose current %r is `bound`
   * already; its record may be older (it is refreshed only now and then) and must not hold back
   * WAL the standby itself says it no longer needs.
   */
  exceptStandby?: string;
  /** standby_expire in seconds (0: records never expire); `now` for tests. */
  expireSeconds: number;
  now?: number;
}

/** What the sets did to the bound: what they need (when `fullBackup` was given), and whether it moved the caller's bound back. */
export interface SetsPart {
  sets: SetsNeed | undefined;
  setsHold: boolean;
}

/** The decision: what to keep, or why nothing may go. */
export type Retention =
  /** The start of a set, a hidden complete set or a pending restore cannot be read: remove nothing. */
  | { unknownSet: string }
  /** No bound of the caller's and no set: remove nothing. */
  | { noBound: true }
  /** A live standby's record cannot be read: remove nothing (the sets as they were read). */
  | ({ unknownStandby: JudgedStandby } & SetsPart)
  | RetentionCut;

/** WAL older than `keepFrom` may go. */
export interface RetentionCut extends SetsPart {
  keepFrom: string;
  /** What the live standbys hold; `standbysHold`: it moved the bound back (`hold.by` is the one). */
  hold: StandbyHold;
  standbysHold: boolean;
  /** The WAL folder's listing the decision was made on: what `removeWalBefore` goes through. */
  names: string[];
}

/**
 * Applies the rule: the cut is the oldest of the caller's `bound`, the sets' need and the live
 * standbys' restart points. Reads the sets first, then lists the folder (unless `names` was
 * given) and reads its standby registry; stops at the first thing that cannot be read.
 */
export async function walToKeep(driver: StorageDriver, input: RetentionInput): Promise<Retention> {
  let keepFrom = input.bound;
  let sets: SetsNeed | undefined;
  let setsHold = false;
  if (input.fullBackup !== undefined) {
    const needed = await walNeededBySets(driver, input.fullBackup, input.repoRoot);
    if (needed.unknown !== undefined) return { unknownSet: needed.unknown };
    sets = needed;
    if (needed.from !== undefined && (keepFrom === undefined || comparePosition(needed.from, keepFrom) < 0)) {
      keepFrom = needed.from;
      setsHold = true;
    }
  }
  if (keepFrom === undefined) return { noBound: true };
  const names = input.names ?? (await driver.list(input.walDir)) ?? [];
  const registry = await readRegistry(driver, input.walDir, names, input.exceptStandby);
  const hold = standbyHold(registry, input.expireSeconds, input.now);
  if (hold.unknown !== undefined) return { unknownStandby: hold.unknown, sets, setsHold };
  let standbysHold = false;
  if (hold.from !== undefined && comparePosition(hold.from, keepFrom) < 0) {
    keepFrom = hold.from;
    standbysHold = true;
  }
  return { keepFrom, sets, setsHold, hold, standbysHold, names };
}

/** The kinds of WAL file a remover takes: never `.history` (a timeline's history is kept for good). */
export type RemovableKind = Exclude<WalKind, "history">;

/**
 * Backup's purge: segments, partial segments and `.backup` files (a `.backup` file older than the
 * cut describes a backup that started before the oldest kept set: no set left needs it).
 */
export const PURGE_KINDS: readonly RemovableKind[] = ["segment", "partial", "backup"];

/**
 * wal-restore's %r cleanup: segments and partial segments only, as pg_archivecleanup removes by
 * default (what archive_cleanup_command is used for); `.backup` files stay.
 */
export const CLEANUP_KINDS: readonly RemovableKind[] = ["segment", "partial"];

/**
 * Removes the WAL files of `cut.names` of the `kinds` given that are older than `cut.keepFrom`,
 * each with its checksum file (under --not-really: prints each instead); then warns about every
 * expired standby whose WAL went (standbys.ts, reportExpired). Returns the names removed.
 */
export async function removeWalBefore(
  ctx: Context,
  driver: StorageDriver,
  walDir: string,
  cut: RetentionCut,
  kinds: readonly RemovableKind[],
  expireSeconds: number,
): Promise<string[]> {
  const archive = new WalArchive(driver, walDir);
  const removed: string[] = [];
  for (const n of cut.names) {
    if (isChecksumName(n)) continue;
    const w = parseWalName(n);
    if (!w || !(kinds as readonly WalKind[]).includes(w.kind)) continue;
    if (comparePosition(n, cut.keepFrom) < 0) {
      if (ctx.dryRun) ctx.out(`[not really] remove ${archive.path(n)}`);
      else if (await archive.remove(n)) removed.push(n);
    }
  }
  await reportExpired(ctx.log, driver, walDir, cut.hold, removed, expireSeconds, ctx.dryRun);
  return removed;
}
