import { existsSync, readFileSync } from "node:fs";
import { join, posix } from "node:path";
import type { Context } from "../../context";
import { ExitCode } from "../../errors";
import { controlFilesFor, slaveLayout, type SlaveLayout } from "../../slavedir/layout";
import { reach } from "../../monitor/chain";
import { setStart } from "../../monitor/set-start";
import { standbyReplay } from "../../monitor/standby-replay";
import { listArchive } from "../../monitor/wal-scan";
import { unsafeFiles } from "../../monitor/owners-scan";
import { getConfValue } from "../../pg/postgresql-conf";
import { listSets } from "../../slavedir/backup-sets";
import { STOP } from "../../slavedir/control";
import { backupLockItem, codeOf, commandMatches, expectedCommand, why } from "./items";
import type { CheckItem } from "./report";

/** completed_wals, partial_wals and full_backup's folder exist (through the driver). */
async function layoutItem(layout: SlaveLayout): Promise<CheckItem> {
  const want = [
    layout.completed.path,
    ...(layout.partial ? [layout.partial.path] : []),
    ...(layout.fullBackup ? [posix.dirname(layout.fullBackup.path)] : []),
  ];
  try {
    const missing: string[] = [];
    for (const dir of want) {
      const info = await layout.driver.info(dir);
      if (info === undefined || !info.isDirectory) missing.push(dir);
    }
    if (missing.length > 0) {
      return {
        name: "layout",
        status: "FAIL",
        detail: `missing: ${missing.join(", ")} (${layout.driver.description})`,
        fix: "run 'wal-ctl CONFIG setup' (it creates the layout)",
        code: ExitCode.IO,
      };
    }
    return { name: "layout", status: "OK", detail: `${want.join(", ")} exist (${layout.driver.description})` };
  } catch (err) {
    return { name: "layout", status: "FAIL", detail: `cannot look at ${want[0]}: ${why(err)}`, code: codeOf(err) };
  }
}

/**
 * The restored standby's restore_command (postgresql.auto.conf over postgresql.conf, or
 * recovery.conf before 12) runs wal-restore with this config. SKIP when slave_data holds no
 * node in recovery (not restored yet, or booted).
 */
function restoreCommandItem(ctx: Context): CheckItem {
  const name = "restore_command";
  const data = ctx.config.path("slave_data");
  if (data === undefined || !existsSync(join(data, "PG_VERSION"))) {
    return { name, status: "SKIP", detail: `no data directory in ${data ?? "slave_data (not set)"}: not restored yet` };
  }
  const read = (f: string): string | undefined => {
    try {
      return readFileSync(join(data, f), "utf8");
    } catch {
      return undefined;
    }
  };
  const recoveryConf = read("recovery.conf");
  const signal = existsSync(join(data, "standby.signal")) || existsSync(join(data, "recovery.signal"));
  if (!signal && recoveryConf === undefined) {
    return { name, status: "SKIP", detail: `${data} is not in recovery (no standby.signal): booted, or not a standby` };
  }
  let cmd: string | undefined;
  for (const text of [read("postgresql.conf"), recoveryConf, read("postgresql.auto.conf")]) {
    const v = text === undefined ? undefined : getConfValue(text, "restore_command");
    if (v !== undefined) cmd = v;
  }
  if (cmd !== undefined && commandMatches(cmd, "wal-restore", ctx.config, "%f %p")) {
    return { name, status: "OK", detail: `the standby in ${data} restores with this config: ${cmd}` };
  }
  return {
    name,
    status: "FAIL",
    detail:
      cmd === undefined || cmd === ""
        ? `the standby in ${data} has no restore_command: it gets no WAL from the archive`
        : `the standby in ${data} restores with ${JSON.stringify(cmd)}, not with this config (expected ${JSON.stringify(expectedCommand("wal-restore", ctx.config, "%f %p %r"))})`,
    fix: "restore the standby with 'wal-ctl CONFIG restore' (it writes restore_command), or correct restore_command in postgresql.auto.conf and restart the standby",
    code: ExitCode.CONFIG,
  };
}

/** The newest set's WAL chain: from its start, unbroken, to the newest archived segment (names only). */
async function chainItem(layout: SlaveLayout): Promise<CheckItem> {
  const name = "newest backup's WAL";
  const full = layout.fullBackup;
  if (full === undefined) return { name, status: "SKIP", detail: "full_backup is not set" };
  try {
    const [newest] = await listSets(layout.driver, full.path);
    if (newest === undefined) {
      // The QUICK START's restore moves the newest set into slave_data, so a healthy slave often
      // has none: that is no fault of shipping or replay (status and --prometheus show the count).
      return {
        name,
        status: "SKIP",
        detail: `no backup set in ${posix.dirname(full.path)} (a restore without SET moves the newest one): take a backup to have one to restore from`,
      };
    }
    const listing = await listArchive(layout.driver, layout.completed.path);
    const start = await setStart(layout.driver, newest, listing.segSize);
    if (start === undefined) {
      return {
        name,
        status: "FAIL",
        detail: `${newest} has no .walmgr-backup.json or backup_label: where its WAL starts is unknown`,
        fix: "run 'wal-ctl CONFIG verify' and take a new backup",
        code: ExitCode.IO,
      };
    }
    const r = reach(start, listing.wal, listing.histories, listing.segSize);
    const metrics = { chain_gaps: r.gaps.length };
    if (!r.consistent) {
      return {
        name,
        status: "FAIL",
        detail: `${newest} cannot be restored: ${r.firstMissing ?? start.startWal} is missing (needed through ${start.stopWal ?? start.startWal})`,
        fix: "take a new backup now (wal-backup), then find out what removed the WAL",
        code: ExitCode.IO,
        metrics,
      };
    }
    if (r.firstMissing !== undefined) {
      return {
        name,
        status: "FAIL",
        detail: `${newest} can be restored only to ${r.reachableLsn} (end of ${r.lastSegment}): ${r.firstMissing} is missing, ${r.gaps.length} gap(s) up to the newest segment`,
        fix: "take a new backup now (wal-backup) so that recovery reaches the newest WAL; 'wal-ctl CONFIG verify' lists every gap",
        code: ExitCode.IO,
        metrics,
      };
    }
    return {
      name,
      status: "OK",
      detail: `${newest}: WAL unbroken from ${start.startWal} to ${r.lastSegment ?? "?"} (timeline ${r.timeline})`,
      metrics,
    };
  } catch (err) {
    return { name, status: "FAIL", detail: why(err), code: codeOf(err) };
  }
}

