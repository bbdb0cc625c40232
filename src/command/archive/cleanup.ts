import { posix } from "node:path";
import type { Context } from "../../context";
import { controlFilesFor } from "../../slavedir/layout";
import { sameStorage } from "../../config/load";
import { repoBeside } from "../backup/purge";
import type { WalArchive } from "../../storage/archive";
import type { StorageDriver } from "../../storage/driver";
import { describeStandby, standbyExpireSeconds, usableRestartPoint, type StandbyEntry } from "../../slavedir/standbys";
import { parseWalName } from "../../wal/names";
import { CLEANUP_KINDS, removeWalBefore, walToKeep } from "../../slavedir/retention";

/**
 * With keep_backups = 0 the standbys' restart points bound what they need: remove complete and
 * partial segments older than this standby's %r and the oldest restart point of every other live
 * standby in the registry (`standbys.ts`), as pg_archivecleanup would, but never what a backup
 * set in full_backup, or a pending restore's set, still needs (its start WAL onwards), nothing
 * while another live standby's record cannot be read: the one retention rule backup's purge
 * applies too (slavedir/retention.ts), with %r as this caller's own bound. And nothing at all
 * while a backup holds BACKUPLOCK (it is about to put a set in place). Never .history, never
 * .backup files. `own` is this standby's record as just noted (not read again). Run by wal-restore
 * for each segment it serves with %r, and by the prefetcher (with the restart point from
 * pg_control) once the shell front has served entries, which start no Node.
 */
export async function cleanupBefore(
  ctx: Context,
  driver: StorageDriver,
  archive: WalArchive,
  keepFrom: string,
  own: StandbyEntry | undefined,
): Promise<void> {
  const keep = parseWalName(keepFrom);
  if (!keep || keep.kind !== "segment") {
    ctx.log.warn(`ignoring invalid %r ${JSON.stringify(keepFrom)}: no WAL cleaned up`);
    return;
  }
  if (!usableRestartPoint(keepFrom)) return; // zeros: PostgreSQL knows no restart point yet
  const control = controlFilesFor(ctx.config, ctx.config.requireLocation("completed_wals", "wal-restore"), driver);
  if (await control.lockExists()) {
    ctx.log.info(`a backup holds ${control.lockPath()}: no WAL cleaned up now`);
    return;
  }
  const full = ctx.config.location("full_backup");
  if (full && !sameStorage(full, ctx.config.requireLocation("completed_wals", "wal-restore"))) {
    ctx.log.warn(`full_backup ${full.path} is not where completed_wals is: no WAL cleaned up`);
    return;
  }
  const expireSeconds = standbyExpireSeconds(ctx.config);
  // The block repository's sets need their WAL too: where they cannot be read with this
  // storage, nothing is removed (as for full_backup above).
  const repo = repoBeside(ctx.config, ctx.config.requireLocation("completed_wals", "wal-restore"));
  if ("elsewhere" in repo) {
    ctx.log.warn(`backup_repo ${repo.elsewhere} is not where completed_wals is: no WAL cleaned up`);
    return;
  }
  const r = await walToKeep(driver, {
    walDir: archive.completedDir,
    fullBackup: full?.path,
    ...repo,
    bound: keep.name,
    exceptStandby: own?.name,
    expireSeconds,
  });
  if ("unknownSet" in r) {
    ctx.log.warn(`cannot tell which WAL ${r.unknownSet} needs: no WAL cleaned up`);
    return;
  }
  if ("noBound" in r) return; // never: %r is the bound
  if (r.setsHold && full) {
    ctx.log.debug(
      `the backup sets in ${posix.dirname(full.path)}${(r.sets?.restores.length ?? 0) > 0 ? " (and pending restores)" : ""} need WAL from ${r.sets?.from ?? "?"}: keeping it`,
    );
  }
  if ("unknownStandby" in r) {
    ctx.log.warn(`cannot tell which WAL ${describeStandby(r.unknownStandby)} needs: no WAL cleaned up`);
    return;
  }
  if (r.standbysHold) {
    ctx.log.debug(`standby ${JSON.stringify(r.hold.by)} still needs WAL from ${r.keepFrom}: keeping it`);
  }
  const removed = await removeWalBefore(ctx, driver, archive.completedDir, r, CLEANUP_KINDS, expireSeconds);
  if (removed.length > 0)
    ctx.log.info(`removed ${removed.length} WAL file(s) older than ${r.keepFrom} from ${archive.completedDir}`);
}
