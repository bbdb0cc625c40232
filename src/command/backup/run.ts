import { readFileSync, rmSync, unlinkSync } from "node:fs";
import { hostname } from "node:os";
import { basename, join, posix } from "node:path";
import { loadConfig, type Config } from "../../config/load";
import type { Context } from "../../context";
import { acquireBackupLock, BACKUPLOCK, ControlFiles, releaseBackupLock } from "../../control";
import { DatabaseError, IoError } from "../../errors";
import { slaveLayout, type SlaveLayout } from "../../layout";
import { connectMaster, connectStandby, type Db } from "../../pg/client";
import { parseSize } from "../../pg/units";
import { runConfigured } from "../../shell";
import type { StorageDriver } from "../../storage/driver";
import { removeStaleTemps, TMP_PREFIX } from "../../storage/durable";
import { releaseRemoteNow } from "../../storage/release-sync";
import { parseLsn, lsnToSegment } from "../../wal/names";
import { keepInBackup } from "./exclude";
import { purgeWal } from "./purge";
import { BACKUP_INFO, BACKUP_MANIFEST, listSets, rotateSets, type BackupInfo } from "./sets";

/** pg_control is copied after everything else, as pg_basebackup does (required from a standby). */
const PG_CONTROL = "global/pg_control";

/**
 * `backup`: a non-exclusive base backup into full_backup. On the master it copies master_data;
 * on the slave it copies the running standby's slave_data (pg_backup_start on the standby: no
 * load on the master). BACKUPLOCK is held from before the rotation until the set is in place.
 * Sets are rotated before the copy starts, as walmgr's manual says; the new set is built under
 * a hidden temporary name and renamed into place only when complete, so a failed or killed
 * backup never looks like a usable set and leaves the remaining sets as they were.
 */
