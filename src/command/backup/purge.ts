import { posix } from "node:path";
import { formatLocation, sameStorage, type Config, type Location } from "../../config/load";
import type { SlaveLayout } from "../../slavedir/layout";
import type { Context } from "../../context";
import { alsoArchiveTo, type Repository } from "../archive/repositories";
import type { StorageDriver } from "../../storage/driver";
import type { RestoreHold } from "../../slavedir/pending-restores";
import { PURGE_KINDS, removeWalBefore, walToKeep } from "../../slavedir/retention";
import { describeStandby, standbyExpireSeconds } from "../../slavedir/standbys";

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
  opts: {
    expireSeconds?: number;
    now?: number;
    also?: Repository[];
    /** The block repository on this storage (backup_repo), whose sets count too. */
    repoRoot?: string;
  } = {},
): Promise<number> {
  const expireSeconds = opts.expireSeconds ?? standbyExpireSeconds(ctx.config);
  const r = await walToKeep(driver, {
    walDir: completedDir,
    fullBackup,
    // The block repository's sets hold their WAL too.
    ...(opts.repoRoot !== undefined ? { repoRoot: opts.repoRoot } : {}),
    expireSeconds,
    now: opts.now,
  });
  if ("unknownSet" in r) {
    ctx.log.warn(`cannot tell which WAL ${r.unknownSet} needs: no WAL purged`);
    return 0;
  }
  if ("noBound" in r) return 0;
  for (const h of r.sets?.restores ?? []) {
    ctx.log.info(`${describeRestoreHold(h)} needs WAL from ${h.startWal ?? "?"}: keeping it until it is finished`);
  }
  if ("unknownStandby" in r) {
    ctx.log.warn(
      `cannot tell which WAL ${describeStandby(r.unknownStandby)} needs (${posix.join(completedDir, r.unknownStandby.file)} is not a standby record): no WAL purged`,
    );
    return 0;
  }
  if (r.standbysHold) {
    ctx.log.info(`standby ${JSON.stringify(r.hold.by)} still needs WAL from ${r.keepFrom}: keeping it`);
  }
  const removed = await removeWalBefore(ctx, driver, completedDir, r, PURGE_KINDS, expireSeconds);
  ctx.log.info(
    `purged ${removed.length} WAL file(s) older than ${r.keepFrom} (needed by the oldest kept backup or a live standby)`,
  );
  for (const repo of opts.also ?? []) {
    await purgeRepository(ctx, repo, r.keepFrom, expireSeconds, opts.now);
  }
  return removed.length;
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
    const r = await walToKeep(driver, {
      walDir: dir,
      names,
      fullBackup: posix.join(posix.dirname(dir), "data.master"),
      repoRoot: posix.join(posix.dirname(dir), "repo"),
      bound: mainKeepFrom,
      expireSeconds,
      now,
    });
    if ("unknownSet" in r) {
      ctx.log.warn(`cannot tell which WAL ${r.unknownSet} in ${where} needs: no WAL purged there`);
      return 0;
    }
    if ("noBound" in r) return 0; // never: mainKeepFrom is the bound
    if (r.setsHold) {
      ctx.log.info(`a backup set in ${where} still needs WAL from ${r.sets?.from ?? "?"}: keeping it there`);
    }
    if ("unknownStandby" in r) {
      ctx.log.warn(
        `cannot tell which WAL ${describeStandby(r.unknownStandby)} needs (${posix.join(dir, r.unknownStandby.file)} in ${where} is not a standby record): no WAL purged there`,
      );
      return 0;
    }
    if (r.standbysHold) {
      ctx.log.info(
        `standby ${JSON.stringify(r.hold.by)} of ${where} still needs WAL from ${r.keepFrom}: keeping it there`,
      );
    }
    const removed = await removeWalBefore(ctx, driver, dir, r, PURGE_KINDS, expireSeconds);
    ctx.log.info(`purged ${removed.length} WAL file(s) older than ${r.keepFrom} from ${where}`);
    return removed.length;
  } catch (err) {
    ctx.log.warn(
      `${where} could not be purged: ${err instanceof Error ? err.message : String(err)}; its WAL stays until a later backup purges it`,
    );
    return 0;
  }
}

/**
 * backup_repo as the one retention rule needs it: `repoRoot` when the repository is on
 * completed_wals' storage (the rule reads its sets' needs there; none when unset), `elsewhere`
 * when it is not: then no WAL may be removed, as the sets there cannot be read.
 */
export function repoBeside(config: Config, completed: Location): { repoRoot?: string } | { elsewhere: string } {
  const repo = config.location("backup_repo");
  if (repo === undefined) return {};
  return sameStorage(repo, completed) ? { repoRoot: repo.path } : { elsewhere: repo.path };
}

/**
 * The purge after a backup or an expire (keep_backups above 0): purgeWal over completed_wals and
 * the also_archive_to repositories, counting the sets of `fullBackup` and of the block
 * repository; nothing, with a warning, when the repository is not on completed_wals' storage.
 */
export async function purgeAfterSets(ctx: Context, layout: SlaveLayout, fullBackup: string): Promise<void> {
  const repo = repoBeside(ctx.config, layout.completed);
  if ("elsewhere" in repo) {
    ctx.log.warn(`backup_repo ${repo.elsewhere} is not where completed_wals is: no WAL purged`);
    return;
  }
  await purgeWal(ctx, layout.driver, layout.completed.path, fullBackup, {
    also: alsoArchiveTo(ctx.config, layout.completed),
    ...repo,
  });
}
