/**
 * `setup`: the slave directory layout, and on the master archiving turned on in postgresql.conf
 * (archive-settings.ts), WAL the server missed archived first (missed-wal.ts). `stop` is stop.ts.
 */
import type { Context } from "../../context";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import { formatLocation, isLocal } from "../../config/load";
import { archiveRepositories } from "../archive/repositories";
import { binPath } from "../../paths";
import { getConfValue, pgCommandLine } from "../../pg/postgresql-conf";
import { removeStaleTemps } from "../../storage/durable";
import { applyArchiveSettings, isOn } from "./archive-settings";

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
