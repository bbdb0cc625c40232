/**
 * restore's journaled step machine (journal.ts): stage (take the set), prepare (tablespaces,
 * recovery settings, owner), swap (the old data directory aside, the new one in place), finish
 * (the standby's record, the pending restore's record removed), start. Each step is recorded in
 * the journal once it is done, so a rerun after a crash at any point goes on from the step
 * recorded.
 */
import {
  chmodSync,
  chownSync,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  mkdirSync,
} from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, join, posix } from "node:path";
import type { Context } from "../../context";
import { BOOT_END_OF_WAL, BOOT_PARTIAL_SERVED, STOP } from "../../slavedir/control";
import { ExitCode, UsageError, WalmgrError } from "../../errors";
import { testPause } from "../../test-pause";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import type { Progress } from "../../progress";
import { readPostmaster } from "../../pg/server";
import { walDirName } from "../../pg/wal-dir";
import { runConfigured, shellQuote } from "../../shell";
import { restartStandbyRecord } from "../../slavedir/standbys";
import {
  copyTree,
  isSymlink,
  mkdirPrivate,
  refuseUnplainTree,
  removeTreeDurable,
  renameOrCopyTree,
} from "../../storage/local/driver";
import { writeFileDurable, fsyncDir, removeStaleTemps } from "../../storage/durable";
import { storeFile } from "../../storage/files";
import { parseManifest, type Manifest } from "../../storage/manifest";
import { readBytes } from "../../storage/bytes";
import { requireFeature, type StorageDriver } from "../../storage/driver";
import { BACKUP_MANIFEST, readBackupInfo, setStartWal } from "../../slavedir/backup-sets";
import { restoreHolds, type PendingRecord } from "../../slavedir/pending-restores";
import { crashPoint, removeJournal, writeJournal, type RestoreJournal, type RestorePaths } from "./journal";
import { localDriver, io, chownTree, isRoot, firstFree, isEmptyDir } from "./local-fs";
import { writeRecoverySettings } from "./recovery-settings";
import { relocateTablespaces } from "./tablespaces";

