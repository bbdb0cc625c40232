import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  lstatSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  mkdirSync,
} from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, isAbsolute, join, posix, resolve } from "node:path";
import type { Context } from "../../context";
import {
  acquireBackupLock,
  BOOT_END_OF_WAL,
  BOOT_PARTIAL_SERVED,
  releaseBackupLock,
  RESTORE_LOCK_PREFIX,
  STOP,
} from "../../slavedir/control";
import { ExitCode, ioError, isErrno, LockHeldError, UsageError, WalmgrError } from "../../errors";
import { lockBody, releaseLockNow, type LockInfo } from "../../slavedir/lock";
import { testPause } from "../../test-pause";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import { binPath } from "../../paths";
import { pgCommandLine, quoteConfValue } from "../../pg/postgresql-conf";
import { startProgress, type Progress } from "../../progress";
import { dataDirVersion, readPostmaster, waitStopped } from "../../pg/server";
import { walDirName } from "../../pg/wal-dir";
import { tryParseLsn } from "../../wal/names";
import { runConfigured, shellQuote } from "../../shell";
import { restartStandbyRecord } from "../../slavedir/standbys";
import {
  copyTree,
  isSymlink,
  LocalDriver,
  mkdirPrivate,
  refuseUnplainTree,
  removeTreeDurable,
  renameOrCopyTree,
} from "../../storage/local/driver";

import { writeFileDurable, fsyncDir, removeStaleTemps } from "../../storage/durable";
import { storeFile } from "../../storage/files";
import { walkTreeSync } from "../../storage/tree-walk";
import { parseManifest, type Manifest } from "../../storage/manifest";
import { readBytes } from "../../storage/bytes";
import { requireFeature, type StorageDriver } from "../../storage/driver";
import { BACKUP_MANIFEST, listSets, readBackupInfo, setStartWal } from "../../slavedir/backup-sets";
import { pendingPath, restoreHolds, type PendingRecord } from "../../slavedir/pending-restores";
import {
  claimedName,
  crashPoint,
  lockRestore,
  readJournal,
  removeJournal,
  restorePaths,
  writeJournal,
  type RestoreJournal,
  type ClaimedDir,
  type RestorePaths,
} from "./journal";
import { claimDir, dropClaimMarker, newClaimToken, ownsDir } from "./claim";

const localDriver = new LocalDriver();

const MARK_BEGIN = "# --- walmgr-ts restore: recovery settings (begin) ---";
const MARK_END = "# --- walmgr-ts restore: recovery settings (end) ---";

const TARGET_ACTIONS = new Set(["promote", "pause", "shutdown"]);

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A time zone PostgreSQL surely knows: Z/UTC/GMT, a numeric offset, or an IANA name. */
function knownZone(zone: string): boolean {
  if (/^(Z|UTC|GMT)$/i.test(zone)) return true;
  const off = /^[+-](\d{2})(?::?(\d{2}))?$/.exec(zone);
  if (off) return Number(off[1]) <= 15 && Number(off[2] ?? 0) <= 59;
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(zone) || !zone.includes("/")) return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why `value` is not a --target-time PostgreSQL surely accepts (undefined when it is): ISO-like
 * `YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][ ZONE]` with real calendar values. PostgreSQL reads more
 * forms, but a value it rejects is only found when the restored server fails to start.
 */
export function badTargetTime(value: string): string | undefined {
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?)?(?: ?([A-Za-z][A-Za-z0-9_+\-/]*|[+-][0-9:]+))?$/.exec(
      value,
    );
  if (!m) return "expected YYYY-MM-DD HH:MM:SS[.ffffff][ZONE], e.g. '2024-05-01 12:00:00+00'";
  const [, , mon = "", day = "", hh = "0", mm = "0", ss = "0", zone] = m;
  const month = Number(mon);
  if (month < 1 || month > 12) return `no month ${mon}`;
  const year = Number(m[1]);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 && !leap ? 28 : (DAYS_IN_MONTH[month - 1] ?? 31);
  if (Number(day) < 1 || Number(day) > days) return `no day ${day} in ${m[1]}-${mon}`;
  if (Number(hh) > 23 || Number(mm) > 59 || Number(ss) > 60) return "no such time of day";
  if (zone !== undefined && !knownZone(zone))
    return `unknown time zone ${JSON.stringify(zone)} (use Z, UTC, a numeric offset such as +02 or -05:30, or a name such as Europe/Berlin)`;
  return undefined;
}

