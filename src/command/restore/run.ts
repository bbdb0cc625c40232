/**
 * The `restore` command: reads the command line, takes the restore lock and BACKUPLOCK, finds and
 * checks the set and the destination (or resumes a pending journal), and hands over to the
 * journaled steps (steps.ts). Split by role beside it: target.ts (--target-* options),
 * recovery-settings.ts, local-fs.ts, tablespaces.ts, journal.ts and claim.ts.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, posix, resolve } from "node:path";
import type { Context } from "../../context";
import { acquireBackupLock, releaseBackupLock, RESTORE_LOCK_PREFIX } from "../../slavedir/control";
import { ExitCode, LockHeldError, UsageError, WalmgrError } from "../../errors";
import { lockBody, releaseLockNow, type LockInfo } from "../../slavedir/lock";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import { startProgress, type Progress } from "../../progress";
import { readPostmaster, waitStopped } from "../../pg/server";
import { runConfigured, shellQuote } from "../../shell";
import { mkdirPrivate, refuseUnplainTree } from "../../storage/local/driver";
import { parseManifest } from "../../storage/manifest";
import type { StorageDriver } from "../../storage/driver";
import { BACKUP_MANIFEST, listSets, setStartWal } from "../../slavedir/backup-sets";
import { pendingPath } from "../../slavedir/pending-restores";
import {
  claimedName,
  crashPoint,
  lockRestore,
  readJournal,
  restorePaths,
  writeJournal,
  type RestoreJournal,
  type RestorePaths,
} from "./journal";
import { io, firstFree, unfitDestination } from "./local-fs";
import { runSteps, requireStartWal, dropAbandonedPending } from "./steps";
import { recoveryTarget } from "./target";

/** What the command line asks for, compared with a pending journal before resuming it. */
interface Request {
  move: boolean;
  /** A named set's path (undefined: the newest, moved). */
  named: string | undefined;
  dst: string;
  target: Record<string, string>;
  standbyRestore: boolean;
  command: string;
  /** The set is in an object store. */
  stored?: boolean;
  /** The set is the block repository's set of this name (`named` is the name too). */
  repo?: string;
}

/** Refuses to resume a pending restore for a command line that asks for something else. */
function checkSameRequest(j: RestoreJournal, req: Request, configFile: string): void {
  const same =
    j.move === req.move &&
    (req.named === undefined || j.set === req.named) &&
    JSON.stringify(j.target) === JSON.stringify(req.target);
  if (!same) {
    throw new UsageError(
      `an interrupted restore into ${req.dst} is pending (wal-ctl CONFIG ${j.command}, next step: ${j.step}); it must be finished first`,
      `rerun it as it was given: wal-ctl ${shellQuote(configFile)} ${j.command}`,
    );
  }
}

/**
 * Stops the server in `dst` (with slave_stop_cmd, when `dst` is slave_data) and makes sure it is
 * down: a stop command may return before the server has stopped. Refuses while one runs.
 */
async function ensureStopped(
  ctx: Context,
  dst: string,
  slaveData: string | undefined,
  timeoutS: number,
  progress: Progress,
): Promise<void> {
  const pm = readPostmaster(dst);
  if (!pm) return;
  const stopCmd = ctx.config.get("slave_stop_cmd");
  if (dst !== slaveData || !stopCmd) {
    throw new WalmgrError(
      `a server (pid ${pm.pid}) is running in ${dst}`,
      ExitCode.USAGE,
      dst === slaveData
        ? "stop it first, or set slave_stop_cmd"
        : "stop it first: restore never replaces a running server's data directory",
    );
  }
  progress.stage("stopping the server");
  runConfigured(ctx, "slave_stop_cmd", stopCmd);
  const still = await waitStopped(dst, timeoutS * 1000);
  if (still) {
    throw new WalmgrError(
      `slave_stop_cmd returned, but the server (pid ${still.pid}) in ${dst} is still running ${timeoutS} s later: ${dst} was left as it is`,
      ExitCode.LOCK_HELD,
      `make slave_stop_cmd wait until the server is down (pg_ctl stop -w), or stop it by hand; --timeout S waits longer`,
    );
  }
  ctx.log.info(`the server in ${dst} has stopped`);
}

/**
 * `restore [SET] [DST]` on the slave: puts a backup set in place (the newest moved when no set
 * is named, a named one copied), keeps or removes the old data directory per backup_datadir,
 * writes the recovery settings and starts the server with slave_start_cmd.
 *
 * It is a journaled sequence (journal.ts): the new data directory is built beside DST
 * under a hidden name and renamed into place only when complete; a rerun after a crash at any
 * point finishes the restore. DST must be missing, empty or a stopped PostgreSQL data directory.
 */
