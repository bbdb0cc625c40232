import { readFileSync, rmSync, unlinkSync } from "node:fs";
import { hostname } from "node:os";
import { basename, posix } from "node:path";
import type { Context } from "../../context";
import { acquireBackupLock, BACKUPLOCK, ControlFiles, releaseBackupLock } from "../../control";
import { IoError, UsageError } from "../../errors";
import { slaveLayout } from "../../layout";
import { connectMaster } from "../../pg/client";
import { parseSize } from "../../pg/units";
import { removeStaleTemps, TMP_PREFIX } from "../../storage/durable";
import { releaseRemoteNow } from "../../storage/release-sync";
import { parseLsn, lsnToSegment } from "../../wal/names";
import { keepInBackup } from "./exclude";
import { BACKUP_INFO, rotateSets, type BackupInfo } from "./sets";

/**
 * `backup` on the master: a non-exclusive base backup into full_backup, holding BACKUPLOCK
 * from before pg_backup_start until the set is in place. The new set is built under a hidden
 * temporary name and renamed into place only when complete, so a failed or killed backup
 * never looks like a usable set and leaves the previous sets as they were.
 */
export async function backup(ctx: Context): Promise<void> {
  if (ctx.config.role !== "master") {
    throw new UsageError(
      "backups from the slave are not available in this version; run wal-backup with the master's config",
    );
  }
  const layout = slaveLayout(ctx.config, "backup");
  const full = ctx.config.requireLocation("full_backup", "backup").path;
  const masterData = ctx.config.requirePath("master_data", "backup");
  const control = new ControlFiles(layout.driver, layout.completed.path);
  if (!(await layout.driver.stat(layout.completed.path))?.isDirectory) {
    throw new IoError(`completed_wals ${layout.completed.path} does not exist`, "run `wal-ctl CONFIG setup` first");
  }
  if (ctx.dryRun) {
    ctx.out(`[not really] take ${control.path(BACKUPLOCK)}`);
    ctx.out(`[not really] pg_backup_start, copy ${masterData} to ${full}, pg_backup_stop`);
    ctx.out(`[not really] rotate backups in ${posix.dirname(full)} (keep_backups = ${ctx.config.int("keep_backups")})`);
    return;
  }
  const lock = await acquireBackupLock(control, `wal-backup ${ctx.config.file} (${process.argv.slice(1).join(" ")})`, {
    breakStale: ctx.options.has("clear-stale-lock"),
  });
  const tmp = posix.join(posix.dirname(full), `${TMP_PREFIX}${basename(full)}.${process.pid}`);
  const lockPath = control.path(BACKUPLOCK);
  // Synchronous, so it also runs from a SIGINT/SIGTERM handler.
  const unregister = ctx.onCleanup(() => {
    if (releaseRemoteNow(layout.driver, tmp, lockPath)) return;
    rmSync(tmp, { recursive: true, force: true });
    try {
      const held = JSON.parse(readFileSync(lockPath, "utf8")) as { pid?: number; host?: string };
      if (held.pid === process.pid && held.host === hostname()) unlinkSync(lockPath);
    } catch {
      // not ours, or already gone
    }
  });
  ctx.log.info(`backup lock taken: ${lockPath}`);
  // Temp files of killed wal-archive runs (their pids are gone) are litter: clear them now.
  if (layout.completed.host === undefined) removeStaleTemps(layout.completed.path);
  try {
    await layout.driver.mkdirp(posix.dirname(full));
    await takeBackup(ctx, masterData, full, tmp, layout.driver);
  } finally {
    await layout.driver.removeTree(tmp);
    await releaseBackupLock(control, lock);
    unregister();
    ctx.log.info(`backup lock released: ${lockPath}`);
  }
}