/** Checks each --target-* value before anything is written: a bad one only shows when the server fails to start. */
function checkTargetValue(opt: string, value: string): void {
  let why: string | undefined;
  switch (opt) {
    case "target-time":
      why = badTargetTime(value);
      break;
    case "target-lsn":
      if (tryParseLsn(value) === undefined) why = "expected an LSN such as 0/3000028";
      break;
    case "target-xid":
      if (!/^[1-9]\d{0,19}$/.test(value) || BigInt(value) >= 2n ** 64n)
        why = "expected a transaction id (a positive integer without leading zeros)";
      break;
    case "target-name":
      if (value === "") why = "it is empty";
      // eslint-disable-next-line no-control-regex
      else if (/[\x00-\x1f\x7f]/.test(value)) why = "it holds a line break or another control character";
      else if (Buffer.byteLength(value) > 63) why = "restore point names are at most 63 bytes";
      break;
  }
  if (why !== undefined) throw new UsageError(`--${opt} ${JSON.stringify(value)} is not valid: ${why}`);
}

/** Recovery target settings from --target-* options, validated; empty when replaying to the end. */
export function recoveryTarget(options: Map<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  const targets: [string, string][] = [
    ["target-time", "recovery_target_time"],
    ["target-lsn", "recovery_target_lsn"],
    ["target-xid", "recovery_target_xid"],
    ["target-name", "recovery_target_name"],
  ];
  for (const [opt, setting] of targets) {
    const v = options.get(opt);
    if (v !== undefined) out[setting] = v;
  }
  if (Object.keys(out).length > 1)
    throw new UsageError("give at most one of --target-time, --target-lsn, --target-xid, --target-name");
  for (const [opt] of targets) {
    const v = options.get(opt);
    if (v !== undefined) checkTargetValue(opt, v);
  }
  const action = options.get("target-action");
  if (action !== undefined) {
    if (!TARGET_ACTIONS.has(action))
      throw new UsageError(`--target-action must be promote, pause or shutdown, not ${JSON.stringify(action)}`);
    if (Object.keys(out).length === 0) throw new UsageError("--target-action needs one of the --target-* options");
  }
  if (options.has("target-exclusive") && Object.keys(out).length === 0) {
    throw new UsageError("--target-exclusive needs one of the --target-* options");
  }
  if (Object.keys(out).length > 0) {
    out.recovery_target_action = action ?? "promote";
    if (options.has("target-exclusive")) out.recovery_target_inclusive = "off";
  }
  return out;
}

/** Replaces our block in postgresql.auto.conf (or appends it), keeping every other line. */
export function withRecoveryBlock(existing: string, settings: Record<string, string>, when: string): string {
  const lines = existing.split("\n");
  const begin = lines.indexOf(MARK_BEGIN);
  const end = lines.indexOf(MARK_END);
  const kept = begin >= 0 && end > begin ? [...lines.slice(0, begin), ...lines.slice(end + 1)] : lines;
  while (kept.length > 0 && kept[kept.length - 1] === "") kept.pop();
  const block = [
    MARK_BEGIN,
    `# written ${when}; the last setting of a name wins, so these override the master's`,
    ...Object.entries(settings).map(([k, v]) => `${k} = ${quoteConfValue(v)}`),
    MARK_END,
  ];
  return `${[...kept, ...block].join("\n")}\n`;
}

/** Runs a file-system call; a failure becomes an I/O error (exit 9) naming the path. */
function io<T>(action: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw ioError(action, path, err);
  }
}