export async function backup(ctx: Context): Promise<void> {
  const fromStandby = ctx.config.role === "slave";
  const layout = slaveLayout(ctx.config, "backup");
  const full = ctx.config.requireLocation("full_backup", "backup").path;
  const source = ctx.config.requirePath(fromStandby ? "slave_data" : "master_data", "backup");
  const control = new ControlFiles(layout.driver, layout.completed.path);
  if (!(await layout.driver.stat(layout.completed.path))?.isDirectory) {
    throw new IoError(`completed_wals ${layout.completed.path} does not exist`, "run `wal-ctl CONFIG setup` first");
  }
  const keep = ctx.config.int("keep_backups");
  if (ctx.dryRun) {
    ctx.out(`[not really] take ${control.path(BACKUPLOCK)}`);
    ctx.out(`[not really] rotate backups in ${posix.dirname(full)} (keep_backups = ${keep})`);
    ctx.out(`[not really] pg_backup_start, copy ${source} to ${full}, pg_backup_stop`);
    return;
  }
  const lock = await acquireBackupLock(control, `wal-backup ${ctx.config.file} (${process.argv.slice(1).join(" ")})`, {
    breakStale: ctx.options.has("clear-stale-lock"),
    onStale: (msg) => ctx.log.warn(msg),
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
    if (keep > 0) await rotate(ctx, layout.driver, full, keep);
    const db = fromStandby ? await connectStandby(ctx.config, "backup") : await connectMaster(ctx.config, "backup");
    try {
      await takeBackup(ctx, db, source, tmp, full, layout, fromStandby);
    } finally {
      await db.close();
    }
    if (keep === 0) await layout.driver.removeTree(full);
    await layout.driver.rename(tmp, full);
    if (keep > 0) await purgeWal(ctx, layout.driver, layout.completed.path, full);
  } finally {
    await layout.driver.removeTree(tmp);
    await releaseBackupLock(control, lock);
    unregister();
    ctx.log.info(`backup lock released: ${lockPath}`);
  }
}

/** The config whose `archive_command` guards rotation: the slave's (slave_config on the master). */
function rotationConfig(ctx: Context): Config | undefined {
  if (ctx.config.role === "slave") return ctx.config;
  const file = ctx.config.path("slave_config");
  return file ? loadConfig(file) : undefined;
}

/** Rotates before the new backup: room for it, at most `keep` sets in all afterwards. */
async function rotate(ctx: Context, driver: StorageDriver, full: string, keep: number): Promise<void> {
  const guard = rotationConfig(ctx);
  const command = guard?.get("archive_command");
  await rotateSets(driver, full, keep, async (set) => {
    if (command) {
      // A failure here throws, which stops the rotation and the backup: nothing is removed.
      runConfigured({ ...ctx, config: guard ?? ctx.config }, "archive_command", command, [set]);
    }
    ctx.log.info(`removing the oldest backup set ${set} (keep_backups = ${keep})`);
  });
}

async function takeBackup(
  ctx: Context,
  db: Db,
  source: string,
  tmp: string,
  full: string,
  layout: SlaveLayout,
  fromStandby: boolean,
): Promise<void> {
  const driver = layout.driver;
  const v15 = db.serverVersion >= 150000;
  const state = await db.one<{ rec: boolean }>("SELECT pg_is_in_recovery() AS rec");
  if (fromStandby && !state.rec) {
    throw new DatabaseError(`${db.where} is not a standby`, "a slave backup copies the running standby in slave_data");
  }
  const startTime = new Date();
  const label = `walmgr-ts ${fromStandby ? "standby" : "master"} ${hostname()} ${startTime.toISOString()}`;
  const start = await db.one<{ lsn: string; tli: string; seg: string; sysid: string }>(
    `SELECT ${v15 ? "pg_backup_start($1, true)" : "pg_start_backup($1, true, false)"}::text AS lsn,
            (SELECT timeline_id FROM pg_control_checkpoint())::text AS tli,
            current_setting('wal_segment_size') AS seg,
            (SELECT system_identifier FROM pg_control_system())::text AS sysid`,
    [label],
  );
  ctx.log.info(`backup started at ${start.lsn}: copying ${source} to ${tmp}`);
  // The newest remaining set is the basis for delta transfer (rsync) on a remote slave.
  const basis = (await listSets(driver, full))[0];
  const stats = await driver.putTree(
    source,
    tmp,
    (rel, isDir) => rel !== PG_CONTROL && keepInBackup(rel, isDir),
    basis === undefined ? {} : { basis },
  );
  const control = await driver.publishFile(posix.join(tmp, PG_CONTROL), join(source, PG_CONTROL));
  stats.files++;
  stats.bytes += control.bytes;
  const stop = await db.one<{ lsn: string; labelfile: string; spcmapfile: string | null }>(
    v15
      ? `SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_backup_stop(${fromStandby ? "false" : "true"})`
      : `SELECT lsn::text AS lsn, labelfile, spcmapfile FROM pg_stop_backup(false, ${fromStandby ? "false" : "true"})`,
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
    source: fromStandby ? "slave" : "master",
  };
  // Built where the set is (on a remote slave, by its helper): it describes what was stored.
  await driver.publish(
    posix.join(tmp, BACKUP_MANIFEST),
    Buffer.from(`${JSON.stringify(await driver.manifest(tmp))}\n`),
  );
  await driver.publish(posix.join(tmp, BACKUP_INFO), Buffer.from(`${JSON.stringify(info, null, 2)}\n`));
  if (!fromStandby) await saveConfigFiles(ctx, db, driver);
  ctx.log.info(
    `backup copied: ${stats.files} files, ${(stats.bytes / 1048576).toFixed(1)} MiB${stats.sent === undefined ? "" : `, ${stats.sent} bytes sent`}, WAL ${info.startWal} .. ${info.stopWal ?? "?"}`,
  );
}

/** Copies postgresql.conf, pg_hba.conf and pg_ident.conf of the master into config_backup. */
async function saveConfigFiles(ctx: Context, db: Db, driver: StorageDriver): Promise<void> {
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