async function takeBackup(
  ctx: Context,
  masterData: string,
  full: string,
  tmp: string,
  driver: ReturnType<typeof slaveLayout>["driver"],
): Promise<void> {
  const db = await connectMaster(ctx.config, "backup");
  try {
    const v15 = db.serverVersion >= 150000;
    const startTime = new Date();
    const label = `walmgr-ts ${hostname()} ${startTime.toISOString()}`;
    const start = await db.one<{ lsn: string; tli: string; seg: string; sysid: string }>(
      `SELECT ${v15 ? "pg_backup_start($1, true)" : "pg_start_backup($1, true, false)"}::text AS lsn,
              (SELECT timeline_id FROM pg_control_checkpoint())::text AS tli,
              current_setting('wal_segment_size') AS seg,
              (SELECT system_identifier FROM pg_control_system())::text AS sysid`,
      [label],
    );
    ctx.log.info(`backup started at ${start.lsn}: copying ${masterData} to ${full}`);
    const stats = await driver.putTree(masterData, tmp, keepInBackup, { basis: full });
    const stop = await db.one<{ lsn: string; labelfile: string; spcmapfile: string | null }>(
      v15
        ? "SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_backup_stop(true)"
        : "SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_stop_backup(false, true)",
    );
    await driver.publish(posix.join(tmp, "backup_label"), Buffer.from(stop.labelfile));
    if (stop.spcmapfile) await driver.publish(posix.join(tmp, "tablespace_map"), Buffer.from(stop.spcmapfile));
    const segSize = parseSize(start.seg);
    const labelStart = /START WAL LOCATION: ([0-9A-F/]+) \(file ([0-9A-F]{24})\)/.exec(stop.labelfile);
    const timeline = Number.parseInt(/START TIMELINE: (\d+)/.exec(stop.labelfile)?.[1] ?? start.tli, 10);
    const info: BackupInfo = {
      label,
      startLsn: labelStart?.[1] ?? start.lsn,
      stopLsn: stop.lsn,
      startWal: labelStart?.[2] ?? lsnToSegment(parseLsn(start.lsn), timeline, segSize).name,
      stopWal: lsnToSegment(parseLsn(stop.lsn), timeline, segSize).name,
      timeline,
      startTime: startTime.toISOString(),
      stopTime: new Date().toISOString(),
      pgVersion: db.serverVersion,
      systemIdentifier: start.sysid,
      bytes: stats.bytes,
      files: stats.files,
      source: "master",
    };
    await driver.publish(posix.join(tmp, BACKUP_INFO), Buffer.from(`${JSON.stringify(info, null, 2)}\n`));
    await saveConfigFiles(ctx, db, driver);
    const keep = ctx.config.int("keep_backups");
    await rotateSets(driver, full, keep, async (set) => {
      ctx.log.info(`removing old backup set ${set} (keep_backups = ${keep})`);
      return Promise.resolve();
    });
    await driver.rename(tmp, full);
    ctx.log.info(
      `backup done: ${full} (${stats.files} files, ${(stats.bytes / 1048576).toFixed(1)} MiB${stats.sent === undefined ? "" : `, ${stats.sent} bytes sent`}, WAL ${info.startWal} .. ${info.stopWal ?? "?"})`,
    );
  } finally {
    await db.close();
  }
}

/** Copies postgresql.conf, pg_hba.conf and pg_ident.conf of the master into config_backup. */
async function saveConfigFiles(
  ctx: Context,
  db: Awaited<ReturnType<typeof connectMaster>>,
  driver: ReturnType<typeof slaveLayout>["driver"],
): Promise<void> {
  const dest = ctx.config.location("config_backup");
  if (!dest) return;
  await driver.mkdirp(dest.path);
  const rows = await db.query<{ f: string }>(
    "SELECT current_setting('config_file') AS f UNION ALL SELECT current_setting('hba_file') UNION ALL SELECT current_setting('ident_file')",
  );
  for (const { f } of rows) {
    let data: Buffer;
    try {
      data = readFileSync(f);
    } catch (err) {
      ctx.log.warn(`cannot save ${f} to config_backup: ${(err as Error).message}`);
      continue;
    }
    await driver.publish(posix.join(dest.path, basename(f)), data);
  }
  ctx.log.info(`saved the master's config files to ${dest.path}`);
}