/**
 * Nothing in completed_wals and partial_wals (nor those folders, nor full_backup's) could have
 * been written by another user: wal-restore refuses to serve such a file, and backup and
 * restore to read it (storage/owners.ts). SKIP for an object store (no owners).
 */
async function ownersItem(layout: SlaveLayout): Promise<CheckItem> {
  const name = "owners and modes";
  if (layout.completed.bucket !== undefined)
    return { name, status: "SKIP", detail: "an object store has no file owners" };
  try {
    const unsafe = await unsafeFiles(layout);
    if (unsafe.length === 0) {
      return {
        name,
        status: "OK",
        detail: `nobody else could have written the files in ${layout.completed.path}${layout.partial ? ` and ${layout.partial.path}` : ""} (${layout.driver.description})`,
      };
    }
    const shown = unsafe.slice(0, 5).map((u) => `${u.path} (${u.reason})`);
    return {
      name,
      status: "FAIL",
      detail: `another user could have written ${unsafe.length} file(s) or folder(s), never served or restored: ${shown.join("; ")}${unsafe.length > shown.length ? `; and ${unsafe.length - shown.length} more (wal-ctl CONFIG verify lists them all)` : ""}`,
      fix: "if they are genuine, make them the slave directory owner's alone (chown; chmod 0600 files, 0700 folders); if not, remove them and find out who put them there",
      code: ExitCode.IO,
      metrics: { unsafe_files: unsafe.length },
    };
  } catch (err) {
    return { name, status: "FAIL", detail: why(err), code: codeOf(err) };
  }
}

/** The standby replays: running, in recovery, not paused; STOP not left behind. */
async function replayItem(ctx: Context, layout: SlaveLayout): Promise<CheckItem> {
  const name = "standby replay";
  const data = ctx.config.path("slave_data");
  if (data === undefined || !existsSync(join(data, "PG_VERSION"))) {
    return { name, status: "SKIP", detail: "no standby restored in slave_data" };
  }
  const r = await standbyReplay(ctx.config);
  let stop = false;
  try {
    stop = await controlFilesFor(ctx.config, layout.completed, layout.driver).exists(STOP);
  } catch {
    // the replay state is what this item is about; STOP only adds to it
  }
  if (!r.running) {
    const signal = existsSync(join(data, "standby.signal")) || existsSync(join(data, "recovery.conf"));
    return signal
      ? {
          name,
          status: "FAIL",
          detail: `the standby in ${data} is not running (${r.reason ?? "?"})`,
          fix: "start it with slave_start_cmd; read its server log if it stopped by itself",
          code: ExitCode.DATABASE,
        }
      : { name, status: "SKIP", detail: `no server runs in ${data} and it is not a standby` };
  }
  if (r.inRecovery === false) {
    return { name, status: "SKIP", detail: `the server in ${data} is not in recovery (booted): nothing to replay` };
  }
  const metrics: Record<string, number> = {};
  if (typeof r.replayLagSeconds === "number") metrics.replay_lag_seconds = Math.round(r.replayLagSeconds);
  const at = `replayed to ${r.replayLsn ?? "?"}${r.lastReplayTime ? `, last commit from ${r.lastReplayTime}` : ""}`;
  if (r.paused) {
    return {
      name,
      status: "WARN",
      detail: `replay is paused (${r.pauseState ?? "?"}): ${at}; the standby falls behind`,
      fix: "wal-ctl CONFIG continue (or SELECT pg_wal_replay_resume() for a pause made in the server); leave it if you paused on purpose",
      code: ExitCode.NOT_AVAILABLE,
      metrics,
    };
  }
  if (stop) {
    return {
      name,
      status: "WARN",
      detail: `STOP is present (a boot in progress or interrupted): ${at}`,
      fix: "finish the boot with 'wal-ctl CONFIG boot'; if the standby should go on replaying, remove STOP",
      code: ExitCode.NOT_AVAILABLE,
      metrics,
    };
  }
  return { name, status: "OK", detail: at, metrics };
}

/** The slave's checks. */
export async function slaveChecks(ctx: Context): Promise<CheckItem[]> {
  // One layout (one storage driver: one ssh session or S3 client) for every item.
  const layout = slaveLayout(ctx.config, "check");
  return [
    await layoutItem(layout),
    await ownersItem(layout),
    restoreCommandItem(ctx),
    await chainItem(layout),
    await backupLockItem(controlFilesFor(ctx.config, layout.completed, layout.driver)),
    await replayItem(ctx, layout),
  ];
}