export async function restore(ctx: Context): Promise<void> {
  const onMaster = ctx.config.role === "master";
  const [setArg, dstArg] = ctx.args;
  if (onMaster && dstArg === undefined) {
    throw new UsageError("on the master, restore needs a set and a destination: wal-ctl master.ini restore SET DST");
  }
  const layout = slaveLayout(ctx.config, "restore");
  const full = ctx.config.requireLocation("full_backup", "restore");
  if (full.host !== undefined)
    throw new UsageError("full_backup must be a local directory (or an S3 bucket) to restore from it");
  const stored = full.bucket !== undefined;
  const target = recoveryTarget(ctx.options);
  const timeoutS = Number.parseFloat(ctx.options.get("timeout") ?? "60");
  if (!Number.isFinite(timeoutS) || timeoutS <= 0)
    throw new UsageError("--timeout takes a number of seconds above zero");
  const slaveData = onMaster ? undefined : ctx.config.requirePath("slave_data", "restore");
  const dst = dstArg !== undefined ? resolve(dstArg) : (slaveData ?? "");
  // A set of the block repository: named by its name (a time), or the newest when the
  // repository is the format in use; it is materialized, never moved (nothing is consumed).
  const repo = await repoSetFor(ctx, setArg);
  const named =
    repo !== undefined
      ? repo
      : setArg === undefined
        ? undefined
        : stored
          ? posix.join(posix.dirname(full.path), setArg)
          : isAbsolute(setArg) || setArg.includes("/")
            ? resolve(setArg)
            : join(dirname(full.path), setArg);
  const options = [...ctx.options]
    .filter(([k]) => k.startsWith("target-"))
    .flatMap(([k, v]) => (k === "target-exclusive" ? [`--${k}`] : [`--${k}`, v]));
  const req: Request = {
    // walmgr: the newest set is moved into slave_data (it does not obey retention), a named one copied.
    // From an object store the set is fetched: it stays there (nothing to move it to).
    move: setArg === undefined && !onMaster && !stored && repo === undefined,
    stored,
    ...(repo !== undefined ? { repo } : {}),
    named,
    dst,
    target,
    standbyRestore: dst === slaveData,
    command: ["restore", ...ctx.args, ...options].map(shellQuote).join(" "),
  };
  const paths = restorePaths(dst);

  if (ctx.dryRun) {
    await dryRun(ctx, req, paths, full.path);
    return;
  }
  io("cannot create directory", dirname(dst), () => mkdirPrivate(dirname(dst)));
  let release: () => void;
  try {
    release = lockRestore(paths, (msg) => ctx.log.warn(msg));
  } catch (err) {
    if (err instanceof WalmgrError && err.exitCode === ExitCode.IO)
      throw new WalmgrError(`cannot restore into ${dst}: ${err.message}`, ExitCode.IO, err.hint);
    throw err;
  }
  const unregister = ctx.onCleanup(release);
  // At a terminal a progress line; elsewhere a log line per stage (progress.ts).
  const progress = startProgress("restore", ctx.log, { json: ctx.json });
  let releaseSets: () => Promise<void> = async () => undefined;
  try {
    let j = readJournal(paths);
    if (j) checkSameRequest(j, req, ctx.config.file);
    // Finding, claiming, moving or copying the set happens under BACKUPLOCK: no backup rotates
    // the sets meanwhile (and none starts while this restore takes the set).
    // A destination that is refused anyway is refused before BACKUPLOCK is taken: nothing changes.
    if (j === undefined) refuseUnfit(req, await listSets(layout.driver, full.path));
    if (j === undefined || j.step === "stage") releaseSets = await lockSets(ctx, layout, req);
    if (j) {
      ctx.log.info(`resuming the interrupted restore of ${basename(j.set)} into ${dst} (next step: ${j.step})`);
      // prepare empties slave_pg_xlog, which the old server may use: it must be down first.
      if (j.step === "stage" || j.step === "prepare") await ensureStopped(ctx, dst, slaveData, timeoutS, progress);
    } else {
      j = await plan(ctx, req, paths, full.path, slaveData, timeoutS, progress);
    }
    await runSteps(
      ctx,
      paths,
      j,
      layout.driver,
      layout.completed.path,
      () => ensureStopped(ctx, dst, slaveData, timeoutS, progress),
      progress,
      () => releaseSets(),
    );
  } finally {
    await releaseSets();
    release();
    unregister();
  }
  progress.done();
}

