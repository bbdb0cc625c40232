import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  mkdirSync,
  copyFileSync,
} from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import type { Context } from "../context";
import { BOOT_END_OF_WAL, BOOT_PARTIAL_SERVED, ControlFiles, STANDBY_RESTARTPOINT, STOP } from "../control";
import { ExitCode, ioError, isErrno, UsageError, WalmgrError } from "../errors";
import { slaveLayout } from "../layout";
import { binPath } from "../paths";
import { pgCommandLine, quoteConfValue, shellQuote } from "../pg/postgresql-conf";
import { dataDirVersion, readPostmaster } from "../pg/server";
import { runConfigured } from "../shell";
import { copyTree, mkdirPrivate } from "../storage/local";
import { writeFileDurable, fsyncDir } from "../storage/durable";
import { listSets } from "./backup/sets";

const MARK_BEGIN = "# --- walmgr-ts restore: recovery settings (begin) ---";
const MARK_END = "# --- walmgr-ts restore: recovery settings (end) ---";

const TARGET_ACTIONS = new Set(["promote", "pause", "shutdown"]);

/** Recovery target settings from --target-* options; empty when replaying to the end. */
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

/** Chowns a tree to uid:gid (when running as root on behalf of the postgres user). */
function chownTree(path: string, uid: number, gid: number): void {
  const st = lstatSync(path);
  if (st.uid !== uid || st.gid !== gid) chownSync(path, uid, gid);
  if (st.isDirectory()) for (const n of readdirSync(path)) chownTree(join(path, n), uid, gid);
}

function firstFree(base: string): string {
  for (let i = 0; ; i++) {
    const candidate = `${base}.${i}`;
    if (!existsSync(candidate)) return candidate;
  }
}

/**
 * `restore [SET] [DST]` on the slave: puts a backup set in place (the newest moved when no set
 * is named, a named one copied), keeps or removes the old data directory per backup_datadir,
 * writes the recovery settings and starts the server with slave_start_cmd.
 */
