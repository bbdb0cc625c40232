import { existsSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { hostname } from "node:os";
import { basename, join, posix } from "node:path";
import { formatLocation, isLocal, loadConfig, type Config } from "../../config/load";
import type { Context } from "../../context";
import { acquireBackupLock, releaseBackupLock } from "../../slavedir/control";
import { ConfigError, DatabaseError, IoError, UsageError } from "../../errors";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import { connectMaster, connectStandby, type Db } from "../../pg/client";
import { parseSize } from "../../pg/units";
import { runConfigured } from "../../shell";
import { startProgress, type Progress } from "../../progress";
import { requireFeature, type StorageDriver } from "../../storage/driver";
import type { SetSink } from "./sink";
import { removeStaleTemps } from "../../storage/durable";
import { releaseRemoteNow } from "../../storage/release-sync";
import { parseLsn, lsnToSegment } from "../../wal/names";
import { keepInBackup } from "./exclude";
import { purgeAfterSets } from "./purge";
import {
  BACKUP_INFO,
  BACKUP_MANIFEST,
  leftoverPid,
  listSets,
  pruneSets,
  readBackupInfo,
  shiftSets,
  tempSetPath,
  type BackupInfo,
} from "../../slavedir/backup-sets";
import { testPause } from "../../test-pause";
import { writeBytes } from "../../storage/bytes";
import { storeFile } from "../../storage/files";
import { walkTreeSync } from "../../storage/tree-walk";

/** pg_control is copied after everything else, as pg_basebackup does (required from a standby). */
const PG_CONTROL = "global/pg_control";

/**
 * Files modified less than this before the previous backup started are compared by content
 * on the next one (see `trustMtimeBefore`): it covers coarse file timestamps (2 s on some file
 * systems, a clock tick for the kernel's) and clock steps of up to a minute.
 */
const MTIME_TRUST_MARGIN_MS = 60_000;

/**
 * `backup`: a non-exclusive base backup into full_backup. On the master it copies master_data;
 * on the slave it copies the running standby's slave_data (pg_backup_start on the standby: no
 * load on the master). BACKUPLOCK is held from before the rotation until the set is in place.
 *
 * Crash safety: at every instant, every set that was complete and listed before the backup is
 * still complete and listed (under its old or its next number), or the new set is in place.
 * The new set is built under a hidden temporary name; walmgr's rotation before the copy removes
 * only sets beyond the newest `keep_backups - 1` (so with keep_backups 0 or 1 the old set stays
 * during the copy); then every set moves one number up (data.master -> data.master.0, one rename
 * each), the new set is renamed to data.master, and only then are the sets beyond keep_backups
 * removed (renamed to a hidden name first, so a half-removed set is never listed). What a killed
 * backup leaves hidden beside the sets is cleared by the next one (`clearLeftovers`).
 */
export async function backup(ctx: Context): Promise<void> {
  const fromStandby = ctx.config.role === "slave";
  const layout = slaveLayout(ctx.config, "backup");
  const full = ctx.config.requireLocation("full_backup", "backup").path;
  const source = ctx.config.requirePath(fromStandby ? "slave_data" : "master_data", "backup");
  const control = controlFilesFor(ctx.config, layout.completed, layout.driver);
  if (!(await layout.driver.info(layout.completed.path))?.isDirectory) {
    throw new IoError(`completed_wals ${layout.completed.path} does not exist`, "run `wal-ctl CONFIG setup` first");
  }
  const keep = ctx.config.int("keep_backups");
  const repo = ctx.config.choice("backup_format") === "repo";
  if (ctx.dryRun && repo) {
    ctx.out(`[not really] take ${control.lockPath()}`);
    ctx.out(
      `[not really] pg_backup_start, store ${source} into the block repository ${formatLocation(ctx.config.requireLocation("backup_repo", "backup"))}, pg_backup_stop`,
    );
    return;
  }
  if (ctx.dryRun) {
    ctx.out(`[not really] take ${control.lockPath()}`);
    ctx.out(`[not really] rotate backups in ${posix.dirname(full)} (keep_backups = ${keep})`);
    ctx.out(`[not really] pg_backup_start, copy ${source} to ${full}, pg_backup_stop`);
    return;
  }
  const tmp = tempSetPath(full);
  const lockPath = control.lockPath();
  // At a terminal a progress line; elsewhere a log line per stage (progress.ts).
  const progress = startProgress("backup", ctx.log, { json: ctx.json });
  /** Once the new set is being renamed into place, the temp tree must not be removed any more. */
  let committing = false;
  // Synchronous, so it also runs from a SIGINT/SIGTERM handler.
  const unregister = ctx.onCleanup(() => {
    // While the new set is renamed into place its temp tree must stay (a removal racing the
    // rename could empty the new set); the next backup removes whatever is left of it.
    const tree = committing ? undefined : tmp;
    if (releaseRemoteNow(layout.driver, tree, lockPath)) return;
    if (tree !== undefined) rmSync(tree, { recursive: true, force: true });
    try {
      const held = JSON.parse(readFileSync(lockPath, "utf8")) as { pid?: number; host?: string };
      if (held.pid === process.pid && held.host === hostname()) unlinkSync(lockPath);
    } catch {
      // not ours, or already gone
    }
  });
  // The cleanup is in place before the lock is taken: taking it can take seconds (a checked
  // lock re-reads itself after a pause), and a signal then must not leave it behind. It removes
  // only a lock that names this process.
  let lock;
  try {
    lock = await acquireBackupLock(control, `wal-backup ${ctx.config.file} (${process.argv.slice(1).join(" ")})`, {
      breakStale: ctx.options.has("clear-stale-lock"),
      onStale: (msg) => ctx.log.warn(msg),
    });
  } catch (err) {
    unregister();
    throw err;
  }
  // For messages: s3://bucket/… or host:/… where the lock is not a local file.
  const lockWhere = formatLocation({ ...layout.completed, path: lockPath });
  ctx.log.info(`backup lock taken: ${lockWhere}`);
  // Temp files of killed wal-archive runs (their pids are gone) are litter: clear them now.
  if (isLocal(layout.completed)) removeStaleTemps(layout.completed.path);
  try {
    if (repo) {
      progress.stage("starting backup (pg_backup_start)");
      const sink = await (await import("./repo.js")).repoSink(ctx);
      const db = fromStandby ? await connectStandby(ctx.config, "backup") : await connectMaster(ctx.config, "backup");
      try {
        await takeBackup(ctx, db, source, sink, layout.driver, fromStandby, progress);
      } catch (err) {
        await sink.abort();
        throw err;
      } finally {
        await db.close();
      }
      committing = true;
      // Retention of the repository, still under this backup's lock.
      progress.stage("expiring sets out of keep_backups/keep_days");
      await (await import("./expire.js")).expireSets(ctx, { locked: true });
    } else {
      await layout.driver.pathCreate(posix.dirname(full));
      await clearLeftovers(ctx, layout.driver, full);
      await rotate(ctx, layout.driver, full, keep);
      progress.stage("starting backup (pg_backup_start)");
      const db = fromStandby ? await connectStandby(ctx.config, "backup") : await connectMaster(ctx.config, "backup");
      try {
        await takeBackup(ctx, db, source, plainSink(layout.driver, tmp, full), layout.driver, fromStandby, progress);
      } finally {
        await db.close();
      }
      await testPause("copied");
      committing = true;
      progress.stage("rotating sets");
      await putInPlace(ctx, layout.driver, tmp, full);
      // Only now that the new set is listed: the old ones beyond keep_backups go (their
      // archive_command ran in `rotate`, before the copy).
      for (const old of await pruneSets(layout.driver, full, Math.max(keep, 1))) {
        ctx.log.info(`removed the previous backup set (listed as ${old} meanwhile; keep_backups = ${keep})`);
      }
      if (keep > 0) {
        progress.stage("purging WAL");
        await purgeAfterSets(ctx, layout, full);
      }
    }
  } finally {
    if (!committing) await requireFeature(layout.driver, "tree").removeTree(tmp);
    await releaseBackupLock(control, lock);
    unregister();
    ctx.log.info(`backup lock released: ${lockWhere}`);
  }
  progress.done();
}

/**
 * Renames the complete new set into place: the sets move one number up, then `tmp` becomes
 * `full`. SIGINT/SIGTERM wait until that is done (a few renames), then take effect, so a stop
 * request never leaves the new set half-committed; a second signal is not held back.
 */
async function putInPlace(ctx: Context, driver: StorageDriver, tmp: string, full: string): Promise<void> {
  let stopped: NodeJS.Signals | undefined;
  const release = ctx.onStopSignal((sig) => {
    stopped = sig;
    ctx.log.warn(`${sig} received while the new backup set is put in place: stopping right after that`);
  });
  try {
    await shiftSets(driver, full);
    await testPause("shifted");
    await requireFeature(driver, "tree").renameDir(tmp, full);
    ctx.log.info(`new backup set in place: ${full}`);
  } finally {
    release();
  }
  await testPause("committed");
  if (stopped) {
    // Now die of it as usual (cleanups run, the lock is released); the older sets beyond
    // keep_backups stay until the next backup.
    process.kill(process.pid, stopped);
    await new Promise((r) => setTimeout(r, 10_000));
  }
}

/**
 * Clears what killed backups left hidden beside the sets. A temp set that is complete (its
 * metadata, written last, is there: the backup was killed after copying, before renaming it in)
 * and newer than every listed set is put in place, as its backup would have done; everything
 * else (partial temp sets, 12 MB and more each, and sets caught in their removal) is removed.
 * Runs under BACKUPLOCK, which every backup of this slave directory holds while it writes there,
 * so none of them belongs to a live backup (their pids may be on another host: the lock, not
 * the pid, is the proof). Each step is logged.
 */
async function clearLeftovers(ctx: Context, driver: StorageDriver, full: string): Promise<void> {
  const dir = posix.dirname(full);
  const newest = (await listSets(driver, full))[0];
  const newestStart = newest === undefined ? "" : ((await readBackupInfo(driver, newest))?.startTime ?? "");
  const complete: { path: string; pid: number; start: string }[] = [];
  const remove: { path: string; pid: number }[] = [];
  for (const name of (await driver.list(dir)) ?? []) {
    const pid = leftoverPid(full, name);
    // Our own pid too: our temp set does not exist yet, so that one is a dead namesake's.
    if (pid === undefined) continue;
    const path = posix.join(dir, name);
    const start = path === tempSetPath(full, pid) ? (await readBackupInfo(driver, path))?.startTime : undefined;
    if (start !== undefined && start > newestStart) complete.push({ path, pid, start });
    else remove.push({ path, pid });
  }
  complete.sort((a, b) => (a.start < b.start ? -1 : 1));
  const promote = complete.pop();
  remove.push(...complete);
  for (const { path, pid } of remove) {
    try {
      await requireFeature(driver, "tree").removeTree(path);
      ctx.log.info(`removed ${path}: left behind by a backup that did not finish (pid ${pid})`);
    } catch (err) {
      ctx.log.warn(`cannot remove ${path}, left behind by a backup that did not finish: ${(err as Error).message}`);
    }
  }
  if (promote) {
    await shiftSets(driver, full);
    await requireFeature(driver, "tree").renameDir(promote.path, full);
    ctx.log.warn(
      `put ${promote.path} in place as ${full}: a complete set whose backup (pid ${promote.pid}) was killed before it did so`,
    );
  }
}

/** The config whose `archive_command` guards rotation: the slave's (slave_config on the master). */
function rotationConfig(ctx: Context): Config | undefined {
  if (ctx.config.role === "slave") return ctx.config;
  const file = ctx.config.path("slave_config");
  return file ? loadConfig(file) : undefined;
}

/**
 * walmgr's rotation before the copy: the slave's archive_command runs with the path of each set
 * that this backup will remove (a failure stops the backup, nothing removed). Sets beyond the
 * newest `keep - 1` are removed now (walmgr: "at one point there is one less backup"); the newest
 * always stays until the new set is in place, so a failed backup never leaves fewer than one.
 */
async function rotate(ctx: Context, driver: StorageDriver, full: string, keep: number): Promise<void> {
  const guard = rotationConfig(ctx);
  const command = keep > 0 ? guard?.get("archive_command") : undefined;
  const hook = async (set: string): Promise<void> => {
    if (command) {
      // A failure here throws, which stops the rotation and the backup: nothing is removed.
      runConfigured({ ...ctx, config: guard ?? ctx.config }, "archive_command", command, [set]);
    }
  };
  const stay = Math.max(keep, 1) - 1;
  await pruneSets(driver, full, Math.max(stay, 1), async (set) => {
    await hook(set);
    ctx.log.info(`removing the oldest backup set ${set} (keep_backups = ${keep})`);
  });
  if (stay === 0) {
    // keep_backups 0 or 1: the newest set goes once the new one is in place.
    const newest = (await listSets(driver, full))[0];
    if (newest !== undefined) {
      await hook(newest);
      ctx.log.info(`${newest} will be replaced by the new set once that is complete (keep_backups = ${keep})`);
    }
  }
}

/** The plain format: a copy of the data directory into `tmp`, the newest set the basis of a remote copy. */
function plainSink(driver: StorageDriver, tmp: string, full: string): SetSink {
  return {
    where: tmp,
    copy: async (source, sysid, onProgress) => {
      // The newest remaining set is the basis for delta transfer (rsync) on a remote slave.
      const basis = (await listSets(driver, full))[0];
      const stats = await requireFeature(driver, "tree").putTree(
        source,
        tmp,
        (rel, isDir) => rel !== PG_CONTROL && keepInBackup(rel, isDir),
        basis === undefined
          ? { onProgress }
          : { basis, trustMtimeBefore: await trustMtimeBefore(driver, basis, sysid), onProgress },
      );
      const control = await storeFile(driver, posix.join(tmp, PG_CONTROL), join(source, PG_CONTROL));
      onProgress(control.bytes, 1);
      return { ...stats, files: stats.files + 1, bytes: stats.bytes + control.bytes };
    },
    finish: async (labelfile, spcmapfile, info) => {
      await writeBytes(driver, posix.join(tmp, "backup_label"), Buffer.from(labelfile));
      if (spcmapfile) await writeBytes(driver, posix.join(tmp, "tablespace_map"), Buffer.from(spcmapfile));
      // Built where the set is (on a remote slave, by its helper): it describes what was stored.
      await writeBytes(
        driver,
        posix.join(tmp, BACKUP_MANIFEST),
        Buffer.from(`${JSON.stringify(await requireFeature(driver, "tree").manifest(tmp))}\n`),
      );
      await writeBytes(driver, posix.join(tmp, BACKUP_INFO), Buffer.from(`${JSON.stringify(info, null, 2)}\n`));
    },
  };
}

/**
 * pg_backup_start, the copy of `source` into the sink, pg_backup_stop, the label, manifest and
 * metadata of the set, and the wait for its WAL.
 */
async function takeBackup(
  ctx: Context,
  db: Db,
  source: string,
  sink: SetSink,
  /** The slave directory's storage: config_backup goes there. */
  driver: StorageDriver,
  fromStandby: boolean,
  progress: Progress,
): Promise<void> {
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
  ctx.log.info(`backup started at ${start.lsn}: copying ${source} to ${sink.where}`);
  progress.stage("copying data directory", sourceTotals(source));
  // What the driver reported, so that the summary can be topped up to the copy's own counts.
  const counted = { bytes: 0, files: 0 };
  const onProgress = (bytes: number, files: number): void => {
    counted.bytes += bytes;
    counted.files += files;
    progress.add(bytes, files);
  };
  const stats = await sink.copy(source, start.sysid, onProgress);
  // A driver may miss a file in its reports (an rsync line it could not match): the summary
  // counts what the copy says it copied.
  progress.add(Math.max(0, stats.bytes - counted.bytes), Math.max(0, stats.files - counted.files));
  // The manifest hashes the whole set where it is stored: on a big set as long as a copy.
  progress.stage("stopping backup, writing the manifest");
  // Never PostgreSQL's own wait for the archive: it looks once a second. We look every
  // ARCHIVE_POLL_MS, the same way, while the label, manifest and info are written.
  const stop = await db.one<{ lsn: string; labelfile: string; spcmapfile: string | null; archiving: boolean }>(
    `SELECT lsn::text AS lsn, labelfile, spcmapfile, current_setting('archive_mode') <> 'off' AS archiving
       FROM ${v15 ? "pg_backup_stop(false)" : "pg_stop_backup(false, false)"}`,
  );
  const segSize = parseSize(start.seg);
  const labelStart = /START WAL LOCATION: ([0-9A-F/]+) \(file ([0-9A-F]{24})\)/.exec(stop.labelfile);
  const timeline = Number.parseInt(/START TIMELINE: (\d+)/.exec(stop.labelfile)?.[1] ?? start.tli, 10);
  // A master's backup is complete once its last segment is archived (a standby's: when the
  // standby's WAL reaches the archive, which restore waits for anyway, as pg_backup_stop does).
  const archived =
    fromStandby || !stop.archiving
      ? Promise.resolve()
      : waitArchived(
          ctx,
          join(source, "pg_wal"),
          lsnToSegment(parseLsn(stop.lsn) - 1n, timeline, segSize).name,
          archiveTimeout(ctx),
          () => archiverStatus(db),
        );
  let waited = false;
  archived.then(
    () => (waited = true),
    () => undefined, // awaited below; not an unhandled rejection meanwhile
  );
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
  if (sink.publishesOnFinish === true) {
    if (!waited) progress.stage("waiting for WAL to be archived");
    await archived;
  }
  await sink.finish(stop.labelfile, stop.spcmapfile, info);
  if (!fromStandby) await saveConfigFiles(ctx, db, driver);
  // Mostly archived by now (the manifest took a while); a stage only when it is not.
  if (!waited) progress.stage("waiting for WAL to be archived");
  await archived;
  // Scripts and tests read this line (bytes sent): it stays as it was, beside the summary.
  ctx.log.info(
    `backup copied: ${stats.files} files, ${(stats.bytes / 1048576).toFixed(1)} MiB${stats.sent === undefined ? "" : `, ${stats.sent} bytes sent`}, WAL ${info.startWal} .. ${info.stopWal ?? "?"}`,
  );
}

/**
 * Bytes and files `source` holds as the backup copies it (pg_control included), for the
 * progress line's percentage and time left: a walk that only stats, cheap beside the copy that
 * reads every byte. Undefined when the walk fails (the copy then reports the real problem).
 */
function sourceTotals(source: string): { bytes: number; files: number } | undefined {
  const totals = { bytes: 0, files: 0 };
  try {
    walkTreeSync(source, ({ rel, st }) => {
      if (st.isDirectory()) return keepInBackup(rel, true);
      if (st.isFile() && keepInBackup(rel, false)) {
        totals.bytes += st.size;
        totals.files++;
      }
      return false;
    });
  } catch {
    return undefined;
  }
  return totals;
}

/** How often a master's backup looks whether its last segment is archived. */
const ARCHIVE_POLL_MS = 50;

/**
 * How long a master's backup waits for its last WAL segment to be archived (seconds): the
 * --archive-timeout option, else backup_archive_timeout (default 60, as pgBackRest's
 * archive-timeout).
 */
export function archiveTimeout(ctx: Context): number {
  const opt = ctx.options.get("archive-timeout");
  const value = opt !== undefined ? Number(opt) : ctx.config.float("backup_archive_timeout");
  if (!Number.isFinite(value) || value <= 0) {
    if (opt !== undefined)
      throw new UsageError(`--archive-timeout takes a number of seconds above zero, not ${JSON.stringify(opt)}`);
    throw new ConfigError(
      `${ctx.config.file}: backup_archive_timeout must be a number of seconds above zero, not ${JSON.stringify(ctx.config.get("backup_archive_timeout"))}`,
    );
  }
  return value;
}

/** What pg_stat_archiver says about the archiver's last failure, for the timeout's message. */
async function archiverStatus(db: Db): Promise<string | undefined> {
  try {
    const r = await db.one<{
      archived: string | null;
      failed: string | null;
      at: string | null;
      n: string;
      cmd: string;
    }>(
      `SELECT last_archived_wal AS archived, last_failed_wal AS failed, last_failed_time::text AS at,
              failed_count::text AS n, current_setting('archive_command') AS cmd FROM pg_stat_archiver`,
    );
    const failed = r.failed === null ? "no failure recorded" : `last failed ${r.failed} at ${r.at ?? "?"}`;
    return `pg_stat_archiver: last archived ${r.archived ?? "none"}, ${failed} (${r.n} failures); archive_command = ${JSON.stringify(r.cmd)}`;
  } catch {
    return undefined;
  }
}

/**
 * Waits until PostgreSQL counts `segment` as archived, by the rule pg_backup_stop's own wait
 * uses (xlogarchive.c, XLogArchiveIsBusy): its `.done` exists, or neither its `.ready` nor the
 * segment does (a checkpoint removed it after archiving). A segment archived ahead by batch
 * archiving becomes `.done` when PostgreSQL's own call for it is acknowledged.
 * At most `timeoutS` seconds (pgBackRest's archive-timeout): archiving that keeps failing fails
 * the backup (an I/O error naming what the archiver last reported), instead of holding
 * BACKUPLOCK for good. Says so every minute meanwhile.
 */
async function waitArchived(
  ctx: Context,
  walDir: string,
  segment: string,
  timeoutS: number,
  archiver: () => Promise<string | undefined>,
): Promise<void> {
  const status = join(walDir, "archive_status");
  const started = Date.now();
  let said = started;
  for (;;) {
    if (existsSync(join(status, `${segment}.done`))) return;
    if (!existsSync(join(status, `${segment}.ready`)) && !existsSync(join(walDir, segment))) return;
    if (Date.now() - started >= timeoutS * 1000) {
      const why = await archiver();
      throw new IoError(
        `${segment}, the last WAL segment this backup needs, was not archived within ${timeoutS} s (backup_archive_timeout)${why === undefined ? "" : `: ${why}`}; the backup is incomplete and is not kept`,
        "check archive_command: pg_stat_archiver's last_failed_wal and last_failed_time, and the server log say why it fails; if archiving is only slow, raise backup_archive_timeout (or --archive-timeout SECONDS)",
      );
    }
    if (Date.now() - said >= 60_000) {
      said = Date.now();
      ctx.log.warn(
        `still waiting for ${segment} to be archived (${Math.round((said - started) / 1000)} s of at most ${timeoutS} s): the backup is complete only then; check archive_command`,
      );
    }
    await sleep(ARCHIVE_POLL_MS);
  }
}

/**
 * How far back size + mtime may stand for content when the basis set's copy has the same
 * size and mtime: the basis set's start, minus a margin for coarse file timestamps and small
 * clock steps. Rationale (pgBackRest's rule): a file last modified before the basis backup
 * started was copied into it after its last change, so same size and mtime mean same content.
 * A file changed later, even within the second the basis copied it (mtimes compare in whole
 * seconds), is compared by content. Only for a basis taken from this same source (the master,
 * same system identifier): other sets' mtimes say nothing about this data directory.
 * undefined: compare every file by content.
 */
async function trustMtimeBefore(driver: StorageDriver, basis: string, sysid: string): Promise<number | undefined> {
  const info = await readBackupInfo(driver, basis);
  const started = Date.parse(info?.startTime ?? "");
  if (info?.source !== "master" || info.systemIdentifier !== sysid || !Number.isFinite(started)) return undefined;
  return started - MTIME_TRUST_MARGIN_MS;
}

/** Copies postgresql.conf, pg_hba.conf and pg_ident.conf of the master into config_backup. */
async function saveConfigFiles(ctx: Context, db: Db, driver: StorageDriver): Promise<void> {
  const dest = ctx.config.location("config_backup");
  if (!dest) return;
  await driver.pathCreate(dest.path);
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
    await writeBytes(driver, posix.join(dest.path, basename(f)), data);
  }
  ctx.log.info(`saved the master's config files to ${dest.path}`);
}
