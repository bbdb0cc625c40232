import {
  chmodSync,
  chownSync,
  closeSync,
  copyFileSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, posix } from "node:path";
import type { Context } from "../../context";
import { ArchiveConflictError, ConfigError, DatabaseError, ioError, isErrno } from "../../errors";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import { formatLocation, isLocal } from "../../config/load";
import { archiveRepositories } from "../archive/repositories";
import { binPath } from "../../paths";
import { connectMaster, type Db } from "../../pg/client";
import {
  commentOutSettings,
  getConfValue,
  pgCommandLine,
  setConfValues,
  type ConfEdit,
} from "../../pg/postgresql-conf";
import { readPostmaster } from "../../pg/server";
import { processAlive } from "../../proc";
import { removeStaleTemps, writeAll, writeFileDurable } from "../../storage/durable";
import { runConfigured } from "../../shell";
import { parseLsn, parseWalName, segmentName, segmentNumber } from "../../wal/names";
import { holdsOwnWal, PAGE_ADDRESS_END } from "../../wal/page";
import { walDirOf } from "../../pg/wal-dir";
import { archivePush } from "../archive/push";
import { ACK_DIR } from "../archive/acks";

/** Creates the slave directory layout (completed_wals, partial_wals, config_backup, full_backup's parent). */
export async function createLayout(ctx: Context): Promise<void> {
  const layout = slaveLayout(ctx.config, "setup");
  const dirs = [layout.completed, layout.partial, layout.configBackup].filter((l) => l !== undefined);
  for (const loc of dirs) {
    const st = await layout.driver.info(loc.path);
    if (st?.isDirectory) continue;
    await ctx.act(`create directory ${formatLocation(loc)}`, () => layout.driver.pathCreate(loc.path));
    if (!ctx.dryRun) ctx.log.info(`created ${formatLocation(loc)}`);
  }
  // The master's further repositories (also_archive_to) need their logs.complete too.
  if (ctx.config.role === "master") {
    for (const r of archiveRepositories(ctx.config).slice(1)) {
      if ((await r.archive.driver.info(r.loc.path))?.isDirectory) continue;
      await ctx.act(`create directory ${formatLocation(r.loc)}`, () => r.archive.driver.pathCreate(r.loc.path));
      if (!ctx.dryRun) ctx.log.info(`created ${formatLocation(r.loc)} (${r.name})`);
    }
  }
  if (!ctx.dryRun && layout.completed.bucket !== undefined) {
    // PAUSE and STOP of an object-store slave directory live on this machine.
    const control = controlFilesFor(ctx.config, layout.completed, layout.driver);
    await ctx.act(`create directory ${control.dir}`, () => control.driver.pathCreate(control.dir));
  }
  if (!ctx.dryRun && isLocal(layout.completed)) removeStaleTemps(layout.completed.path);
}

async function tryConnect(ctx: Context): Promise<Db | undefined> {
  if (!ctx.config.has("master_db")) return undefined;
  try {
    return await connectMaster(ctx.config, "setup");
  } catch (err) {
    ctx.log.warn(`${(err as Error).message}; deciding restart/reload from the file alone`);
    return undefined;
  }
}

/**
 * Rewrites master_config with `values` after saving a copy; returns what changed. Keeps the
 * file's mode and owner. Writes nothing (and saves no copy) when nothing changes.
 */