/**
 * Takes BACKUPLOCK (completed_wals/BACKUPLOCK, as a backup does) for the part of a restore that
 * finds and takes the set: held by a backup, the restore is refused (exit 4, naming it) before
 * anything changes. A stale lock of a dead restore is cleared; a dead backup's only with
 * --clear-stale-lock. Returns the release (idempotent; also run on SIGINT/SIGTERM).
 */
async function lockSets(
  ctx: Context,
  layout: ReturnType<typeof slaveLayout>,
  req: Request,
): Promise<() => Promise<void>> {
  const control = controlFilesFor(ctx.config, layout.completed, layout.driver);
  let info: LockInfo;
  try {
    info = await acquireBackupLock(
      control,
      `${RESTORE_LOCK_PREFIX} wal-ctl ${shellQuote(ctx.config.file)} ${req.command} (into ${req.dst})`,
      { breakStale: ctx.options.has("clear-stale-lock"), onStale: (msg) => ctx.log.warn(msg) },
    );
  } catch (err) {
    if (err instanceof LockHeldError) {
      throw new LockHeldError(
        `cannot restore now: ${err.message}; a restore takes its set only while no backup runs (nothing was changed)`,
        err.hint,
      );
    }
    throw err;
  }
  const body = lockBody(info);
  const unregister = ctx.onCleanup(() => releaseLockNow(control.lock.driver, control.lockPath(), body));
  let held = true;
  return async () => {
    if (!held) return;
    held = false;
    await releaseBackupLock(control, info);
    unregister();
  };
}

/** Finds the set, checks DST, stops its server, and records the journal (step "stage"). */
async function plan(
  ctx: Context,
  req: Request,
  paths: RestorePaths,
  fullBackup: string,
  slaveData: string | undefined,
  timeoutS: number,
  progress: Progress,
): Promise<RestoreJournal> {
  const layout = slaveLayout(ctx.config, "restore");
  const sets = await listSets(layout.driver, fullBackup);
  const src = req.repo ?? (await findSet(req, sets, fullBackup, layout.driver));
  refuseUnfit(req, sets);
  // A local set is checked before it is taken: only folders and regular files, and a manifest
  // that names only paths inside it (an object store's set is checked as it is fetched, a
  // repository's block by block as it is materialized).
  if (!req.stored && req.repo === undefined) checkLocalSet(src);
  const startWal =
    req.repo !== undefined ? await repoSetStartWal(ctx, req.repo) : await setStartWal(layout.driver, src);
  // A standby that could never replay the set is refused before anything changes.
  if (req.standbyRestore) await requireStartWal(layout.driver, layout.completed.path, src, startWal, "plan");
  await ensureStopped(ctx, req.dst, slaveData, timeoutS, progress);
  // Owner of the restored tree (matters only when root restores for the postgres user).
  const ownerRef = existsSync(req.dst) ? req.dst : dirname(req.dst);
  const st = io("cannot stat", ownerRef, () => statSync(ownerRef));
  const j: RestoreJournal = {
    version: 1,
    step: "stage",
    command: req.command,
    set: src,
    ...(req.stored ? { stored: true } : {}),
    ...(req.repo !== undefined ? { repo: true } : {}),
    move: req.move,
    ...(req.move ? { claimed: claimedName(src) } : {}),
    // Beside the sets while the restore is pending: keeps the set's WAL (slavedir/pending-restores.ts).
    // A repository's set's record goes beside the plain sets too: the one retention rule reads it there.
    ...(req.stored
      ? {}
      : { pending: pendingPath(req.repo !== undefined ? posix.join(posix.dirname(fullBackup), src) : src) }),
    ...(startWal !== undefined ? { startWal } : {}),
    dst: req.dst,
    target: req.target,
    standbyRestore: req.standbyRestore,
    owner: { uid: st.uid, gid: st.gid },
    keepOld: ctx.config.bool("backup_datadir"),
    startedAt: new Date().toISOString(),
  };
  if (!req.stored) await dropAbandonedPending(ctx, fullBackup, paths);
  writeJournal(paths, j);
  crashPoint("journal");
  return j;
}

/**
 * Refuses (exit 9, nothing changed) a local set that holds anything but folders and regular
 * files (a link planted to make the restore read or write outside its target), or whose
 * manifest cannot be read or names a path outside the set.
 */
function checkLocalSet(set: string): void {
  refuseUnplainTree(set);
  const file = join(set, BACKUP_MANIFEST);
  if (existsSync(file))
    parseManifest(
      io("cannot read", file, () => readFileSync(file, "utf8")),
      file,
    );
}