/** Chowns a tree to uid:gid (when running as root on behalf of the postgres user); links are not followed. */
function chownTree(path: string, uid: number, gid: number): void {
  // A link is chowned itself (lchown), never the file it points to: restore's own links point
  // out of the tree (tablespaces, pg_wal), and chown would follow them.
  const fix = (p: string, st: { uid: number; gid: number; isSymbolicLink(): boolean }): void => {
    if (st.uid !== uid || st.gid !== gid)
      io("cannot chown", p, () => (st.isSymbolicLink() ? lchownSync(p, uid, gid) : chownSync(p, uid, gid)));
  };
  const st = io("cannot stat", path, () => lstatSync(path));
  fix(path, st);
  if (st.isDirectory()) walkTreeSync(path, (e) => fix(e.path, e.st), { follow: false, skipVanished: false });
}

const isRoot = (): boolean => process.getuid?.() === 0;

function firstFree(base: string): string {
  for (let i = 0; ; i++) {
    const candidate = `${base}.${i}`;
    if (!existsSync(candidate) && !isSymlink(candidate)) return candidate;
  }
}

function isEmptyDir(path: string): boolean {
  try {
    return statSync(path).isDirectory() && readdirSync(path).length === 0;
  } catch {
    return false;
  }
}

/**
 * Why `dst` may not be replaced by a restore (undefined when it may): it must be missing, an
 * empty directory, or a PostgreSQL data directory (PG_VERSION), and neither a backup set nor a
 * mount point.
 */
export function unfitDestination(dst: string, sets: string[]): string | undefined {
  let st;
  try {
    st = statSync(dst);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw ioError("cannot stat", dst, err);
  }
  if (sets.includes(dst)) return `${dst} is a backup set`;
  if (!st.isDirectory()) return `${dst} is not a directory`;
  // The new directory is renamed into place, and a mount point cannot be renamed or replaced.
  const parent = io("cannot stat", dirname(dst), () => statSync(dirname(dst)));
  if (parent.dev !== st.dev && !isSymlink(dst))
    return `${dst} is a mount point (restore renames data directories): restore into a directory below it`;
  const names = io("cannot list", dst, () => readdirSync(dst));
  if (names.length === 0) return undefined;
  if (!names.includes("PG_VERSION")) return `${dst} is neither empty nor a PostgreSQL data directory (no PG_VERSION)`;
  return undefined;
}

/**
 * The restore_command the restored node runs. %r lets wal-restore clean up after a standby; a
 * point-in-time restore must never do that.
 */
function restoreCommand(ctx: Context, standby: boolean): string {
  // %r lets wal-restore clean up after a standby; a point-in-time restore must never do that.
  return pgCommandLine([binPath("wal-restore"), ctx.config.file], standby ? "%f %p %r" : "%f %p");
}

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
  const named =
    setArg === undefined
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
    move: setArg === undefined && !onMaster && !stored,
    stored,
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
  const src = await findSet(req, sets, fullBackup, layout.driver);
  refuseUnfit(req, sets);
  // A local set is checked before it is taken: only folders and regular files, and a manifest
  // that names only paths inside it (an object store's set is checked as it is fetched).
  if (!req.stored) checkLocalSet(src);
  const startWal = await setStartWal(layout.driver, src);
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
    move: req.move,
    ...(req.move ? { claimed: claimedName(src) } : {}),
    // Beside the sets while the restore is pending: keeps the set's WAL (slavedir/pending-restores.ts).
    ...(req.stored ? {} : { pending: pendingPath(src) }),
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
  const src = await findSet(req, sets, fullBackup, layout.driver);
  const unfit = unfitDestination(req.dst, sets);
  if (unfit !== undefined) throw new WalmgrError(`refusing to restore into ${req.dst}: ${unfit}`, ExitCode.USAGE);
  const pm = readPostmaster(req.dst);
  if (pm) say(`stop the server (pid ${pm.pid}) in ${req.dst} with slave_stop_cmd`);
  say(`${req.move ? "move" : "copy"} ${src} to ${paths.stage}, then write the recovery settings there`);
  if (existsSync(req.dst))
    say(
      ctx.config.bool("backup_datadir")
        ? `keep the old data directory as ${firstFree(req.dst)}`
        : `remove the old data directory ${req.dst}`,
    );
  say(`rename ${paths.stage} to ${req.dst}${req.standbyRestore ? " and start it" : ""}`);
}

