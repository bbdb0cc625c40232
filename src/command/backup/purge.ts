import { posix } from "node:path";
import type { Context } from "../../context";
import { isChecksumName, WalArchive } from "../../storage/archive";
import type { StorageDriver } from "../../storage/driver";
import { comparePosition, parseWalName } from "../../wal/names";
import { BACKUP_INFO, leftoverPid, listSets, readBackupInfo, tempSetPath, type BackupInfo } from "./sets";
import { readBytes } from "../../storage/bytes";
import { describeStandby, readRegistry, reportExpired, standbyExpireSeconds, standbyHold } from "../../standbys";

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

/**
 * The oldest WAL segment any kept backup set in `fullBackup` needs (the oldest start WAL among
 * them): `{ from: undefined }` when there is no set; `{ unknown: set }` when a set's start cannot
 * be read, in which case no WAL may be removed on its account. A complete set a killed backup
 * left hidden counts too (the next backup puts it in place). The one notion of "what the kept
 * sets need", shared by backup's purge and wal-restore's %r cleanup.
 */
export async function walNeededBySets(
  driver: StorageDriver,
  fullBackup: string,
): Promise<{ from: string | undefined; unknown?: undefined } | { unknown: string }> {
  let from: string | undefined;
  const keep = (start: string): void => {
    if (from === undefined || comparePosition(start, from) < 0) from = start;
  };
  for (const set of await listSets(driver, fullBackup)) {
    const start = await setStartWal(driver, set);
    if (!start) return { unknown: set };
    keep(start);
  }
  const dir = posix.dirname(fullBackup);
  for (const name of (await driver.list(dir)) ?? []) {
    const pid = leftoverPid(fullBackup, name);
    if (pid === undefined || posix.join(dir, name) !== tempSetPath(fullBackup, pid)) continue;
    // Only a complete one (metadata written last) can become a set; a partial one never will.
    const info = await readBackupInfo(driver, posix.join(dir, name));
    if (typeof info?.startWal === "string") keep(info.startWal);
  }
  return { from };
}

/**
 * Removes WAL that no kept backup set and no live standby needs: segments (and .partial and
 * .backup files) older than both the oldest set's start WAL and the oldest restart point among
 * the live standbys of the registry (`standbys.ts`: a standby whose record is older than
 * standby_expire no longer counts, and is warned about when WAL it would need goes).
 * `.history` files are always kept. Does nothing when any set's start, or a live standby's
 * restart point, cannot be read.
 */
export async function purgeWal(
  ctx: Context,
  driver: StorageDriver,
  completedDir: string,
  fullBackup: string,
  opts: { expireSeconds?: number; now?: number } = {},
): Promise<number> {
  const needed = await walNeededBySets(driver, fullBackup);
  if (needed.unknown !== undefined) {
    ctx.log.warn(`cannot tell which WAL ${needed.unknown} needs: no WAL purged`);
    return 0;
  }
  if (needed.from === undefined) return 0;
  let keepFrom = needed.from;
  const names = (await driver.list(completedDir)) ?? [];
  const expireSeconds = opts.expireSeconds ?? standbyExpireSeconds(ctx.config);
  const hold = standbyHold(await readRegistry(driver, completedDir, names), expireSeconds, opts.now);
  if (hold.unknown !== undefined) {
    ctx.log.warn(
      `cannot tell which WAL ${describeStandby(hold.unknown)} needs (${posix.join(completedDir, hold.unknown.file)} is not a standby record): no WAL purged`,
    );
    return 0;
  }
  if (hold.from !== undefined && comparePosition(hold.from, keepFrom) < 0) {
    ctx.log.info(`standby ${JSON.stringify(hold.by)} still needs WAL from ${hold.from}: keeping it`);
    keepFrom = hold.from;
  }
  const archive = new WalArchive(driver, completedDir);
  const removed: string[] = [];
  for (const n of names) {
    if (isChecksumName(n)) continue;
    const w = parseWalName(n);
    if (!w || w.kind === "history") continue;
    if (comparePosition(n, keepFrom) < 0) {
      if (ctx.dryRun) ctx.out(`[not really] remove ${archive.path(n)}`);
      else if (await archive.remove(n)) removed.push(n);
    }
  }
  await reportExpired(ctx.log, driver, completedDir, hold, removed, expireSeconds, ctx.dryRun);
  ctx.log.info(
    `purged ${removed.length} WAL file(s) older than ${keepFrom} (needed by the oldest kept backup or a live standby)`,
  );
  return removed.length;
}
