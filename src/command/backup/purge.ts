import { posix } from "node:path";
import { STANDBY_RESTARTPOINT } from "../../control";
import type { Context } from "../../context";
import { isChecksumName, WalArchive } from "../../storage/archive";
import type { StorageDriver } from "../../storage/driver";
import { comparePosition, parseWalName } from "../../wal/names";
import { BACKUP_INFO, listSets, type BackupInfo } from "./sets";

/** The first WAL segment a backup set needs: from its metadata, or its backup_label. */
export async function setStartWal(driver: StorageDriver, set: string): Promise<string | undefined> {
  const info = await driver.read(posix.join(set, BACKUP_INFO));
  if (info) {
    try {
      return (JSON.parse(info.toString("utf8")) as BackupInfo).startWal;
    } catch {
      // fall back to the label
    }
  }
  const label = await driver.read(posix.join(set, "backup_label"));
  return label ? /START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/.exec(label.toString("utf8"))?.[1] : undefined;
}

/**
 * Removes WAL that no kept backup set and no running standby needs: segments (and .partial and
 * .backup files) older than both the oldest set's start WAL and the standby's restart point.
 * `.history` files are always kept. Does nothing when any set's start cannot be read.
 */
export async function purgeWal(
  ctx: Context,
  driver: StorageDriver,
  completedDir: string,
  fullBackup: string,
): Promise<number> {
  const sets = await listSets(driver, fullBackup);
  const oldest = sets[sets.length - 1];
  if (oldest === undefined) return 0;
  const starts: string[] = [];
  for (const set of sets) {
    const start = await setStartWal(driver, set);
    if (!start) {
      ctx.log.warn(`cannot tell which WAL ${set} needs: no WAL purged`);
      return 0;
    }
    starts.push(start);
  }
  let keepFrom = starts.reduce((a, b) => (comparePosition(a, b) <= 0 ? a : b));
  const standby = (await driver.read(posix.join(completedDir, STANDBY_RESTARTPOINT)))?.toString("utf8").trim();
  if (standby && parseWalName(standby)?.kind === "segment" && comparePosition(standby, keepFrom) < 0) {
    ctx.log.info(`the standby still needs WAL from ${standby}: keeping it`);
    keepFrom = standby;
  }
  const archive = new WalArchive(driver, completedDir);
  let removed = 0;
  for (const n of (await driver.list(completedDir)) ?? []) {
    if (isChecksumName(n)) continue;
    const w = parseWalName(n);
    if (!w || w.kind === "history") continue;
    if (comparePosition(n, keepFrom) < 0) {
      if (ctx.dryRun) ctx.out(`[not really] remove ${archive.path(n)}`);
      else if (await archive.remove(n)) removed++;
    }
  }
  ctx.log.info(
    `purged ${removed} WAL file(s) older than ${keepFrom} (needed by the oldest kept backup or the standby)`,
  );
  return removed;
}
