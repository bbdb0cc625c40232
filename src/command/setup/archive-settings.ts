/**
 * Archiving settings in master_config and on the running server: edits postgresql.conf in place
 * (a copy saved first), removes overrides from postgresql.auto.conf, restarts or reloads, and
 * checks the result with SHOW. Shared by setup (on) and stop (off).
 */
import { chmodSync, chownSync, copyFileSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import type { Context } from "../../context";
import { ConfigError, DatabaseError, ioError, isErrno } from "../../errors";
import { connectMaster, type Db } from "../../pg/client";
import { commentOutSettings, getConfValue, setConfValues, type ConfEdit } from "../../pg/postgresql-conf";
import { readPostmaster } from "../../pg/server";
import { writeFileDurable } from "../../storage/durable";
import { runConfigured } from "../../shell";
import { archiveMissedWal } from "./missed-wal";

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
export interface ArchiveSpec {
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

export function isOn(v: string): boolean {
  return ["on", "always", "true", "yes", "1"].includes(v.trim().toLowerCase());
}

export function isOff(v: string): boolean {
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
export async function applyArchiveSettings(ctx: Context, spec: ArchiveSpec): Promise<boolean> {
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