/** Refuses (exit 2) a DST restore may not replace (unfitDestination). */
function refuseUnfit(req: Request, sets: string[]): void {
  const unfit = unfitDestination(req.dst, sets);
  if (unfit !== undefined) {
    throw new WalmgrError(
      `refusing to restore into ${req.dst}: ${unfit}`,
      ExitCode.USAGE,
      "restore replaces only a (stopped) PostgreSQL data directory, or fills an empty or new one: name another DST",
    );
  }
}

async function findSet(req: Request, sets: string[], fullBackup: string, driver: StorageDriver): Promise<string> {
  if (req.named === undefined) {
    const newest = sets[0];
    if (newest === undefined) {
      throw new WalmgrError(
        `no backup set in ${dirname(fullBackup)}`,
        ExitCode.NOT_AVAILABLE,
        "take one with `wal-backup master.ini`",
      );
    }
    return newest;
  }
  const labelled = req.stored
    ? (await driver.info(posix.join(req.named, "backup_label"))) !== undefined
    : existsSync(join(req.named, "backup_label"));
  if (!labelled) {
    throw new WalmgrError(
      `${req.named} is not a backup set (no backup_label)`,
      ExitCode.NOT_AVAILABLE,
      `sets: ${sets.map((s) => basename(s)).join(", ") || "none"}`,
    );
  }
  return req.named;
}

/** -n: says what a restore would do, changing nothing. */
async function dryRun(ctx: Context, req: Request, paths: RestorePaths, fullBackup: string): Promise<void> {
  const say = (what: string): void => ctx.out(`[not really] ${what}`);
  const j = readJournal(paths);
  if (j) {
    checkSameRequest(j, req, ctx.config.file);
    say(`resume the interrupted restore of ${j.set} into ${req.dst} at step ${j.step}`);
    return;
  }
  const layout = slaveLayout(ctx.config, "restore");
  const sets = await listSets(layout.driver, fullBackup);
  const src = req.repo ?? (await findSet(req, sets, fullBackup, layout.driver));
  const unfit = unfitDestination(req.dst, sets);
  if (unfit !== undefined) throw new WalmgrError(`refusing to restore into ${req.dst}: ${unfit}`, ExitCode.USAGE);
  const pm = readPostmaster(req.dst);
  if (pm) say(`stop the server (pid ${pm.pid}) in ${req.dst} with slave_stop_cmd`);
  say(
    `${req.repo !== undefined ? `materialize the block repository's set ${src} into` : `${req.move ? "move" : "copy"} ${src} to`} ${paths.stage}, then write the recovery settings there`,
  );
  if (existsSync(req.dst))
    say(
      ctx.config.bool("backup_datadir")
        ? `keep the old data directory as ${firstFree(req.dst)}`
        : `remove the old data directory ${req.dst}`,
    );
  say(`rename ${paths.stage} to ${req.dst}${req.standbyRestore ? " and start it" : ""}`);
}

/**
 * The block repository's set a restore takes: `setArg` when it names one of its sets, the newest
 * when no set is named and backup_format is repo; undefined otherwise (a plain set). Exit 1 when
 * the repository format is in use and holds no set, or a set name of its kind is not there.
 */
async function repoSetFor(ctx: Context, setArg: string | undefined): Promise<string | undefined> {
  const { REPO_SET_NAME, listRepoSets } = await import("../../repo/sets.js");
  const byName = setArg !== undefined && REPO_SET_NAME.test(setArg);
  if (!byName && (setArg !== undefined || ctx.config.choice("backup_format") !== "repo")) return undefined;
  const { openRepo } = await import("../backup/repo.js");
  const { driver, layout, where } = openRepo(ctx);
  const sets = await listRepoSets(driver, layout);
  if (setArg === undefined) {
    const newest = sets[sets.length - 1];
    if (newest === undefined)
      throw new WalmgrError(
        `no backup set in the block repository ${where}`,
        ExitCode.NOT_AVAILABLE,
        "take one with `wal-backup CONFIG`",
      );
    return newest;
  }
  if (!sets.includes(setArg))
    throw new WalmgrError(
      `${setArg} is not a set of the block repository ${where}`,
      ExitCode.NOT_AVAILABLE,
      `sets: ${sets.join(", ") || "none"}`,
    );
  return setArg;
}

/** The first WAL segment the repository's set `name` needs (its manifest's end line). */
async function repoSetStartWal(ctx: Context, name: string): Promise<string | undefined> {
  const { openRepo } = await import("../backup/repo.js");
  const { repoSetInfo } = await import("../../repo/sets.js");
  const { driver, layout } = openRepo(ctx);
  const wal = (await repoSetInfo(driver, layout, name))?.startWal;
  return typeof wal === "string" ? wal : undefined;
}
