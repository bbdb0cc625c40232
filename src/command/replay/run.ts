import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import type { Context } from "../../context";
import { BOOT_END_OF_WAL, BOOT_PARTIAL_SERVED, ControlFiles, PAUSE, STOP } from "../../slavedir/control";
import { ExitCode, UsageError, WalmgrError } from "../../errors";
import { controlFilesFor, slaveLayout } from "../../slavedir/layout";
import { readPostmaster } from "../../pg/server";
import { removeStandby, standbyName } from "../../slavedir/standbys";
import { writeFileDurable } from "../../storage/durable";

function control(ctx: Context, why: string): ControlFiles {
  const layout = slaveLayout(ctx.config, why);
  return controlFilesFor(ctx.config, layout.completed, layout.driver);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** pg_control's DBState (offset 16, after system identifier and two version numbers). */
const DB_IN_PRODUCTION = 6;

/**
 * True once pg_control says "in production": the server has left recovery for good, and
 * pg_is_in_recovery() is false. Unreadable or short pg_control: true (nothing better to go by).
 */
function inProduction(dataDir: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(join(dataDir, "global", "pg_control"), "r");
    const buf = Buffer.alloc(20);
    if (readSync(fd, buf, 0, 20, 0) < 20) return true;
    return buf.readUInt32LE(16) === DB_IN_PRODUCTION;
  } catch {
    return true;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** The files that say a data directory is (or starts) in recovery. */
export interface RecoveryFiles {
  /** standby.signal / recovery.signal: PostgreSQL 12+. */
  standbySignal: boolean;
  recoverySignal: boolean;
  /**
   * recovery.conf: PostgreSQL 11 and older (restore writes it there). At the end of recovery
   * the server renames it to recovery.done; PostgreSQL 12+ refuses to start with one.
   */
  recoveryConf: boolean;
}

export function recoveryFiles(dataDir: string): RecoveryFiles {
  return {
    standbySignal: existsSync(join(dataDir, "standby.signal")),
    recoverySignal: existsSync(join(dataDir, "recovery.signal")),
    recoveryConf: existsSync(join(dataDir, "recovery.conf")),
  };
}

/**
 * What boot does with a data directory: "booted" when a server runs and nothing says it is in
 * recovery, "promote" when a server runs in recovery (12+ signal files or an 11-and-older
 * recovery.conf), "not-running" otherwise (STOP is set; boot is run again once it runs).
 */
export function bootDecision(running: boolean, files: RecoveryFiles): "booted" | "promote" | "not-running" {
  if (!running) return "not-running";
  return files.standbySignal || files.recoverySignal || files.recoveryConf ? "promote" : "booted";
}

/**
 * True once a promoted server has left recovery for good: no recovery file left (standby.signal
 * goes, recovery.conf becomes recovery.done), postmaster.pid says "ready" (PostgreSQL 10+; older
 * versions write no status), and pg_control says "in production" (the signal file goes before
 * the end-of-recovery record is written).
 */
export function promotionDone(files: RecoveryFiles, status: string, inProduction: boolean): boolean {
  return bootDecision(true, files) === "booted" && (status === "ready" || status === "") && inProduction;
}

/** `pause`: creates PAUSE; wal-restore then holds back all WAL from the standby. */
export async function pause(ctx: Context): Promise<void> {
  const c = control(ctx, "pause");
  if (await c.exists(PAUSE)) {
    ctx.log.info(`replay is already paused (${c.path(PAUSE)} exists)`);
    return;
  }
  await ctx.act(`create ${c.path(PAUSE)}`, () => c.create(PAUSE, `${new Date().toISOString()}\n`));
  if (!ctx.dryRun) ctx.log.info(`replay paused: ${c.path(PAUSE)} created`);
}

/** `continue`: removes PAUSE; the standby picks up WAL at its next retry. */
export async function resume(ctx: Context): Promise<void> {
  const c = control(ctx, "continue");
  if (!(await c.exists(PAUSE))) {
    ctx.log.info(`replay is not paused (no ${c.path(PAUSE)})`);
    return;
  }
  await ctx.act(`remove ${c.path(PAUSE)}`, () => c.remove(PAUSE));
  if (!ctx.dryRun) ctx.log.info("replay continues: PAUSE removed");
}

/**
 * `boot`: creates STOP, so wal-restore serves every complete segment and then the partial one;
 * waits until the standby has asked past the end of that WAL (wal-restore records it), and
 * only then promotes. PostgreSQL 12+ ends recovery on promote without asking restore_command
 * again, so promoting earlier would lose shipped WAL.
 */
export async function boot(ctx: Context): Promise<void> {
  if (ctx.config.role !== "slave") throw new UsageError("boot is a slave command: pass the slave's config file");
  const c = control(ctx, "boot");
  const dataDir = ctx.config.requirePath("slave_data", "boot");
  const timeoutS = Number.parseFloat(ctx.options.get("timeout") ?? "600");
  if (!Number.isFinite(timeoutS) || timeoutS <= 0)
    throw new UsageError("--timeout takes a number of seconds above zero");
  const pm = readPostmaster(dataDir);
  if (bootDecision(pm !== undefined, recoveryFiles(dataDir)) === "booted") {
    ctx.log.info(`${dataDir} is not in recovery: already booted`);
    return;
  }
  await ctx.act(`clear boot markers in ${c.dir}`, async () => {
    await c.remove(BOOT_END_OF_WAL);
    await c.remove(BOOT_PARTIAL_SERVED);
  });
  await ctx.act(`create ${c.path(STOP)}`, () => c.create(STOP, `${new Date().toISOString()}\n`));
  if (ctx.dryRun) {
    ctx.out(`[not really] wait for the standby to replay all shipped WAL, then promote ${dataDir}`);
    return;
  }
  if (!pm) {
    ctx.log.warn(`no server is running in ${dataDir}: STOP is set; start the server and run boot again to promote it`);
    return;
  }
  ctx.log.info(`STOP created; waiting for the standby (pid ${pm.pid}) to replay all complete and partial WAL`);
  const deadline = Date.now() + timeoutS * 1000;
  let lastNote = Date.now();
  while (!(await c.exists(BOOT_END_OF_WAL))) {
    if (!readPostmaster(dataDir))
      throw new WalmgrError(
        `the server in ${dataDir} stopped while booting`,
        ExitCode.DATABASE,
        "start it again and rerun boot",
      );
    if (Date.now() > deadline) {
      throw new WalmgrError(
        `the standby did not reach the end of the shipped WAL within ${timeoutS} s (STOP stays in place)`,
        ExitCode.NOT_AVAILABLE,
        "check the server log for replay errors; rerun boot (with a larger --timeout) to keep waiting",
      );
    }
    if (Date.now() - lastNote > 10_000) {
      ctx.log.info("still replaying…");
      lastNote = Date.now();
    }
    await sleep(200);
  }
  // What pg_ctl promote does (9.3 to 15 alike), without its refusal to run as root.
  writeFileDurable(join(dataDir, "promote"), Buffer.alloc(0));
  process.kill(pm.pid, "SIGUSR1");
  ctx.log.info(`all shipped WAL replayed; promoting ${dataDir}`);
  const promoteDeadline = Date.now() + Math.max(60, timeoutS) * 1000;
  for (;;) {
    const now = readPostmaster(dataDir);
    if (!now)
      throw new WalmgrError(`the server in ${dataDir} stopped while being promoted`, ExitCode.DATABASE, "see its log");
    if (promotionDone(recoveryFiles(dataDir), now.status, inProduction(dataDir))) break;
    if (Date.now() > promoteDeadline) {
      throw new WalmgrError(`${dataDir} did not finish promotion in time`, ExitCode.DATABASE, "see the server log");
    }
    await sleep(200);
  }
  ctx.log.info(`booted: ${dataDir} has left recovery and accepts writes`);
  // No longer a standby: its record in the registry must not hold WAL back (nor expire into warnings).
  try {
    const layout = slaveLayout(ctx.config, "boot");
    const name = standbyName(ctx.config);
    if (await removeStandby(layout.driver, layout.completed.path, name))
      ctx.log.info(`removed the record of standby ${JSON.stringify(name)}: purging no longer keeps WAL for it`);
  } catch (err) {
    ctx.log.warn(`cannot remove this standby's record from completed_wals: ${(err as Error).message}`);
  }
}