export async function restore(ctx: Context): Promise<void> {
  const onMaster = ctx.config.role === "master";
  const [setArg, dstArg] = ctx.args;
  if (onMaster && dstArg === undefined) {
    throw new UsageError("on the master, restore needs a set and a destination: wal-ctl master.ini restore SET DST");
  }
  const layout = slaveLayout(ctx.config, "restore");
  const full = ctx.config.requireLocation("full_backup", "restore");
  if (full.host !== undefined) throw new UsageError("full_backup must be a local directory to restore from it");
  const target = recoveryTarget(ctx.options);
  const slaveData = onMaster ? undefined : ctx.config.requirePath("slave_data", "restore");
  const dst = dstArg !== undefined ? resolve(dstArg) : (slaveData ?? "");
  const sets = await listSets(layout.driver, full.path);
  let src: string;
  if (setArg === undefined) {
    const newest = sets[0];
    if (newest === undefined) {
      throw new WalmgrError(
        `no backup set in ${dirname(full.path)}`,
        ExitCode.NOT_AVAILABLE,
        "take one with `wal-backup master.ini`",
      );
    }
    src = newest;
  } else {
    src = isAbsolute(setArg) || setArg.includes("/") ? resolve(setArg) : join(dirname(full.path), setArg);
    if (!existsSync(join(src, "backup_label"))) {
      throw new WalmgrError(
        `${src} is not a backup set (no backup_label)`,
        ExitCode.NOT_AVAILABLE,
        `sets: ${sets.map((s) => basename(s)).join(", ") || "none"}`,
      );
    }
  }
  // walmgr: the newest set is moved into slave_data (it does not obey retention), a named one copied.
  const move = setArg === undefined && !onMaster;
  const standbyRestore = dst === slaveData;

  // 1. The server in DST must be down.
  const pm = readPostmaster(dst);
  if (pm) {
    const stopCmd = ctx.config.get("slave_stop_cmd");
    if (!stopCmd) {
      throw new WalmgrError(
        `a server (pid ${pm.pid}) is running in ${dst}`,
        ExitCode.USAGE,
        "stop it first, or set slave_stop_cmd",
      );
    }
    await ctx.act(`stop the server in ${dst} with slave_stop_cmd`, () => runConfigured(ctx, "slave_stop_cmd", stopCmd));
  }

  // 2. Owner of the restored tree (matters only when root restores for the postgres user).
  const ownerRef = existsSync(dst) ? dst : existsSync(dirname(dst)) ? dirname(dst) : src;
  const owner = statSync(ownerRef);

  // 3. Old data directory: kept as DST.N or removed.
  if (existsSync(dst)) {
    if (ctx.config.bool("backup_datadir")) {
      const old = firstFree(dst);
      await ctx.act(`keep the old data directory as ${old}`, () => renameSync(dst, old));
    } else {
      await ctx.act(`remove the old data directory ${dst}`, () => rmSync(dst, { recursive: true, force: true }));
    }
  }

  // 4. The set into place.
  if (move) {
    await ctx.act(`move ${src} to ${dst}`, () => {
      mkdirPrivate(dirname(dst));
      try {
        renameSync(src, dst);
      } catch (err) {
        if (!isErrno(err, "EXDEV")) throw ioError(`cannot move ${src} to`, dst, err);
        return copyTree(src, dst, () => true).then(() => rmSync(src, { recursive: true, force: true }));
      }
      fsyncDir(dirname(dst));
      return undefined;
    });
  } else {
    await ctx.act(`copy ${src} to ${dst}`, () => copyTree(src, dst, () => true));
  }
  if (ctx.dryRun) {
    ctx.out(`[not really] write recovery settings into ${dst} and start it`);
    return;
  }
  chmodSync(dst, 0o700);
  relocateTablespaces(ctx, dst);

  // 5. pg_wal as a link to slave_pg_xlog.
  const xlog = ctx.config.path("slave_pg_xlog");
  if (xlog) {
    const walName = existsSync(join(dst, "pg_xlog")) && !existsSync(join(dst, "pg_wal")) ? "pg_xlog" : "pg_wal";
    const link = join(dst, walName);
    mkdirPrivate(xlog);
    for (const n of readdirSync(xlog)) rmSync(join(xlog, n), { recursive: true, force: true });
    mkdirSync(join(xlog, "archive_status"), { mode: 0o700, recursive: true });
    rmSync(link, { recursive: true, force: true });
    symlinkSync(xlog, link);
    if (process.getuid?.() === 0) chownTree(xlog, owner.uid, owner.gid);
    ctx.log.info(`${link} now links to ${xlog}`);
  }

  // 6. Recovery settings.
  const version = dataDirVersion(dst) ?? 15;
  const standby = Object.keys(target).length === 0;
  // %r lets wal-restore clean up after a standby; a point-in-time restore must never do that.
  const restoreCommand = pgCommandLine([binPath("wal-restore"), ctx.config.file], standby ? "%f %p %r" : "%f %p");
  const settings: Record<string, string> = {
    restore_command: restoreCommand,
    recovery_target_timeline: "latest",
    // The restored node must never archive into the master's archive.
    archive_mode: "off",
    ...target,
  };
  const conninfo = ctx.config.get("primary_conninfo");
  if (conninfo) settings.primary_conninfo = conninfo;
  const when = new Date().toISOString();
  if (version >= 12) {
    const auto = join(dst, "postgresql.auto.conf");
    const existing = existsSync(auto) ? readFileSync(auto, "utf8") : "";
    writeFileDurable(auto, Buffer.from(withRecoveryBlock(existing, settings, when)));
    writeFileDurable(join(dst, standby ? "standby.signal" : "recovery.signal"), Buffer.alloc(0));
  } else {
    const { archive_mode: _off, ...rec } = settings;
    const lines = [
      `# written by walmgr-ts restore ${when}`,
      ...Object.entries({ ...rec, ...(standby ? { standby_mode: "on" } : {}) }).map(
        ([k, v]) => `${k} = ${quoteConfValue(v)}`,
      ),
    ];
    writeFileDurable(join(dst, "recovery.conf"), Buffer.from(`${lines.join("\n")}\n`));
  }
  ctx.log.info(
    `recovery settings written to ${dst} (${standby ? "standby" : `point-in-time: ${JSON.stringify(target)}`})`,
  );

  // 7. Config files saved from the master.
  const confDir = ctx.config.path("slave_config_dir");
  const confBackup = ctx.config.location("config_backup");
  if (confDir && confBackup && existsSync(confBackup.path)) {
    mkdirPrivate(confDir);
    for (const n of readdirSync(confBackup.path)) {
      if (n.startsWith(".")) continue;
      copyFileSync(join(confBackup.path, n), join(confDir, n));
      if (process.getuid?.() === 0) chownSync(join(confDir, n), owner.uid, owner.gid);
    }
    ctx.log.info(`restored config files from ${confBackup.path} to ${confDir}`);
  }

  if (process.getuid?.() === 0 && owner.uid !== 0) chownTree(dst, owner.uid, owner.gid);

  // 8. A new standby replays afresh: no STOP, no boot markers, no old restart point.
  if (standbyRestore) {
    const control = new ControlFiles(layout.driver, layout.completed.path);
    for (const f of [STOP, BOOT_END_OF_WAL, BOOT_PARTIAL_SERVED, STANDBY_RESTARTPOINT]) await control.remove(f);
  }

  // 9. Start.
  const startCmd = ctx.config.get("slave_start_cmd");
  if (standbyRestore && startCmd) {
    runConfigured(ctx, "slave_start_cmd", startCmd);
    ctx.log.info(
      `restored ${basename(src)} into ${dst} and started it: the standby replays WAL from ${layout.completed.path}`,
    );
  } else {
    ctx.log.info(`restored ${basename(src)} into ${dst}; start it with: pg_ctl -D ${shellQuote(dst)} start`);
  }
}

/**
 * A set holds each tablespace as a folder pg_tblspc/OID and the master's locations in
 * tablespace_map. PostgreSQL would replace those folders with links to the master's paths, so
 * the folders are moved out and linked here instead: to the original path when it is free on
 * this machine, otherwise beside the data directory (DST_tblspc_OID). tablespace_map goes.
 */
function relocateTablespaces(ctx: Context, dst: string): void {
  const mapFile = join(dst, "tablespace_map");
  if (!existsSync(mapFile)) return;
  for (const line of readFileSync(mapFile, "utf8").split("\n")) {
    const m = /^(\d+) (.+)$/.exec(line);
    if (!m) continue;
    const [, oid = "", original = ""] = m;
    const inSet = join(dst, "pg_tblspc", oid);
    if (!existsSync(inSet) || lstatSync(inSet).isSymbolicLink()) continue;
    const free = !existsSync(original) || (statSync(original).isDirectory() && readdirSync(original).length === 0);
    let where = free ? original : `${dst}_tblspc_${oid}`;
    if (!free && existsSync(where)) where = firstFree(where);
    mkdirPrivate(dirname(where));
    if (existsSync(where)) rmSync(where, { recursive: true, force: true });
    renameSync(inSet, where);
    symlinkSync(where, inSet);
    ctx.log.info(`tablespace ${oid} (${original} on the master) restored to ${where}`);
  }
  rmSync(mapFile);
}