/** Runs the journaled steps from the one recorded, advancing the journal after each. */
async function runSteps(
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
async function requireStartWal(
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
async function dropAbandonedPending(ctx: Context, fullBackup: string, paths: RestorePaths): Promise<void> {
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

/** The recovery settings: postgresql.auto.conf and a signal file (12+), or recovery.conf. */
function writeRecoverySettings(ctx: Context, dir: string, target: Record<string, string>): void {
  const version = dataDirVersion(dir) ?? 15;
  const standby = Object.keys(target).length === 0;
  const settings: Record<string, string> = {
    restore_command: restoreCommand(ctx, standby),
    recovery_target_timeline: "latest",
    // The restored node must never archive into the master's archive.
    archive_mode: "off",
    ...target,
  };
  const conninfo = ctx.config.get("primary_conninfo");
  if (conninfo) settings.primary_conninfo = conninfo;
  const when = new Date().toISOString();
  if (version >= 12) {
    const auto = join(dir, "postgresql.auto.conf");
    const existing = existsSync(auto) ? io("cannot read", auto, () => readFileSync(auto, "utf8")) : "";
    writeFileDurable(auto, Buffer.from(withRecoveryBlock(existing, settings, when)));
    writeFileDurable(join(dir, standby ? "standby.signal" : "recovery.signal"), Buffer.alloc(0));
  } else {
    const { archive_mode: _off, ...rec } = settings;
    const lines = [
      `# written by walmgr-ts restore ${when}`,
      ...Object.entries({ ...rec, ...(standby ? { standby_mode: "on" } : {}) }).map(
        ([k, v]) => `${k} = ${quoteConfValue(v)}`,
      ),
    ];
    writeFileDurable(join(dir, "recovery.conf"), Buffer.from(`${lines.join("\n")}\n`));
  }
  ctx.log.info(`recovery settings written (${standby ? "standby" : `point-in-time: ${JSON.stringify(target)}`})`);
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

/**
 * A set holds each tablespace as a folder pg_tblspc/OID and the master's locations in
 * tablespace_map. PostgreSQL would replace those folders with links to the master's paths, so
 * their contents are moved out and linked here instead: to the original path when it is free on
 * this machine (missing or an empty directory, such as a mount point), otherwise beside the
 * data directory (DST_tblspc_OID). Each such directory is claimed when it is chosen (made by this
 * restore, or marked when taken empty: claim.ts) and journaled with its identity, so a
 * second restore never takes it, and a rerun writes only into a directory it made itself:
 * whatever else it finds at a journaled path (another restore's tablespace, say) is left as it
 * is. On another file system the files are copied into place (a mount point itself is kept),
 * then removed from the set. tablespace_map goes last.
 */
async function relocateTablespaces(
  ctx: Context,
  paths: RestorePaths,
  j: RestoreJournal,
  progress: Progress,
): Promise<void> {
  const tblspc = join(paths.stage, "pg_tblspc");
  const mapFile = join(paths.stage, "tablespace_map");
  if (j.token === undefined) {
    j.token = newClaimToken();
    writeJournal(paths, j);
  }
  const token = j.token;
  if (j.tablespaces === undefined) {
    const decided: Record<string, string> = {};
    const dirs: Record<string, ClaimedDir> = {};
    const text = existsSync(mapFile) ? io("cannot read", mapFile, () => readFileSync(mapFile, "utf8")) : "";
    for (const line of text.split("\n")) {
      const m = /^(\d+) (.+)$/.exec(line);
      if (!m) continue;
      const [, oid = "", original = ""] = m;
      const inSet = join(tblspc, oid);
      if (!existsSync(inSet) || isSymlink(inSet)) continue;
      const place = claimTablespaceDir(j, token, oid, original);
      decided[oid] = place.path;
      dirs[oid] = { id: place.id };
    }
    j.tablespaces = decided;
    j.tablespaceDirs = dirs;
    writeJournal(paths, j);
    crashPoint("tablespaces-claimed");
  }
  const dirs = (j.tablespaceDirs ??= {});
  for (const [oid, decidedPath] of Object.entries(j.tablespaces)) {
    const inSet = join(tblspc, oid);
    if (isSymlink(inSet)) continue;
    let where = decidedPath;
    let dir = dirs[oid];
    const inSetNow = existsSync(inSet) ? io("cannot list", inSet, () => readdirSync(inSet)) : undefined;
    if (dir === undefined || !ownsDir(where, dir.id, token, inSetNow === undefined || inSetNow.length === 0)) {
      if (dir?.moving === true) {
        throw new WalmgrError(
          `${where} is not the directory this restore made for tablespace ${oid} any more (removed or replaced while the restore was interrupted), and part of the tablespace's files had been moved there: it is left as it is`,
          ExitCode.IO,
          `look at ${where}; then restore again from the set (remove ${paths.journal} and ${paths.stage} first)`,
        );
      }
      if (inSetNow === undefined) {
        // Journals of older versions: the folder was renamed to `where` whole.
        if (dir !== undefined || !existsSync(where)) {
          throw new WalmgrError(
            `tablespace ${oid} is neither in ${tblspc} nor in the directory this restore made for it at ${where}`,
            ExitCode.IO,
            `restore again from another set (remove ${paths.journal} first)`,
          );
        }
      } else {
        // Nothing of ours is there: our files are all still in the stage. What is there is
        // never emptied or written into; the tablespace goes to a directory claimed now.
        const place = claimTablespaceDir(j, token, oid, where);
        if (place.path !== where)
          ctx.log.warn(
            `${where} is not the directory this restore made for tablespace ${oid} (something else is there now): it is left as it is, and tablespace ${oid} goes to ${place.path}`,
          );
        where = place.path;
        dir = { id: place.id };
        j.tablespaces[oid] = where;
        dirs[oid] = dir;
        writeJournal(paths, j);
      }
    }
    if (inSetNow !== undefined) {
      if (dir !== undefined && !dir.moving && inSetNow.length > 0) {
        dir.moving = true;
        writeJournal(paths, j);
      }
      for (const name of inSetNow) {
        const from = join(inSet, name);
        const to = join(where, name);
        // The directory is ours: what is at `to` is a partial copy a crash left.
        io("cannot remove", to, () => rmSync(to, { recursive: true, force: true }));
        // On another file system a copy: its bytes count on the progress line.
        const how = await renameOrCopyTree(from, to, undefined, (bytes, files) => progress.add(bytes, files));
        if (how === "copied") {
          crashPoint("tablespace-copied");
          removeTreeDurable(from);
        }
      }
      crashPoint("tablespace-moved");
      dropClaimMarker(where, token);
    }
    removeTreeDurable(inSet); // the emptied folder, or a leftover of an interrupted removal
    if (isRoot() && j.owner.uid !== 0) chownTree(where, j.owner.uid, j.owner.gid);
    io("cannot link", inSet, () => symlinkSync(where, inSet));
    fsyncDir(tblspc);
    ctx.log.info(`tablespace ${oid} restored to ${where}`);
    crashPoint("tablespace-linked");
  }
  if (existsSync(mapFile)) {
    io("cannot remove", mapFile, () => rmSync(mapFile));
    fsyncDir(paths.stage);
  }
}

/** How many DST_tblspc_OID.N names a restore tries before it gives up. */
const MAX_TABLESPACE_CANDIDATES = 100;

/**
 * Claims a directory for tablespace `oid`: `first` (its original path, or the one journaled)
 * when it is free, else DST_tblspc_OID, else DST_tblspc_OID.0, .1 … (claim.ts).
 */
function claimTablespaceDir(
  j: RestoreJournal,
  token: string,
  oid: string,
  first: string,
): { path: string; id: string } {
  const base = `${j.dst}_tblspc_${oid}`;
  const candidates = [first, base, ...Array.from({ length: MAX_TABLESPACE_CANDIDATES }, (_, i) => `${base}.${i}`)];
  const about = { restore: j.dst, tablespace: oid, started: j.startedAt };
  for (const path of new Set(candidates)) {
    const id = claimDir(path, token, about);
    if (id !== undefined) return { path, id };
  }
  throw new WalmgrError(
    `no free directory for tablespace ${oid}: ${first}, ${base} and ${base}.0 … .${MAX_TABLESPACE_CANDIDATES - 1} are all taken`,
    ExitCode.IO,
    `free one of them (empty or missing), then run the restore again`,
  );
}
