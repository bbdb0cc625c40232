/**
 * The recovery settings restore writes into the new data directory: restore_command (with %r for
 * a standby), the recovery target, primary_conninfo; in our marked block of postgresql.auto.conf
 * with a signal file (PostgreSQL 12+), or as recovery.conf.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Context } from "../../context";
import { binPath } from "../../paths";
import { pgCommandLine, quoteConfValue } from "../../pg/postgresql-conf";
import { dataDirVersion } from "../../pg/server";
import { writeFileDurable } from "../../storage/durable";
import { io } from "./local-fs";

const MARK_BEGIN = "# --- walmgr-ts restore: recovery settings (begin) ---";

const MARK_END = "# --- walmgr-ts restore: recovery settings (end) ---";

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

/**
 * The restore_command the restored node runs. %r lets wal-restore clean up after a standby; a
 * point-in-time restore must never do that.
 */
function restoreCommand(ctx: Context, standby: boolean): string {
  // %r lets wal-restore clean up after a standby; a point-in-time restore must never do that.
  return pgCommandLine([binPath("wal-restore"), ctx.config.file], standby ? "%f %p %r" : "%f %p");
}

/** The recovery settings: postgresql.auto.conf and a signal file (12+), or recovery.conf. */
export function writeRecoverySettings(ctx: Context, dir: string, target: Record<string, string>): void {
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