/** Runs the journaled steps from the one recorded, advancing the journal after each. */
export async function runSteps(
  ctx: Context,
  paths: RestorePaths,
  j: RestoreJournal,
  driver: ReturnType<typeof slaveLayout>["driver"],
  completed: string,
  ensureDown: () => Promise<void>,
  progress: Progress,
  releaseSets: () => Promise<void>,
): Promise<void> {
  const advance = (step: Exclude<RestoreJournal["step"], "stage">): void => {
    j.step = step;
    writeJournal(paths, j);
    crashPoint(step);
  };
  // A rerun after its set's WAL went (removed by hand, or by a purge of an earlier version)
  // stops before DST is replaced.
  if (j.standbyRestore && (j.step === "stage" || j.step === "prepare"))
    await requireStartWal(driver, completed, j.set, stagedStartWal(paths, j) ?? j.startWal, "resume", paths, j);
  if (j.step === "stage") {
    try {
      await stage(ctx, paths, j, driver, progress);
    } catch (err) {
      // A copy that failed (not a crash) is rolled back: DST and the set were never touched.
      if (!j.move) {
        io("cannot remove", paths.stage, () => rmSync(paths.stage, { recursive: true, force: true }));
        if (j.pending !== undefined) removePending(j.pending);
        removeJournal(paths);
        ctx.log.info(`nothing was changed: ${paths.stage} removed`);
      }
      throw err;
    }
    await testPause("restore-staged");
    advance("prepare");
  }
  // The set is taken (staged): backups may rotate the others again.
  await releaseSets();
  if (j.step === "prepare") {
    progress.stage("preparing the data directory (tablespaces, recovery settings)");
    await prepare(ctx, paths, j, progress);
    // Where the old data directory goes is decided (and recorded) before it moves.
    if (existsSync(j.dst) || isSymlink(j.dst)) {
      j.old = j.keepOld && !isEmptyDir(j.dst) ? firstFree(j.dst) : paths.trash;
    }
    advance("swap");
  }
  if (j.step === "swap") {
    // The set may have taken long to copy: never move a data directory a server has meanwhile started in.
    await ensureDown();
    swap(ctx, paths, j);
    advance("finish");
  }
  if (j.step === "finish") {
    if (j.old === paths.trash) {
      // A big data directory takes a while to remove.
      if (existsSync(paths.trash)) progress.stage("removing the old data directory");
      io("cannot remove", paths.trash, () => rmSync(paths.trash, { recursive: true, force: true }));
      fsyncDir(dirname(paths.trash));
    }
    if (j.claimed !== undefined) removeTreeDurable(j.claimed);
    // A new standby replays afresh: no STOP, no boot markers, and its own restart point (not the
    // other standbys') starts again at the set's start WAL.
    if (j.standbyRestore) {
      // Never "WAL from … on is kept for it" when it is gone already: the standby could not start.
      // The label restartStandbyRecord reads, so that the check is of the WAL it records.
      const start = labelStartWal(j.dst) ?? j.startWal;
      await requireStartWal(driver, completed, j.set, start, "finish", paths, j);
      const control = controlFilesFor(ctx.config, ctx.config.requireLocation("completed_wals", "restore"), driver);
      for (const f of [STOP, BOOT_END_OF_WAL, BOOT_PARTIAL_SERVED]) await control.remove(f);
      await restartStandbyRecord(ctx, driver, completed, j.dst);
    }
    // The standby's record holds the WAL from now on (a point-in-time copy is done with it).
    if (j.pending !== undefined) removePending(j.pending);
    advance("start");
  }
  const startCmd = ctx.config.get("slave_start_cmd");
  if (j.standbyRestore && startCmd) {
    if (readPostmaster(j.dst)) ctx.log.info(`the server in ${j.dst} is already running`);
    else {
      progress.stage("starting the server");
      try {
        runConfigured(ctx, "slave_start_cmd", startCmd);
      } catch (err) {
        // A run killed while starting the server leaves its start command running: the
        // server it starts is the restored one, and a second start command then fails.
        if (!readPostmaster(j.dst)) throw err;
        ctx.log.warn(`${(err as Error).message}, but the server in ${j.dst} is running now`);
      }
    }
    crashPoint("started");
    ctx.log.info(`restored ${basename(j.set)} into ${j.dst} and started it: the standby replays WAL from ${completed}`);
  } else {
    ctx.log.info(`restored ${basename(j.set)} into ${j.dst}; start it with: pg_ctl -D ${shellQuote(j.dst)} start`);
  }
  // The very last step: once the journal is gone, a rerun is a new restore.
  removeJournal(paths);
}

/**
 * Step "stage": the set's files at the stage name. A moved set is first renamed beside the
 * other sets (atomic: it is either there or claimed, never lost), then renamed to the stage, or
 * across file systems copied and only then removed. A named set is copied; a rerun starts the
 * copy over.
 */