async function editMasterConfig(
  ctx: Context,
  file: string,
  text: string,
  values: Record<string, string>,
  marker: string,
): Promise<ConfEdit> {
  const edit = setConfValues(text, values, marker);
  if (edit.changed.length === 0) return edit;
  for (const c of edit.changed) {
    const msg = `${file}: ${c.key} = '${c.to}' (was ${c.from === undefined ? "unset" : `'${c.from}'`})`;
    if (ctx.dryRun) ctx.out(`[not really] ${msg}`);
    else ctx.log.info(msg);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const copy = `${file}.${stamp}.walmgr-ts.bak`;
  await ctx.act(`save a copy of ${file} as ${copy}`, () => {
    try {
      const st = statSync(file);
      copyFileSync(file, copy);
      chmodSync(copy, st.mode & 0o777);
      if (process.getuid?.() === 0) chownSync(copy, st.uid, st.gid);
    } catch (err) {
      throw ioError(`cannot save a copy of ${file} as`, copy, err);
    }
  });
  await ctx.act(`write ${file}`, () => rewriteKeepingOwner(file, edit.text));
  return edit;
}

/** Replaces a server config file durably, keeping its mode and (as root) its owner. */
function rewriteKeepingOwner(file: string, text: string): void {
  try {
    const st = statSync(file);
    writeFileDurable(file, Buffer.from(text), { mode: st.mode & 0o777 });
    chmodSync(file, st.mode & 0o777);
    if (process.getuid?.() === 0) chownSync(file, st.uid, st.gid);
  } catch (err) {
    throw ioError("cannot write", file, err);
  }
}

/** What `setup` or `stop` wants the running master to do, and how to tell that it does. */
interface ArchiveSpec {
  command: "setup" | "stop";
  /** Written into master_config, given its text, the connection and the running values (when connected). */
  values: (
    masterConfig: string,
    db: Db | undefined,
    running: Map<string, RunningSetting> | undefined,
  ) => Record<string, string>;
  /** Per setting checked in the files and with SHOW: is this value right? */
  accept: Record<string, (value: string) => boolean>;
  /** What the settings achieve, for messages. */
  goal: string;
  marker: string;
}

/** Settings that take effect only when the server restarts. */
const RESTART_KEYS = new Set(["archive_mode", "wal_level"]);

function isOn(v: string): boolean {
  return ["on", "always", "true", "yes", "1"].includes(v.trim().toLowerCase());
}

function isOff(v: string): boolean {
  return ["off", "false", "no", "0"].includes(v.trim().toLowerCase());
}

interface RunningSetting {
  setting: string;
  /** `file:line` it came from (visible to superusers and pg_read_all_settings only). */
  source: string | undefined;
}

/** The running server's values of `keys` (SHOW), with the file and line each came from. */
async function readRunning(db: Db, keys: string[]): Promise<Map<string, RunningSetting>> {
  const rows = await db.query<{ name: string; setting: string; sourcefile: string | null; sourceline: number | null }>(
    "SELECT name, setting, sourcefile, sourceline FROM pg_settings WHERE name = ANY($1::text[])",
    [keys],
  );
  return new Map(
    rows.map((r) => [
      r.name,
      { setting: r.setting, source: r.sourcefile ? `${r.sourcefile}:${r.sourceline ?? "?"}` : undefined },
    ]),
  );
}

async function dataDirectory(ctx: Context, db: Db | undefined): Promise<string | undefined> {
  const configured = ctx.config.path("master_data");
  if (configured) return configured;
  if (!db) return undefined;
  try {
    return (await db.one<{ d: string }>("SELECT current_setting('data_directory') AS d")).d;
  } catch {
    return undefined; // not a superuser: no way to find postgresql.auto.conf but master_data
  }
}

/**
 * postgresql.auto.conf is read after postgresql.conf, so a setting there wins over master_config:
 * `restore` writes `archive_mode = 'off'` into it (a standby must not archive into its master's
 * archive), and ALTER SYSTEM writes there too. Removes every such override of a managed setting
 * whose value is not the wanted one (ALTER SYSTEM RESET; editing the file when there is no
 * connection or ALTER SYSTEM is refused), so that master_config's value applies. Says which.
 */
async function removeAutoOverrides(
  ctx: Context,
  db: Db | undefined,
  dataDir: string | undefined,
  spec: ArchiveSpec,
): Promise<string[]> {
  if (!dataDir) {
    ctx.log.debug("master_data is not set: postgresql.auto.conf not checked (the running values still are)");
    return [];
  }
  const auto = join(dataDir, "postgresql.auto.conf");
  let text: string;
  try {
    text = readFileSync(auto, "utf8");
  } catch (err) {
    if (!isErrno(err, "ENOENT")) {
      ctx.log.warn(`cannot read ${auto} (${(err as Error).message}): settings there would override master_config`);
    }
    return [];
  }
  const keys = Object.keys(spec.accept).filter((k) => {
    const v = getConfValue(text, k);
    if (v === undefined || spec.accept[k]?.(v) === true) return false;
    const msg = `${auto} sets ${k} = '${v}', which overrides master_config (postgresql.auto.conf is read last; restore writes archive_mode = 'off' there so that a standby does not archive)`;
    if (ctx.dryRun) ctx.out(`[not really] ${msg}`);
    else ctx.log.info(msg);
    return true;
  });
  if (keys.length === 0) return [];
  if (db) {
    try {
      // The names come from our own table, never from input.
      for (const k of keys) await ctx.act(`ALTER SYSTEM RESET ${k}`, () => db.query(`ALTER SYSTEM RESET ${k}`));
      if (!ctx.dryRun)
        ctx.log.info(`removed ${keys.join(", ")} from ${auto} with ALTER SYSTEM RESET: master_config's values apply`);
      return keys;
    } catch (err) {
      ctx.log.warn(`ALTER SYSTEM RESET failed (${(err as Error).message}): editing ${auto} instead`);
    }
  }
  const edit = commentOutSettings(text, keys, `commented out by walmgr-ts ${spec.command}: it overrode master_config`);
  await ctx.act(`comment out ${keys.join(", ")} in ${auto}`, () => rewriteKeepingOwner(auto, edit.text));
  if (!ctx.dryRun)
    ctx.log.info(`commented out ${keys.join(", ")} in ${auto} (edited the file): master_config's values apply`);
  return keys;
}

/**
 * Checks, before anything is applied, which file the server would take each managed setting
 * from (pg_file_settings: the last assignment of a name wins). An included file, or a config
 * file other than master_config, that would keep a wrong value is a config error naming its
 * file and line: the edit of master_config would not take effect. Needs superuser (or
 * pg_read_all_settings); without it the check of the running values after applying remains.
 */
async function checkFileSettings(ctx: Context, db: Db, spec: ArchiveSpec, masterConfig: string): Promise<void> {
  const keys = Object.keys(spec.accept);
  let rows: { name: string; setting: string | null; sourcefile: string; sourceline: number }[];
  let defaults: { name: string; boot_val: string | null }[];
  try {
    rows = await db.query(
      "SELECT name, setting, sourcefile, sourceline FROM pg_file_settings WHERE name = ANY($1::text[]) ORDER BY seqno",
      [keys],
    );
    defaults = await db.query("SELECT name, boot_val FROM pg_settings WHERE name = ANY($1::text[])", [keys]);
  } catch (err) {
    ctx.log.debug(`cannot read pg_file_settings (${(err as Error).message}): checking the running values afterwards`);
    return;
  }
  const last = new Map(rows.map((r) => [r.name, r]));
  for (const key of keys) {
    const winner = last.get(key);
    const value = winner ? (winner.setting ?? "") : (defaults.find((d) => d.name === key)?.boot_val ?? "");
    if (spec.accept[key]?.(value) === true) continue;
    if (!winner) {
      throw new ConfigError(
        `no configuration file the server reads sets ${key} (it would keep its default '${value}'): master_config ${masterConfig} is not read by the server`,
        `point master_config in ${ctx.config.file} at the server's config file (SHOW config_file), then run ${spec.command} again`,
      );
    }
    throw new ConfigError(
      `${winner.sourcefile}:${winner.sourceline} sets ${key} = '${value}' and is read after master_config ${masterConfig}, so ${spec.goal} would not take effect`,
      `change or remove that line (PostgreSQL applies the last setting of a name), or point master_config at that file; then run ${spec.command} again`,
    );
  }
}

/**
 * A node that did not archive (a booted standby: `restore` turned archiving off) holds WAL that
 * is in no archive: the .history file of its timeline (PostgreSQL archives it only at the
 * promotion itself) and the segments it completed since. The restart that turns archiving on
 * would recycle those segments, and a standby restored from an older backup set could never
 * follow the new timeline: copy them into completed_wals first (an identical copy is fine; a
 * different .history there means another node made the same timeline: refused, exit 8).
 */
async function archiveMissedWal(ctx: Context, db: Db | undefined, dataDir: string): Promise<void> {
  const walDir = walDirOf(dataDir);
  let names: string[];
  try {
    names = readdirSync(walDir);
  } catch (err) {
    ctx.log.warn(`cannot list ${walDir} (${(err as Error).message}): .history files not checked`);
    return;
  }
  const archived = (n: string): boolean => existsSync(join(walDir, "archive_status", `${n}.done`));
  const history = names.filter((n) => parseWalName(n)?.kind === "history" && !archived(n)).sort();
  let segments: string[] = [];
  if (db && !(await db.one<{ r: boolean }>("SELECT pg_is_in_recovery() AS r")).r) {
    const fn =
      db.serverVersion >= 100000
        ? "pg_walfile_name(pg_current_wal_lsn())"
        : "pg_xlogfile_name(pg_current_xlog_location())";
    const current = (await db.one<{ f: string }>(`SELECT ${fn} AS f`)).f;
    const tli = current.slice(0, 8);
    // On timeline 1 nothing older than the first backup taken after setup is needed.
    if (tli !== "00000001") {
      segments = names
        .filter((n) => parseWalName(n)?.kind === "segment" && n.startsWith(tli) && n < current && !archived(n))
        .sort();
      await warnGoneSinceSwitch(ctx, segmentsGoneSinceSwitch(walDir, current, names));
    }
  }
  if (history.length + segments.length === 0) return;
  const what = `${[...history, ...segments].join(", ")} from ${walDir}, written while this server did not archive`;
  if (ctx.dryRun) {
    ctx.out(`[not really] archive ${what}`);
    return;
  }
  ctx.log.info(`archiving ${what} (a restart would recycle the segments)`);
  for (const n of history) {
    try {
      await archivePush(ctx, join(walDir, n), n);
    } catch (err) {
      if (!(err instanceof ArchiveConflictError)) throw err;
      throw new ArchiveConflictError(
        `${n} in completed_wals differs from this server's: another server already made timeline ${Number.parseInt(n.slice(0, 8), 16)} in this slave directory (were two standbys booted?)`,
        `never archive two masters into one slave directory: give ${ctx.config.file} its own slave directory, run setup again, and take a new backup`,
      );
    }
  }
  removeDeadSetupTemps();
  const tmp = mkdtempSync(join(tmpdir(), `${SETUP_TMP_PREFIX}${process.pid}-`));
  try {
    for (const n of segments) await archiveSegmentCopy(ctx, join(walDir, n), join(tmp, n));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The segments of the current timeline, from its switch point (the last line of its .history
 * file in `walDir`) up to before `current`, that `names` (the listing of `walDir`) lacks: WAL the
 * node wrote after its promotion and recycled while it did not archive. Empty when there is no
 * .history file for the timeline.
 */
export function segmentsGoneSinceSwitch(walDir: string, current: string, names: string[]): string[] {
  const tli = Number.parseInt(current.slice(0, 8), 16);
  let text: string;
  let size: number;
  try {
    text = readFileSync(join(walDir, `${current.slice(0, 8)}.history`), "utf8");
    size = statSync(join(walDir, current)).size;
  } catch {
    return [];
  }
  const entries = text.split("\n").filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  const switchLsn = entries[entries.length - 1]?.trim().split(/\s+/)[1];
  if (switchLsn === undefined) return [];
  let first: bigint;
  try {
    first = parseLsn(switchLsn) / BigInt(size);
  } catch {
    return [];
  }
  const have = new Set(names);
  const gone: string[] = [];
  for (let n = first; n < segmentNumber(current, size); n++) {
    const name = segmentName(tli, n, size);
    if (!have.has(name)) gone.push(name);
  }
  return gone;
}

/** Warns (loudly: a set taken before the failover cannot follow) about new-timeline WAL in no archive. */
async function warnGoneSinceSwitch(ctx: Context, gone: string[]): Promise<void> {
  if (gone.length === 0) return;
  const layout = slaveLayout(ctx.config, "setup");
  const lost: string[] = [];
  for (const n of gone) {
    if ((await layout.driver.info(posix.join(layout.completed.path, n))) === undefined) lost.push(n);
  }
  if (lost.length === 0) return;
  const list = lost.length > 3 ? `${lost[0]} … ${lost[lost.length - 1]}` : lost.join(", ");
  ctx.log.warn(
    `${lost.length} segment(s) this server wrote after its promotion (${list}) were recycled before archiving was on and are in no archive: a standby restored from a set taken before the failover cannot follow this timeline; take a new backup now (wal-backup ${ctx.config.file})`,
  );
}

const SETUP_TMP_PREFIX = "walmgr-setup-";

/** Removes the temp folders of setups that died (kill -9) while copying a segment: up to 16 MB each. */
function removeDeadSetupTemps(): void {
  const uid = process.getuid?.();
  try {
    for (const n of readdirSync(tmpdir())) {
      const m = new RegExp(`^${SETUP_TMP_PREFIX}(\\d+)-`).exec(n);
      if (!m || processAlive(Number(m[1]))) continue;
      const path = join(tmpdir(), n);
      if (uid === undefined || statSync(path).uid === uid) rmSync(path, { recursive: true, force: true });
    }
  } catch {
    // best effort: a leftover costs space, not correctness
  }
}

/**
 * Archives a completed segment of a server that does not archive yet: a checkpoint may recycle
 * (rename and reuse) it at any moment, so it is copied to `tmp` first and archived only when
 * its first page still holds its own WAL address after the copy (WAL is written from the start
 * of a segment, so an unchanged first page means no page was reused while it was copied).
 */
async function archiveSegmentCopy(ctx: Context, src: string, tmp: string): Promise<void> {
  const name = basename(src);
  let fd: number;
  try {
    fd = openSync(src, "r");
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw ioError("cannot open", src, err);
    ctx.log.warn(`${src} was recycled before it could be archived: a standby from an older backup cannot follow`);
    return;
  }
  try {
    const size = fstatSync(fd).size;
    const expected = segmentNumber(name, size) * BigInt(size);
    const holdsItsWal = (): boolean => {
      const head = Buffer.alloc(PAGE_ADDRESS_END);
      return readSync(fd, head, 0, head.length, 0) === head.length && holdsOwnWal(head, expected);
    };
    const recycled = `${src} was recycled before it could be archived: a standby from an older backup cannot follow`;
    if (!holdsItsWal()) return ctx.log.warn(recycled);
    const out = openSync(tmp, "wx", 0o600);
    try {
      const buf = Buffer.alloc(1024 * 1024);
      for (let pos = 0; ;) {
        const n = readSync(fd, buf, 0, buf.length, pos);
        if (n === 0) break;
        writeAll(out, buf.subarray(0, n));
        pos += n;
      }
    } finally {
      closeSync(out);
    }
    if (!holdsItsWal()) return ctx.log.warn(recycled);
    await archivePush(ctx, tmp, name);
  } finally {
    closeSync(fd);
    rmSync(tmp, { force: true });
  }
}

/** Connects for the check after a restart: master_restart_cmd may return before connections are accepted. */
async function reconnect(ctx: Context): Promise<Db> {
  const deadline = Date.now() + RECONNECT_WAIT_MS;
  for (;;) {
    try {
      return await connectMaster(ctx.config, "setup");
    } catch (err) {
      if (Date.now() > deadline) {
        throw new DatabaseError(
          `cannot connect to the master after restarting it, to check that it runs with the new settings: ${(err as Error).message}`,
          "check the server's log; run the command again once it is up",
        );
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

const RECONNECT_WAIT_MS = 60_000;
/** A reload is asynchronous: how long the running values may take to follow it. */
const RELOAD_WAIT_MS = 10_000;

/**
 * Makes the running master use `spec`'s settings: edits master_config, removes overrides in
 * postgresql.auto.conf, refuses other files that override them, archives WAL a restart would
 * lose (setup), restarts or reloads as needed, and then checks the running values with SHOW.
 * Returns false when a restart is still needed (no master_restart_cmd) or nothing could be checked.
 */
async function applyArchiveSettings(ctx: Context, spec: ArchiveSpec): Promise<boolean> {
  const file = ctx.config.requirePath("master_config", spec.command);
  const keys = Object.keys(spec.accept);
  let db = await tryConnect(ctx);
  try {
    const before = db ? await readRunning(db, [...new Set([...keys, "wal_level"])]) : undefined;
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch (err) {
      throw ioError("cannot read master_config", file, err);
    }
    const edit = await editMasterConfig(ctx, file, text, spec.values(text, db, before), spec.marker);
    const dataDir = await dataDirectory(ctx, db);
    const autoKeys = await removeAutoOverrides(ctx, db, dataDir, spec);
    if (db && !ctx.dryRun) await checkFileSettings(ctx, db, spec, file);
    const changed = [...edit.changed.map((c) => c.key), ...autoKeys];
    if (spec.command === "setup" && dataDir && (!before || !isOn(before.get("archive_mode")?.setting ?? "off"))) {
      await archiveMissedWal(ctx, db, dataDir);
    }

    const wrong = before ? keys.filter((k) => spec.accept[k]?.(before.get(k)?.setting ?? "") !== true) : changed;
    const needRestart = wrong.some((k) => RESTART_KEYS.has(k));
    if (!needRestart && wrong.length === 0 && changed.length === 0) {
      ctx.log.info(
        before
          ? `nothing to change: ${file} and the running master (SHOW ${keys.join(", ")}) are already set for ${spec.goal}`
          : `nothing to change in ${file} (the running master was not checked: no connection)`,
      );
      return before !== undefined;
    }
    const restartCmd = ctx.config.get("master_restart_cmd");
    // A master that is not running needs no restart: it starts with the file's settings. Running
    // master_restart_cmd there would start it (pg_ctl restart says "trying to start server
    // anyway"), and after a failover an old master started beside the promoted standby takes
    // writes that are then lost. Unknown (no connection, no master_data to look in) counts as
    // not running: the operator restarts it, told so.
    const running = db !== undefined || (dataDir !== undefined && readPostmaster(dataDir) !== undefined);
    if (!running) {
      ctx.log.warn(
        dataDir !== undefined
          ? `the master is not running (no postmaster in ${dataDir}): ${file} now has the settings for ${spec.goal}, which apply when it is next started; nothing was restarted or reloaded`
          : `cannot tell whether the master runs (no connection to master_db, master_data not set): nothing was restarted or reloaded; if it runs, restart it yourself for ${spec.goal}`,
      );
      return false;
    }
    let restarted = false;
    if (needRestart && restartCmd) {
      await db?.close();
      db = undefined;
      await ctx.act(`restart the master with master_restart_cmd: ${restartCmd}`, () =>
        runConfigured(ctx, "master_restart_cmd", restartCmd),
      );
      restarted = true;
    } else {
      if (needRestart) {
        ctx.log.warn(
          `the master must be restarted for ${wrong.filter((k) => RESTART_KEYS.has(k)).join(", ")} to take effect, and master_restart_cmd is not set: restart it by hand`,
        );
      }
      await reload(ctx, db);
    }
    if (ctx.dryRun) return true;
    if (!before) {
      ctx.log.warn(
        `could not check the running server's settings (${ctx.config.has("master_db") ? "no connection to master_db" : "master_db is not set"}): check SHOW ${keys.join(", ")} yourself`,
      );
      return false;
    }
    db = restarted ? await reconnect(ctx) : db;
    if (!db) return false;
    const checked = keys.filter((k) => restarted || !RESTART_KEYS.has(k) || !wrong.includes(k));
    // After a restart the values are final; a reload reaches this session a little later.
    const deadline = Date.now() + (restarted ? 0 : RELOAD_WAIT_MS);
    for (;;) {
      const now = await readRunning(db, keys);
      const bad = checked.filter((k) => spec.accept[k]?.(now.get(k)?.setting ?? "") !== true);
      if (bad.length === 0) break;
      if (Date.now() > deadline) {
        const what = bad
          .map(
            (k) => `${k} = '${now.get(k)?.setting ?? ""}'${now.get(k)?.source ? ` (from ${now.get(k)?.source})` : ""}`,
          )
          .join(", ");
        throw new DatabaseError(
          `after ${restarted ? "restarting" : "reloading"} the master it runs with ${what}, so ${spec.goal} did not take effect`,
          `a file read after master_config ${file} (postgresql.auto.conf, an include) or a command-line option (-c) overrides it: remove that, then run ${spec.command} again`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    return restarted || !needRestart;
  } finally {
    await db?.close();
  }
}

/** Reloads the master's configuration: pg_reload_conf(), or SIGHUP to its postmaster. */
async function reload(ctx: Context, db: Db | undefined): Promise<void> {
  if (db) {
    await ctx.act("reload the master's configuration (pg_reload_conf())", () => db.query("SELECT pg_reload_conf()"));
    return;
  }
  const data = ctx.config.path("master_data");
  const pm = data ? readPostmaster(data) : undefined;
  if (pm) {
    await ctx.act(`reload the master (SIGHUP to postmaster ${pm.pid})`, () => process.kill(pm.pid, "SIGHUP"));
  } else {
    ctx.log.warn(
      "could not reload the master (no master_db connection, no running postmaster in master_data): reload it by hand",
    );
  }
}

/**
 * `setup`: on the master, enable archiving into the slave directory and check with SHOW that the
 * running server archives (exit 7 when it does not, 3 when another config file overrides
 * master_config); on the slave, create the layout.
 */
export async function setup(ctx: Context): Promise<void> {
  await createLayout(ctx);
  if (ctx.config.role === "slave") return;
  const archiveCommand = pgCommandLine([binPath("wal-archive"), ctx.config.file], "%p %f");
  const active = await applyArchiveSettings(ctx, {
    command: "setup",
    values: (masterConfig, db, running) => {
      const values: Record<string, string> = { archive_mode: "on", archive_command: archiveCommand };
      // wal_level is raised only from minimal (or pre-9.6 'archive'); replica and logical are kept.
      const level = running ? running.get("wal_level")?.setting : getConfValue(masterConfig, "wal_level");
      if (level === "minimal" || level === "archive" || getConfValue(masterConfig, "wal_level") === "minimal") {
        values.wal_level =
          db && db.serverVersion < 90600 ? (ctx.config.bool("hot_standby") ? "hot_standby" : "archive") : "replica";
      }
      return values;
    },
    accept: {
      archive_mode: isOn,
      archive_command: (v) => v === archiveCommand,
      wal_level: (v) => v.trim().toLowerCase() !== "minimal",
    },
    goal: "archiving into the slave directory",
    marker: "set by walmgr-ts setup",
  });
  if (ctx.dryRun) return;
  if (active) ctx.log.info(`archiving is set up and running (checked with SHOW): archive_command = ${archiveCommand}`);
  else ctx.log.warn(`archive_command is set to ${archiveCommand}, but archiving is NOT confirmed running (see above)`);
}

/** `stop`: turns archiving off in master_config (checked with SHOW); WAL is no longer shipped afterwards. */
export async function stopArchiving(ctx: Context): Promise<void> {
  const canRestart = ctx.config.has("master_restart_cmd");
  try {
    // Without a restart archive_mode stays on; '/bin/true' then keeps pg_wal from filling up.
    await applyArchiveSettings(
      ctx,
      canRestart
        ? {
            command: "stop",
            values: () => ({ archive_mode: "off" }),
            accept: { archive_mode: isOff },
            goal: "turning archiving off",
            marker: "set by walmgr-ts stop",
          }
        : {
            command: "stop",
            values: () => ({ archive_command: "/bin/true" }),
            accept: { archive_command: (v) => v === "/bin/true" },
            goal: "turning archiving off (archive_command = '/bin/true')",
            marker: "set by walmgr-ts stop",
          },
    );
    ctx.log.warn("ARCHIVING IS OFF: WAL is no longer shipped to the slave; a standby restored from it falls behind");
    // Segments archived ahead and not yet acknowledged: no call will come for them now, and each
    // record holds its segment's blocks.
    const dataDir = ctx.config.path("master_data");
    const acks = dataDir === undefined ? undefined : join(walDirOf(dataDir), ACK_DIR);
    if (acks !== undefined && existsSync(acks))
      await ctx.act(`remove ${acks}`, () => rmSync(acks, { recursive: true, force: true }));
  } finally {
    // The sync daemon is stopped even when turning archiving off failed.
    await stopSyncDaemon(ctx);
  }
}

/** How long `stop` waits for the sync daemon to exit after SIGTERM. */
const DAEMON_STOP_WAIT_MS = 30_000;

/** Stops a running sync daemon named by pidfile (SIGTERM) and waits for it to exit; no-op when none runs. */
export async function stopSyncDaemon(ctx: Context): Promise<void> {
  const pidfile = ctx.config.path("pidfile");
  if (!pidfile) return;
  const { readPidfile } = await import("../../slavedir/pidfile.js");
  // Signalled only when it is provably this config's daemon and the pidfile owner's process.
  const st = readPidfile(pidfile, ctx.config.file);
  if (st.kind === "absent") {
    ctx.log.info(`no sync daemon runs (no ${pidfile})`);
    return;
  }
  if (st.kind !== "running") {
    ctx.log.info(
      `no sync daemon signalled (${st.kind === "invalid" ? `${pidfile} holds no pid` : `${st.kind} pidfile ${pidfile}: ${st.why}`})`,
    );
    return;
  }
  const pid = st.pid;
  await ctx.act(`stop the sync daemon (SIGTERM to pid ${pid} from ${pidfile})`, async () => {
    try {
      process.kill(pid, "SIGTERM");
    } catch (err) {
      ctx.log.warn(`cannot signal the sync daemon (pid ${pid}): ${(err as Error).message}`);
      return;
    }
    ctx.log.info(`sent SIGTERM to the sync daemon (pid ${pid}); waiting for it to exit`);
    const deadline = Date.now() + DAEMON_STOP_WAIT_MS;
    while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (processAlive(pid)) {
      ctx.log.warn(
        `the sync daemon (pid ${pid}) is still running ${DAEMON_STOP_WAIT_MS / 1000} s after SIGTERM: look at its log; kill it by hand if it hangs`,
      );
    } else {
      ctx.log.info(`the sync daemon (pid ${pid}) has stopped`);
    }
  });
}
