import { posix } from "node:path";
import { formatLocation } from "../../config/load";
import type { Context } from "../../context";
import type { Repository } from "../archive/repositories";
import { isChecksumName, WalArchive } from "../../storage/archive";
import type { StorageDriver } from "../../storage/driver";
import { comparePosition, parseWalName } from "../../wal/names";
import { leftoverPid, listSets, readBackupInfo, setStartWal, tempSetPath } from "../../slavedir/backup-sets";
import { restoreHolds, type RestoreHold } from "../restore/pending";
import {
  describeStandby,
  readRegistry,
  reportExpired,
  standbyExpireSeconds,
  standbyHold,
  type StandbyHold,
} from "../../slavedir/standbys";

/**
 * The oldest WAL segment any kept backup set in `fullBackup` needs (the oldest start WAL among
 * them): `{ from: undefined }` when there is no set; `{ unknown: set }` when a set's start cannot
 * be read, in which case no WAL may be removed on its account. A complete set a killed backup
 * left hidden counts too (the next backup puts it in place), and so does the set of every
 * pending restore (restore/pending.ts: its record, or a claimed set without one; `restores`
 * names them). The one notion of "what the kept sets need", shared by backup's purge and
 * wal-restore's %r cleanup.
 */
export async function walNeededBySets(
  driver: StorageDriver,
  fullBackup: string,
): Promise<{ from: string | undefined; restores: RestoreHold[]; unknown?: undefined } | { unknown: string }> {
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

/** "a pending restore of SET into DST (record PATH)", for log lines. */
export function describeRestoreHold(r: RestoreHold): string {
  return r.record
    ? `a pending restore of ${posix.basename(r.record.set)} into ${r.record.dst} (${r.path})`
    : `a pending restore's claimed set ${r.path}`;
}

/**
 * Removes WAL that no kept backup set and no live standby needs: segments (and .partial and
 * .backup files) older than both the oldest set's start WAL and the oldest restart point among
 * the live standbys of the registry (`standbys.ts`: a standby whose record is older than
 * standby_expire no longer counts, and is warned about when WAL it would need goes).
 * `.history` files are always kept. Does nothing when any set's start, or a live standby's
 * restart point, cannot be read.
 *
 * Then each repository of `also` (also_archive_to) gets the same cut-off (`purgeRepository`),
 * or an older one where its own standbys or sets need more: never anything the rule above keeps
 * in the main repository. One that cannot be reached or read is skipped with a warning.
 */
export async function purgeWal(
  ctx: Context,
  driver: StorageDriver,
  completedDir: string,
  fullBackup: string,
  opts: { expireSeconds?: number; now?: number; also?: Repository[] } = {},
): Promise<number> {
  const needed = await walNeededBySets(driver, fullBackup);
  if (needed.unknown !== undefined) {
    ctx.log.warn(`cannot tell which WAL ${needed.unknown} needs: no WAL purged`);
    return 0;
  }
  if (needed.from === undefined) return 0;
  for (const r of needed.restores) {
    ctx.log.info(`${describeRestoreHold(r)} needs WAL from ${r.startWal ?? "?"}: keeping it until it is finished`);
  }
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
  const removed = await removeBefore(ctx, driver, completedDir, names, keepFrom);
  await reportExpired(ctx.log, driver, completedDir, hold, removed, expireSeconds, ctx.dryRun);
  ctx.log.info(
    `purged ${removed.length} WAL file(s) older than ${keepFrom} (needed by the oldest kept backup or a live standby)`,
  );
  for (const repo of opts.also ?? []) {
    await purgeRepository(ctx, repo, keepFrom, expireSeconds, opts.now);
  }
  return removed.length;
}

/** Removes the WAL files of `names` in `dir` older than `keepFrom` (never .history); the removed names. */
async function removeBefore(
  ctx: Context,
  driver: StorageDriver,
  dir: string,
  names: string[],
  keepFrom: string,
): Promise<string[]> {
  const archive = new WalArchive(driver, dir);
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
  return removed;
}

/**
 * Retention for one also_archive_to repository: removes its WAL older than `mainKeepFrom` (the
 * main repository's cut-off), or older than the oldest restart point of its own live standbys
 * (a standby restoring from it records itself there) or the oldest start of its own backup sets
 * (`data.master` beside its logs.complete), whichever is older. Nothing when one of those cannot
 * be read. A repository that cannot be reached is skipped with a warning (it is purged by a
 * later backup); the backup does not fail for it.
 */
export async function purgeRepository(
  ctx: Context,
  repo: Repository,
  mainKeepFrom: string,
  expireSeconds: number,
  now?: number,
): Promise<number> {
  const where = `${repo.name} (${formatLocation(repo.loc)})`;
  const driver = repo.archive.driver;
  const dir = repo.loc.path;
  try {
    const names = await driver.list(dir);
    if (names === undefined) {
      ctx.log.warn(`${where} does not exist: no WAL purged there (run \`wal-ctl CONFIG setup\`)`);
      return 0;
    }
    let keepFrom = mainKeepFrom;
    const sets = await walNeededBySets(driver, posix.join(posix.dirname(dir), "data.master"));
    if (sets.unknown !== undefined) {
      ctx.log.warn(`cannot tell which WAL ${sets.unknown} in ${where} needs: no WAL purged there`);
      return 0;
    }
    if (sets.from !== undefined && comparePosition(sets.from, keepFrom) < 0) {
      ctx.log.info(`a backup set in ${where} still needs WAL from ${sets.from}: keeping it there`);
      keepFrom = sets.from;
    }
    const hold: StandbyHold = standbyHold(await readRegistry(driver, dir, names), expireSeconds, now);
    if (hold.unknown !== undefined) {
      ctx.log.warn(
        `cannot tell which WAL ${describeStandby(hold.unknown)} needs (${posix.join(dir, hold.unknown.file)} in ${where} is not a standby record): no WAL purged there`,
      );
      return 0;
    }
    if (hold.from !== undefined && comparePosition(hold.from, keepFrom) < 0) {
      ctx.log.info(
        `standby ${JSON.stringify(hold.by)} of ${where} still needs WAL from ${hold.from}: keeping it there`,
      );
      keepFrom = hold.from;
    }
    const removed = await removeBefore(ctx, driver, dir, names, keepFrom);
    await reportExpired(ctx.log, driver, dir, hold, removed, expireSeconds, ctx.dryRun);
    ctx.log.info(`purged ${removed.length} WAL file(s) older than ${keepFrom} from ${where}`);
    return removed.length;
  } catch (err) {
    ctx.log.warn(
      `${where} could not be purged: ${err instanceof Error ? err.message : String(err)}; its WAL stays until a later backup purges it`,
    );
    return 0;
  }
}