async function stage(
  ctx: Context,
  paths: RestorePaths,
  j: RestoreJournal,
  driver: StorageDriver,
  progress: Progress,
): Promise<void> {
  const onProgress = (bytes: number, files: number): void => progress.add(bytes, files);
  if (j.pending !== undefined) await writePending(ctx, paths, j);
  if (j.move && j.claimed !== undefined) {
    const claimed = j.claimed;
    if (!existsSync(claimed) && !existsSync(paths.stage)) {
      if (!existsSync(join(j.set, "backup_label"))) {
        throw new WalmgrError(
          `the backup set ${j.set} being restored into ${j.dst} is gone`,
          ExitCode.NOT_AVAILABLE,
          `remove ${paths.journal} and restore again`,
        );
      }
      io(`cannot move ${j.set} to`, claimed, () => renameSync(j.set, claimed));
      fsyncDir(dirname(claimed));
      crashPoint("claimed");
    }
    if (existsSync(claimed)) {
      // Usually a rename (nothing to count); across file systems a copy, which the totals time.
      progress.stage(`moving ${basename(j.set)} into place`, await setTotals(localDriver, claimed));
      // The stage may hold a partial copy from a crash; the claimed set is complete while it exists.
      io("cannot remove", paths.stage, () => rmSync(paths.stage, { recursive: true, force: true }));
      const how = await renameOrCopyTree(claimed, paths.stage, undefined, onProgress);
      if (how === "copied") {
        crashPoint("set-copied");
        removeTreeDurable(claimed);
      }
      ctx.log.info(`${how === "copied" ? "copied" : "moved"} ${j.set} to ${paths.stage}`);
    }
    // A moved set keeps whatever it holds: checked again where nobody else writes (the set was
    // checked before it was taken, but it stayed writable in the slave directory until the move).
    refuseUnplainTree(paths.stage);
  } else if (j.repo === true) {
    // From the block repository: materialized, every block checked against its sha256.
    io("cannot remove", paths.stage, () => rmSync(paths.stage, { recursive: true, force: true }));
    const { openRepo } = await import("../backup/repo.js");
    const { materializeSet } = await import("../../repo/materialize.js");
    const repo = openRepo(ctx);
    progress.stage(`materializing set ${j.set} from ${repo.where}`);
    const got = await materializeSet(repo.driver, repo.layout, j.set, paths.stage, onProgress);
    if (got === undefined)
      throw new WalmgrError(
        `the set ${j.set} is gone from ${repo.where}`,
        ExitCode.NOT_AVAILABLE,
        `remove ${paths.journal} and restore again`,
      );
    ctx.log.info(
      `materialized set ${j.set} (${got.stats.files} files, ${(got.stats.bytes / 1048576).toFixed(1)} MiB) from ${repo.where} into ${paths.stage}`,
    );
  } else if (j.stored) {
    // From an object store: fetched file by file, each checked against the set's manifest.
    io("cannot remove", paths.stage, () => rmSync(paths.stage, { recursive: true, force: true }));
    const raw = await readBytes(driver, posix.join(j.set, BACKUP_MANIFEST));
    const manifest =
      raw === undefined ? undefined : parseManifest(raw.toString("utf8"), posix.join(j.set, BACKUP_MANIFEST));
    progress.stage(`fetching ${basename(j.set)} from ${driver.description}`, await setTotals(driver, j.set));
    const stats = await requireFeature(driver, "tree").getTree?.(j.set, paths.stage, manifest, { onProgress });
    if (stats === undefined) throw new UsageError(`${driver.description} cannot fetch a backup set`);
    fsyncDir(dirname(paths.stage));
    ctx.log.info(
      `fetched ${j.set} (${stats.files} files, ${(stats.bytes / 1048576).toFixed(1)} MiB) from ${driver.description} to ${paths.stage}`,
    );
  } else {
    progress.stage(`copying ${basename(j.set)}`, await setTotals(localDriver, j.set));
    io("cannot remove", paths.stage, () => rmSync(paths.stage, { recursive: true, force: true }));
    // Nothing in the set is followed: a link there is refused, never copied as its target's bytes.
    await copyTree(j.set, paths.stage, () => true, onProgress, "refuse");
    fsyncDir(dirname(paths.stage));
    if (!existsSync(join(j.set, "backup_label")))
      throw new WalmgrError(`the backup set ${j.set} vanished while it was copied`, ExitCode.NOT_AVAILABLE);
    ctx.log.info(`copied ${j.set} to ${paths.stage}`);
  }
  if (!existsSync(join(paths.stage, "backup_label")))
    throw new WalmgrError(`${paths.stage} holds no backup_label: not a complete backup set`, ExitCode.IO);
  const missing = missingFiles(paths.stage);
  if (missing.length > 0) {
    throw new WalmgrError(
      `${paths.stage} (from ${j.set}) lacks files its manifest lists, or holds them with another size: ${missing.slice(0, 5).join(", ")}${missing.length > 5 ? ` and ${missing.length - 5} more` : ""}`,
      ExitCode.IO,
      j.move
        ? `the set is incomplete: remove ${paths.journal} and ${paths.stage}, and restore another set`
        : "the set changed while it was copied (rotated by a backup?): rerun restore to copy it again",
    );
  }
}

