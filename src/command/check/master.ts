import { posix } from "node:path";
import type { Context } from "../../context";
import { callTimeLeft } from "../../deadline";
import { ExitCode } from "../../errors";
import { controlFilesFor, slaveLayout, type SlaveLayout } from "../../slavedir/layout";
import { archiverStats, readyBacklog, STUCK_AFTER_SECONDS } from "../../monitor/archiver";
import { connectMaster, type Db } from "../../pg/client";
import { backupLockItem, codeOf, commandMatches, expectedCommand, probeWritable, why } from "./items";
import type { CheckItem } from "./report";

/** Polls `fn` every 250 ms until it is true or `ms` pass; true when it became true. */
async function waitUntil(fn: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The master's settings as the running server has them, each checked against this config. */
async function settingItems(ctx: Context, db: Db): Promise<CheckItem[]> {
  const rows = await db.query<{ name: string; setting: string; pending_restart: boolean }>(
    "SELECT name, setting, pending_restart FROM pg_settings WHERE name IN ('archive_mode', 'archive_command', 'wal_level')",
  );
  const get = (n: string): { setting: string; pending_restart: boolean } | undefined => rows.find((r) => r.name === n);
  const out: CheckItem[] = [];
  const setupFix =
    "run 'wal-ctl CONFIG setup' (it sets archive_mode, archive_command and wal_level, and restarts or reloads)";
  const mode = get("archive_mode");
  out.push(
    mode === undefined || !["on", "always"].includes(mode.setting)
      ? {
          name: "archive_mode",
          status: "FAIL",
          detail: `archive_mode is ${mode?.setting ?? "unknown"}: PostgreSQL archives nothing${mode?.pending_restart ? " (a change waits for a restart)" : ""}`,
          fix: setupFix,
          code: ExitCode.CONFIG,
        }
      : { name: "archive_mode", status: "OK", detail: `archive_mode = ${mode.setting}` },
  );
  const level = get("wal_level");
  out.push(
    level === undefined || level.setting === "minimal"
      ? {
          name: "wal_level",
          status: "FAIL",
          detail: `wal_level is ${level?.setting ?? "unknown"}: archived WAL cannot restore a base backup`,
          fix: setupFix,
          code: ExitCode.CONFIG,
        }
      : { name: "wal_level", status: "OK", detail: `wal_level = ${level.setting}` },
  );
  const cmd = get("archive_command")?.setting ?? "";
  out.push(
    commandMatches(cmd, "wal-archive", ctx.config, "%p %f")
      ? { name: "archive_command", status: "OK", detail: `runs this config: ${cmd}` }
      : {
          name: "archive_command",
          status: "FAIL",
          detail:
            cmd === ""
              ? "archive_command is empty: WAL piles up in pg_wal and nothing is archived"
              : `archive_command does not archive with this config: it is ${JSON.stringify(cmd)}, expected ${JSON.stringify(expectedCommand("wal-archive", ctx.config, "%p %f"))}`,
          fix: `${setupFix}; if another tool archives on purpose, this config is not the one in use`,
          code: ExitCode.CONFIG,
        },
  );
  return out;
}

/** The archiver: failing now (pg_stat_archiver), and the .ready backlog in pg_wal/archive_status. */
async function archiverItem(ctx: Context, db: Db): Promise<CheckItem> {
  const name = "archiver";
  const stats = await archiverStats(db);
  const dataDir = ctx.config.path("master_data");
  let backlog: ReturnType<typeof readyBacklog> | undefined;
  let backlogError: string | undefined;
  try {
    backlog = dataDir !== undefined ? readyBacklog(dataDir) : undefined;
  } catch (err) {
    // Run as a user who cannot read pg_wal (the server's own user can): the statistics still tell.
    backlogError = why(err);
  }
  const metrics: Record<string, number> = { failed_count: stats.failedCount };
  if (backlog) {
    metrics.ready = backlog.count;
    metrics.ready_oldest_age_seconds = Math.round(backlog.oldestAgeSeconds ?? 0);
  }
  const waiting =
    backlogError !== undefined
      ? `(.ready backlog not counted: ${backlogError})`
      : backlog === undefined
        ? "(master_data not set: .ready backlog not counted)"
        : backlog.count === 0
          ? "no WAL waiting"
          : `${backlog.count} WAL file(s) waiting, the oldest ${backlog.oldest} for ${Math.round(backlog.oldestAgeSeconds ?? 0)} s`;
  if (stats.failingNow) {
    return {
      name,
      status: "FAIL",
      detail: `archiving is failing: ${stats.failedCount} failure(s), the last for ${stats.lastFailedWal ?? "?"} at ${stats.lastFailedTime ?? "?"}; ${waiting}`,
      fix: "read the master's server log for the archive_command's error (wal-archive logs what failed and what to do)",
      code: ExitCode.IO,
      metrics,
    };
  }
  if (backlog !== undefined && (backlog.oldestAgeSeconds ?? 0) > STUCK_AFTER_SECONDS) {
    return {
      name,
      status: "WARN",
      detail: `archiving is behind: ${waiting} (no failure recorded: a hanging archive_command leaves failed_count alone)`,
      fix: "look for a wal-archive process that hangs (slow or unreachable slave) and at the slave directory's disk",
      code: ExitCode.IO,
      metrics,
    };
  }
  return {
    name,
    status: "OK",
    detail: `${stats.archivedCount} archived, last ${stats.lastArchivedWal ?? "none"}${stats.failedCount ? `; ${stats.failedCount} earlier failure(s), none since` : ""}; ${waiting}`,
    metrics,
  };
}

/**
 * Forces a segment switch (after a restore point, so that there is something to switch away
 * from) and waits until that segment is in completed_wals: end-to-end proof that archiving works.
 */
async function switchItem(ctx: Context, layout: SlaveLayout, db: Db, timeoutS: number): Promise<CheckItem> {
  const name = "WAL switch archived";
  if (ctx.dryRun) return { name, status: "SKIP", detail: "no WAL switch forced (--not-really)" };
  let row: { wal: string };
  try {
    // The restore point gives the switch something to switch away from; a role that may switch
    // but not create restore points still gets its switch.
    await db.query("SELECT pg_create_restore_point('walmgr-ts check')").catch(() => undefined);
    row = await db.one<{ wal: string }>(
      db.serverVersion >= 100000
        ? "SELECT pg_walfile_name(pg_switch_wal()) AS wal"
        : "SELECT pg_xlogfile_name(pg_switch_xlog()) AS wal",
    );
  } catch (err) {
    return {
      name,
      status: "FAIL",
      detail: `cannot force a WAL switch: ${why(err)}`,
      fix: "connect master_db as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() to its role; master_db must be the primary, not a standby",
      code: ExitCode.DATABASE,
    };
  }
  const path = posix.join(layout.completed.path, row.wal);
  const started = Date.now();
  let lastErr: unknown;
  const arrived = await waitUntil(
    async () => {
      try {
        return (await layout.driver.info(path)) !== undefined;
      } catch (err) {
        lastErr = err;
        return false;
      }
      // (Leaving a moment of --timeout for the BACKUPLOCK item after it.)
    },
    Math.min(timeoutS * 1000, Math.max(0, callTimeLeft() - Math.min(2000, timeoutS * 100))),
  );
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (arrived)
    return { name, status: "OK", detail: `${row.wal} arrived in ${secs} s`, metrics: { switch_seconds: Number(secs) } };
  let last = "";
  try {
    const s = await archiverStats(db);
    if (s.lastFailedWal !== null) last = `; last archiver failure: ${s.lastFailedWal} at ${s.lastFailedTime ?? "?"}`;
  } catch {
    // the timeout is the finding; the statistics only add detail
  }
  return {
    name,
    status: "FAIL",
    detail: `${row.wal} did not arrive in ${layout.completed.path} within ${timeoutS} s${lastErr ? ` (${why(lastErr)})` : ""}${last}`,
    fix: "see the archive_command and archiver items above and the master's server log; a longer --timeout helps only on a very busy archiver",
    code: lastErr ? codeOf(lastErr) : ExitCode.IO,
  };
}

/** The master's checks, in the order an operator would fix them. */
export async function masterChecks(ctx: Context, timeoutS: number): Promise<CheckItem[]> {
  const items: CheckItem[] = [];
  const layout = slaveLayout(ctx.config, "check");
  items.push(await probeWritable(layout.driver, layout.completed.path, ctx.dryRun));
  let db: Db | undefined;
  try {
    db = await connectMaster(ctx.config, "check");
  } catch (err) {
    items.push({
      name: "database",
      status: "FAIL",
      detail: why(err),
      fix: `check master_db in ${ctx.config.file} and that the server runs`,
      code: ExitCode.DATABASE,
    });
    for (const n of ["archive_mode", "wal_level", "archive_command", "archiver", "WAL switch archived"]) {
      items.push({ name: n, status: "SKIP", detail: "no database connection" });
    }
    items.push(await backupLockItem(controlFilesFor(ctx.config, layout.completed, layout.driver)));
    return items;
  }
  try {
    items.push({
      name: "database",
      status: "OK",
      detail: `connected to ${db.where} (PostgreSQL ${Math.floor(db.serverVersion / 10000)})`,
    });
    const settings = await settingItems(ctx, db);
    items.push(...settings);
    items.push(await archiverItem(ctx, db));
    const archiving = settings.find((s) => s.name === "archive_mode")?.status === "OK";
    if (!archiving) items.push({ name: "WAL switch archived", status: "SKIP", detail: "archive_mode is off" });
    else if (settings.find((s) => s.name === "archive_command")?.status !== "OK") {
      items.push({ name: "WAL switch archived", status: "SKIP", detail: "archive_command does not archive here" });
    } else if (items.some((i) => i.name === "slave directory writable" && i.status === "FAIL")) {
      items.push({ name: "WAL switch archived", status: "SKIP", detail: "the slave directory cannot be written" });
    } else items.push(await switchItem(ctx, layout, db, timeoutS));
  } catch (err) {
    items.push({ name: "database", status: "FAIL", detail: why(err), code: ExitCode.DATABASE });
  } finally {
    await db.close();
  }
  items.push(await backupLockItem(controlFilesFor(ctx.config, layout.completed, layout.driver)));
  return items;
}
