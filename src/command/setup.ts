import { copyFileSync, readFileSync, statSync, chownSync, chmodSync } from "node:fs";
import type { Context } from "../context";
import { ioError } from "../errors";
import { slaveLayout } from "../layout";
import { binPath } from "../paths";
import { connectMaster, type Db } from "../pg/client";
import { getConfValue, setConfValues, shellQuote, type ConfEdit } from "../pg/postgresql-conf";
import { readPostmaster } from "../pg/server";
import { processAlive, removeStaleTemps, writeFileDurable } from "../storage/durable";
import { runConfigured } from "../shell";

/** Creates the slave directory layout (completed_wals, partial_wals, config_backup, full_backup's parent). */
export async function createLayout(ctx: Context): Promise<void> {
  const layout = slaveLayout(ctx.config, "setup");
  const dirs = [layout.completed, layout.partial, layout.configBackup].filter((l) => l !== undefined);
  for (const loc of dirs) {
    const st = await layout.driver.stat(loc.path);
    if (st?.isDirectory) continue;
    await ctx.act(`create directory ${loc.path}`, () => layout.driver.mkdirp(loc.path));
    if (!ctx.dryRun) ctx.log.info(`created ${loc.path}`);
  }
  if (!ctx.dryRun && layout.completed.host === undefined) removeStaleTemps(layout.completed.path);
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
async function editMasterConfig(ctx: Context, values: Record<string, string>, marker: string): Promise<ConfEdit> {
  const file = ctx.config.requirePath("master_config", "setup");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw ioError("cannot read master_config", file, err);
  }
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
    const st = statSync(file);
    copyFileSync(file, copy);
    chmodSync(copy, st.mode & 0o777);
    if (process.getuid?.() === 0) chownSync(copy, st.uid, st.gid);
  });
  await ctx.act(`write ${file}`, () => {
    const st = statSync(file);
    writeFileDurable(file, Buffer.from(edit.text), { mode: st.mode & 0o777 });
    chmodSync(file, st.mode & 0o777);
    if (process.getuid?.() === 0) chownSync(file, st.uid, st.gid);
  });
  return edit;
}

/** Applies a config edit: restart with master_restart_cmd when needed, otherwise reload. */
async function applyChange(ctx: Context, db: Db | undefined, needRestart: boolean): Promise<void> {
  if (needRestart) {
    const cmd = ctx.config.get("master_restart_cmd");
    if (cmd) {
      await ctx.act(`restart the master with master_restart_cmd: ${cmd}`, () =>
        runConfigured(ctx, "master_restart_cmd", cmd),
      );
    } else {
      ctx.log.warn(
        "the master must be restarted for archive_mode/wal_level to take effect, and master_restart_cmd is not set: restart it by hand",
      );
    }
    return;
  }
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

/** `setup`: on the master, enable archiving into the slave directory; on the slave, create the layout. */
export async function setup(ctx: Context): Promise<void> {
  if (ctx.config.role === "slave") {
    await createLayout(ctx);
    return;
  }
  await createLayout(ctx);
  const archiveCommand = [binPath("wal-archive"), ctx.config.file].map(shellQuote).join(" ") + " %p %f";
  const db = await tryConnect(ctx);
  try {
    const file = ctx.config.requirePath("master_config", "setup");
    let current: string;
    try {
      current = readFileSync(file, "utf8");
    } catch (err) {
      throw ioError("cannot read master_config", file, err);
    }
    const runningLevel = db
      ? (await db.one<{ v: string }>("SELECT current_setting('wal_level') AS v")).v
      : getConfValue(current, "wal_level");
    const values: Record<string, string> = { archive_mode: "on", archive_command: archiveCommand };
    if (runningLevel === "minimal" || runningLevel === "archive" || getConfValue(current, "wal_level") === "minimal") {
      values.wal_level =
        db && db.serverVersion < 90600 ? (ctx.config.bool("hot_standby") ? "hot_standby" : "archive") : "replica";
    }
    const edit = await editMasterConfig(ctx, values, "set by walmgr-ts setup");
    if (edit.changed.length === 0) {
      ctx.log.info(`${file} already archives with ${archiveCommand}: nothing to change`);
      return;
    }
    let needRestart = edit.changed.some((c) => c.key === "archive_mode" || c.key === "wal_level");
    if (db) {
      const [mode] = await db.query<{ v: string }>("SELECT current_setting('archive_mode') AS v");
      needRestart = mode?.v === "off" || values.wal_level !== undefined;
    }
    await applyChange(ctx, db, needRestart);
    if (!ctx.dryRun) ctx.log.info(`archiving is set up: archive_command = ${archiveCommand}`);
  } finally {
    await db?.close();
  }
}

/** `stop`: turns archiving off in master_config; WAL is no longer shipped afterwards. */
export async function stopArchiving(ctx: Context): Promise<void> {
  const canRestart = ctx.config.has("master_restart_cmd");
  // Without a restart archive_mode stays on; '/bin/true' then keeps pg_wal from filling up.
  const values: Record<string, string> = canRestart ? { archive_mode: "off" } : { archive_command: "/bin/true" };
  try {
    const db = await tryConnect(ctx);
    try {
      const edit = await editMasterConfig(ctx, values, "set by walmgr-ts stop");
      if (edit.changed.length > 0) await applyChange(ctx, db, canRestart);
      ctx.log.warn("ARCHIVING IS OFF: WAL is no longer shipped to the slave; a standby restored from it falls behind");
    } finally {
      await db?.close();
    }
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
  const { readPidfile } = await import("../pidfile");
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