/**
 * The start WAL of a pending restore's set before DST is replaced, from the set's backup_label
 * where it is now (claimed, staged, or still listed); undefined when none is there.
 */
function stagedStartWal(paths: RestorePaths, j: RestoreJournal): string | undefined {
  for (const dir of [j.claimed, paths.stage, j.stored ? undefined : j.set]) {
    const start = dir === undefined ? undefined : labelStartWal(dir);
    if (start !== undefined) return start;
  }
  return undefined;
}

/** The start WAL in the backup_label of `dir`, when it has one. */
function labelStartWal(dir: string): string | undefined {
  try {
    const label = readFileSync(join(dir, "backup_label"), "utf8");
    return /START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/.exec(label)?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Refuses a standby restore of `set` whose first WAL segment (`startWal`) is not in
 * completed_wals: the standby could never replay the set to a consistent state. Exit 1 (the WAL
 * is not available), or 9 when a set about to be taken names no start WAL. `when` says how far the restore got:
 * "plan" (nothing changed yet), "resume" (DST not replaced yet), "finish" (DST holds the restored
 * set, not started; the journal stays, so a rerun checks again).
 */
export async function requireStartWal(
  driver: StorageDriver,
  completed: string,
  set: string,
  startWal: string | undefined,
  when: "plan" | "resume" | "finish",
  paths?: RestorePaths,
  j?: RestoreJournal,
): Promise<void> {
  if (startWal === undefined) {
    // A rerun of an older version's restore may not know it: it carries on as it would have.
    if (when !== "plan") return;
    throw new WalmgrError(
      `cannot tell which WAL ${set} needs: neither its .walmgr-backup.json nor its backup_label names a start WAL`,
      ExitCode.IO,
      "check the set with 'wal-ctl CONFIG verify'; restore another set",
    );
  }
  const info = await driver.info(posix.join(completed, startWal));
  if (info !== undefined && !info.isDirectory) return;
  const abandon =
    paths && j
      ? `remove ${paths.journal}${j.pending !== undefined ? ` and ${j.pending}` : ""}${j.claimed !== undefined && existsSync(j.claimed) ? ` (and the claimed set ${j.claimed})` : ""}, take a new backup (wal-backup on the master) and restore that`
      : "take a new backup (wal-backup on the master) and restore that";
  const state =
    when === "plan"
      ? "nothing was changed"
      : when === "resume"
        ? `the restore into ${paths?.dst ?? "?"} stopped before replacing it`
        : `${paths?.dst ?? "?"} holds the restored set but was not started, and the restore stays pending`;
  throw new WalmgrError(
    `the WAL ${basename(set)} needs from ${startWal} on is not in ${completed} (${startWal} is missing): a standby restored from it could never reach a consistent state; ${state}`,
    ExitCode.NOT_AVAILABLE,
    `put ${startWal} and the WAL after it back into ${completed} and rerun the restore, or ${abandon}`,
  );
}

/**
 * Writes the record that keeps the set's WAL while this restore is pending (slavedir/pending-restores.ts),
 * before the set is taken; a record already there (a rerun's) is kept as it is.
 */
async function writePending(ctx: Context, paths: RestorePaths, j: RestoreJournal): Promise<void> {
  const pending = j.pending;
  if (pending === undefined || existsSync(pending)) return;
  const from = j.claimed !== undefined && existsSync(j.claimed) ? j.claimed : j.set;
  const info = await readBackupInfo(localDriver, from).catch(() => undefined);
  // The set as it is now: a backup may have rotated another set to its name since the plan.
  const startWal = (await setStartWal(localDriver, from)) ?? j.startWal;
  if (startWal !== undefined && startWal !== j.startWal) {
    j.startWal = startWal;
    writeJournal(paths, j);
  }
  const record: Partial<PendingRecord> = {
    set: j.set,
    ...(j.claimed !== undefined ? { claimed: j.claimed } : {}),
    // Without it the record cannot be read, and purges remove nothing until it goes.
    ...(startWal !== undefined ? { startWal } : {}),
    dst: j.dst,
    journal: paths.journal,
    ...(typeof info?.label === "string" ? { label: info.label } : {}),
    ...(typeof info?.startTime === "string" ? { startTime: info.startTime } : {}),
    ...(typeof info?.bytes === "number" ? { bytes: info.bytes } : {}),
    host: hostname(),
    pid: process.pid,
    startedAt: j.startedAt,
    command: `wal-ctl ${shellQuote(ctx.config.file)} ${j.command}`,
  };
  writeFileDurable(pending, Buffer.from(`${JSON.stringify(record, null, 2)}\n`), { exclusive: true, mode: 0o644 });
  ctx.log.info(`${pending} keeps the WAL from ${startWal ?? "?"} on while this restore is pending`);
  crashPoint("pending");
}

/**
 * A new restore into DST (no journal there: none is pending) removes the records of earlier
 * restores into the same DST from this host: their journal is gone (removed by the operator to
 * abandon them), so no rerun can ever carry them on, and the WAL they kept is not needed by
 * anyone for them. The restore lock of DST is held, so none of them runs. A set they claimed
 * stays (it holds WAL by itself, see slavedir/pending-restores.ts) for the operator to put back or remove.
 */
export async function dropAbandonedPending(ctx: Context, fullBackup: string, paths: RestorePaths): Promise<void> {
  for (const h of await restoreHolds(localDriver, fullBackup)) {
    const r = h.record;
    if (r === undefined || r.dst !== paths.dst || r.journal !== paths.journal || r.host !== hostname()) continue;
    if (existsSync(paths.journal)) continue;
    ctx.log.warn(
      `${h.path} kept the WAL from ${r.startWal} on for an earlier restore into ${r.dst} (begun ${r.startedAt ?? "?"}), abandoned (its journal ${r.journal} is gone): removed${r.claimed !== undefined && existsSync(r.claimed) ? `; the set it claimed stays at ${r.claimed}` : ""}`,
    );
    removePending(h.path);
  }
}

/** Removes a pending restore's record (done, or never written). */
function removePending(pending: string): void {
  io("cannot remove", pending, () => rmSync(pending, { force: true }));
  fsyncDir(dirname(pending));
}

/**
 * Bytes and files of the set at `set` as its backup recorded them (.walmgr-backup.json: one
 * small read), for the progress line's percentage and time left; undefined when unknown.
 */
async function setTotals(driver: StorageDriver, set: string): Promise<{ bytes: number; files: number } | undefined> {
  try {
    const info = await readBackupInfo(driver, set);
    return typeof info?.bytes === "number" && typeof info.files === "number"
      ? { bytes: info.bytes, files: info.files }
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Files the set's manifest (.walmgr-manifest.json) lists that `dir` lacks or holds with another
 * size: a copy cut short, or a set rotated away while it was copied. Sizes only (cheap); `verify`
 * checks content. A set without a manifest is taken as it is.
 */
function missingFiles(dir: string): string[] {
  const file = join(dir, BACKUP_MANIFEST);
  if (!existsSync(file)) return [];
  let manifest: Manifest;
  try {
    // Checked, not cast: a manifest that does not parse as one is an error, never "nothing missing".
    manifest = parseManifest(readFileSync(file, "utf8"), file);
  } catch (err) {
    if (err instanceof WalmgrError) throw err;
    throw new WalmgrError(`cannot read the manifest ${file}: ${(err as Error).message}`, ExitCode.IO);
  }
  const out: string[] = [];
  for (const [rel, { size }] of Object.entries(manifest.files)) {
    try {
      if (statSync(join(dir, rel)).size !== size) out.push(rel);
    } catch {
      out.push(rel);
    }
  }
  return out;
}

/**
 * Step "prepare": everything the new data directory needs, done in the stage (each part can be
 * redone): mode, tablespaces, pg_wal link, recovery settings, config files, owner.
 */
async function prepare(ctx: Context, paths: RestorePaths, j: RestoreJournal, progress: Progress): Promise<void> {
  const dir = paths.stage;
  io("cannot chmod", dir, () => chmodSync(dir, 0o700));
  await relocateTablespaces(ctx, paths, j, progress);

  // pg_wal as a link to slave_pg_xlog.
  const xlog = ctx.config.path("slave_pg_xlog");
  if (xlog) {
    const walName = walDirName(dir);
    const link = join(dir, walName);
    mkdirPrivate(xlog);
    for (const n of io("cannot list", xlog, () => readdirSync(xlog)))
      io("cannot remove", join(xlog, n), () => rmSync(join(xlog, n), { recursive: true, force: true }));
    io("cannot create directory", xlog, () =>
      mkdirSync(join(xlog, "archive_status"), { mode: 0o700, recursive: true }),
    );
    io("cannot replace", link, () => {
      rmSync(link, { recursive: true, force: true });
      symlinkSync(xlog, link);
    });
    fsyncDir(xlog);
    fsyncDir(dir);
    if (isRoot()) chownTree(xlog, j.owner.uid, j.owner.gid);
    ctx.log.info(`${join(j.dst, walName)} will link to ${xlog}`);
  }

  writeRecoverySettings(ctx, dir, j.target);
  crashPoint("settings");

  // Config files saved from the master.
  const confDir = ctx.config.path("slave_config_dir");
  const confBackup = ctx.config.location("config_backup");
  if (confDir && confBackup && existsSync(confBackup.path)) {
    mkdirPrivate(confDir);
    for (const n of io("cannot list", confBackup.path, () => readdirSync(confBackup.path))) {
      if (n.startsWith(".")) continue;
      const from = join(confBackup.path, n);
      const to = join(confDir, n);
      await storeFile(localDriver, to, from);
      if (isRoot()) io("cannot chown", to, () => chownSync(to, j.owner.uid, j.owner.gid));
    }
    ctx.log.info(`restored config files from ${confBackup.path} to ${confDir}`);
  }

  if (isRoot() && j.owner.uid !== 0) chownTree(dir, j.owner.uid, j.owner.gid);
  // Temp files of writes a killed run did not finish must not end up in the data directory.
  removeStaleTemps(dir);
}

/**
 * Step "swap": the old data directory aside (DST.N, or the trash when backup_datadir = no), the
 * stage renamed to DST. While the stage exists the swap has not happened, so whatever is at DST
 * is the old directory.
 */
function swap(ctx: Context, paths: RestorePaths, j: RestoreJournal): void {
  const parent = dirname(j.dst);
  if (existsSync(paths.stage)) {
    if (existsSync(j.dst) || isSymlink(j.dst)) {
      if (j.old === undefined || (j.old !== paths.trash && (existsSync(j.old) || isSymlink(j.old)))) {
        j.old = j.keepOld && !isEmptyDir(j.dst) ? firstFree(j.dst) : paths.trash;
        writeJournal(paths, j);
      }
      const old = j.old;
      if (old === paths.trash) io("cannot remove", old, () => rmSync(old, { recursive: true, force: true }));
      io(`cannot move ${j.dst} to`, old, () => renameSync(j.dst, old));
      fsyncDir(parent);
      ctx.log.info(
        old === paths.trash ? `the old data directory ${j.dst} goes` : `the old data directory is kept as ${old}`,
      );
      crashPoint("old-aside");
    }
    io(`cannot move ${paths.stage} to`, j.dst, () => renameSync(paths.stage, j.dst));
    fsyncDir(parent);
    crashPoint("swapped");
  } else if (!existsSync(join(j.dst, "backup_label")) && !existsSync(join(j.dst, "PG_VERSION"))) {
    throw new WalmgrError(
      `neither ${paths.stage} nor a restored ${j.dst} exists: the restore cannot be finished`,
      ExitCode.IO,
      `look at ${j.dst}, remove ${paths.journal} and restore again`,
    );
  }
}
