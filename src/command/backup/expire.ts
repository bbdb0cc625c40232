import type { Context } from "../../context";
import { expireRepo, setsToKeep, type ExpireResult } from "../../repo/expire";
import { listRepoSets, repoSetInfo } from "../../repo/sets";
import { acquireBackupLock, releaseBackupLock } from "../../slavedir/control";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import { purgeAfterSets } from "./purge";
import { openRepo } from "./repo";

/**
 * Retention of the block repository, under BACKUPLOCK (taken here unless `locked`: a backup
 * calls it while it holds the lock): drops the sets keep_backups and keep_days do not keep,
 * the packs no kept set references, and (keep_backups above 0, as for plain sets) the WAL no set
 * or standby needs. `-n` says what it would remove and changes nothing.
 */
export async function expireSets(ctx: Context, opts: { locked?: boolean } = {}): Promise<ExpireResult | undefined> {
  const repo = openRepo(ctx);
  const layout = slaveLayout(ctx.config, "expire");
  const control = controlFilesFor(ctx.config, layout.completed, layout.driver);
  const lock =
    opts.locked === true || ctx.dryRun
      ? undefined
      : await acquireBackupLock(control, `wal-ctl ${ctx.config.file} expire`, {
          breakStale: ctx.options.has("clear-stale-lock"),
          onStale: (msg) => ctx.log.warn(msg),
        });
  try {
    const sets = await listRepoSets(repo.driver, repo.layout);
    if (sets.length === 0) {
      ctx.log.info(`no set in the block repository ${repo.where}: nothing to expire`);
      return undefined;
    }
    const dated = await Promise.all(
      sets.map(async (name) => {
        const info = await repoSetInfo(repo.driver, repo.layout, name).catch(() => undefined);
        return { name, stopTime: typeof info?.stopTime === "string" ? Date.parse(info.stopTime) : Number.NaN };
      }),
    );
    const keepBackups = ctx.config.int("keep_backups");
    const keep = setsToKeep(dated, { keepBackups, keepDays: ctx.config.float("keep_days"), now: Date.now() });
    const log = (msg: string): void => (ctx.dryRun ? ctx.out(`[not really] ${msg}`) : ctx.log.info(msg));
    const r = await expireRepo(repo.driver, repo.layout, sets, keep, { dryRun: ctx.dryRun, log });
    log(
      `${ctx.dryRun ? "would keep" : "kept"} ${keep.size} set(s) in ${repo.where}; ${ctx.dryRun ? "would remove" : "removed"} ${r.droppedSets.length} set(s) and ${r.removedPacks.length} pack(s) (${(r.removedBytes / 1048576).toFixed(1)} MiB); the kept sets use ${r.keptPacks} pack(s), ${(r.keptBytes / 1048576).toFixed(1)} MiB`,
    );
    if (!ctx.dryRun && keepBackups > 0)
      await purgeAfterSets(ctx, layout, ctx.config.requireLocation("full_backup", "expire").path);
    return r;
  } finally {
    if (lock !== undefined) await releaseBackupLock(control, lock);
  }
}
