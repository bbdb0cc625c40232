import { spawn } from "node:child_process";
import { hostname } from "node:os";
import { posix } from "node:path";
import { isLocal, loadConfig } from "../../config/load";
import type { Context } from "../../context";
import { ConfigError, ExitCode, LockHeldError, UsageError, WalmgrError, type ExitCodeValue } from "../../errors";
import { acquirePidfile, readPidfile } from "../../slavedir/pidfile";
import { removeStaleTemps } from "../../storage/durable";
import { PeriodicRunner } from "./periodic";
import { describeHolder } from "../../slavedir/lock";
import { DAEMON_STATE, type DaemonState } from "../../slavedir/daemon-state";
import { Shipper, syncOnce, type StepResult } from "./shipper";
import { writeBytes } from "../../storage/bytes";

/** Longest wait between attempts while the master or the slave directory is unreachable. */
export const MAX_BACKOFF_SEC = 30;
/** The daemon-state file is rewritten at most this often (and on every change of health). */
const HEARTBEAT_EVERY_MS = 5_000;
/** On SIGTERM/SIGINT, a step still waiting on the database after this long is aborted. */
const STOP_GRACE_MS = 5_000;

/** Seconds to wait after `failures` consecutive failures: doubling from loop_delay, capped. */
export function backoffSeconds(loopDelay: number, failures: number): number {
  if (failures <= 0) return loopDelay;
  return Math.min(MAX_BACKOFF_SEC, Math.max(1, loopDelay) * 2 ** Math.min(failures - 1, 10));
}

/** loop_delay, at least 0.1 s: the loader raises a smaller one, with a warning (settings.ts). */
function loopDelayOf(ctx: Context): number {
  return ctx.config.float("loop_delay");
}

function errorText(err: unknown): string {
  if (err instanceof WalmgrError) return err.message;
  return `internal error: ${(err as Error)?.stack ?? String(err)}`;
}

/** Settings the daemon cannot run without: checked at start (exit 3) and on reload (kept old). */
function checkSettings(ctx: Context): void {
  if (ctx.config.role !== "master") {
    throw new UsageError("the sync daemon runs on the master: pass the master's config file");
  }
  ctx.config.requirePath("master_data", "the sync daemon");
  ctx.config.requireLocation("partial_wals", "the sync daemon");
  if (ctx.config.bool("use_xlog_functions"))
    ctx.config.require("master_db", "the sync daemon (use_xlog_functions = 1)");
}

/**
 * `wal-sync CONFIG [--daemon]`, `wal-ctl CONFIG sync [--daemon]`: one step (syncOnce), or with
 * `--daemon`/`--detach` the daemon.
 */
export async function syncCommand(ctx: Context): Promise<ExitCodeValue | void> {
  if (ctx.options.has("daemon") || ctx.options.has("detach")) return syncDaemon(ctx);
  return syncOnce(ctx);
}

/**
 * `wal-sync CONFIG --daemon` / `wal-ctl CONFIG syncdaemon`: ships the in-progress WAL every
 * loop_delay seconds until SIGTERM/SIGINT (or `wal-ctl stop`), then removes its pidfile and exits
 * 0. Failures (master down or restarting, slave directory unreachable) are logged once per
 * attempt and retried with a doubling delay capped at 30 s. SIGHUP re-reads the config file.
 * `-d` starts it detached.
 */
export async function syncDaemon(ctx: Context): Promise<ExitCodeValue | void> {
  checkSettings(ctx);
  if (ctx.options.has("detach") && process.env.WALMGR_DETACHED === undefined && !ctx.dryRun) {
    return detach(ctx);
  }
  if (ctx.dryRun) {
    ctx.out(`[not really] run the sync daemon: ship every ${loopDelayOf(ctx)} s until stopped; one step follows`);
    const shipper = new Shipper(ctx);
    try {
      await shipper.step();
    } finally {
      await shipper.close();
    }
    return;
  }
  const pidfile = ctx.config.path("pidfile");
  if (pidfile) {
    const release = await acquirePidfile(pidfile, ctx.config.file, (msg) => ctx.log.warn(msg));
    ctx.onCleanup(release);
  } else {
    ctx.log.warn(
      `${ctx.config.where("pidfile")} is not set: nothing keeps a second daemon from starting, and wal-ctl stop cannot find this one`,
    );
  }
  return new Daemon(ctx).run();
}

class Daemon {
  private shipper: Shipper;
  private periodic: PeriodicRunner;
  private loopDelay: number;
  private stopping: string | undefined;
  private reloadWanted = false;
  private wake: (() => void) | undefined;
  private failures = 0;
  private lastError: string | undefined;
  private lastHeartbeat = 0;
  private readonly started = new Date().toISOString();
  private masterLsn: string | undefined;

  constructor(private readonly ctx: Context) {
    this.shipper = new Shipper(ctx, "daemon");
    this.shipper.quiet = true;
    this.periodic = new PeriodicRunner(ctx);
    this.loopDelay = loopDelayOf(ctx);
  }

  private describe(): string {
    return `${this.shipper.recordMode ? "record mode (use_xlog_functions = 1)" : "file mode (use_xlog_functions = 0)"}, loop_delay ${this.loopDelay} s, to ${this.shipper.dir}`;
  }

  async run(): Promise<ExitCodeValue> {
    const ctx = this.ctx;
    const unStop = ctx.onStopSignal((sig) => this.stop(sig));
    const onHup = (): void => {
      this.reloadWanted = true;
      this.wake?.();
    };
    process.on("SIGHUP", onHup);
    ctx.log.info(`sync daemon started (pid ${process.pid}): ${this.describe()}`);
    const layout = this.shipper.layout;
    if (isLocal(layout.completed)) removeStaleTemps(this.shipper.dir);
    try {
      await this.takeLockAtStart();
      while (!this.stopping) {
        if (this.reloadWanted) await this.reload();
        const delay = await this.once();
        if (this.stopping) break;
        await this.sleep(delay * 1000);
      }
    } finally {
      process.removeListener("SIGHUP", onHup);
      unStop();
      await this.shipper.close();
    }
    await this.heartbeat(true);
    try {
      await this.shipper.lock?.release();
    } catch (err) {
      ctx.log.warn(`cannot release ${this.shipper.lock?.path ?? ""}: ${errorText(err)}`);
    }
    if (this.periodic.busy) {
      ctx.log.warn(`periodic_command is still running (pid ${this.periodic.childPid ?? "?"}); not waiting for it`);
    }
    const last = this.shipper.lastState;
    ctx.log.info(
      `sync daemon stopped (${this.stopping ?? "?"})${last ? `; last shipped ${last.name} up to ${last.lsn || `offset ${last.offset}`}` : ""}`,
    );
    return ExitCode.OK;
  }

  /**
   * Takes SYNC_LOCK before the first step: another daemon holding it (or a holder that cannot
   * be checked from here) ends this one with exit 4, naming it. A one-shot sync holding it, or
   * an unreachable slave directory, is left to the loop, which takes the lock when it can.
   */
  private async takeLockAtStart(): Promise<void> {
    const lock = this.shipper.lock;
    if (!lock) return;
    let res;
    try {
      res = await lock.take();
    } catch (err) {
      this.ctx.log.warn(`cannot take ${lock.path} yet: ${errorText(err)}; retrying in the loop`);
      return;
    }
    if (res.taken) return;
    if (res.holder?.role === "daemon" || res.verdict.state === "unknown") throw this.shipper.lockHeld(res);
    this.ctx.log.info(`${describeHolder(res.holder, res.raw)} holds ${lock.path}: shipping starts when it is done`);
  }

  private stop(sig: string): void {
    if (this.stopping) return;
    this.stopping = sig;
    this.ctx.log.info(`${sig}: stopping after the current step`);
    this.wake?.();
    // A step stuck waiting on the database is aborted: writes to the slave are synchronous, so
    // none can be cut in half by this.
    setTimeout(() => void this.shipper.close(), STOP_GRACE_MS).unref();
  }

  /** One step plus its bookkeeping; returns the seconds to wait before the next. */
  private async once(): Promise<number> {
    const ctx = this.ctx;
    let result: StepResult | undefined;
    try {
      result = await this.shipper.step();
      if (this.failures > 0) {
        ctx.log.info(`sync works again after ${this.failures} failed attempt(s)`);
        this.lastHeartbeat = 0; // health changed: record it now
      }
      this.failures = 0;
      this.lastError = undefined;
      if (result.masterLsn) this.masterLsn = result.masterLsn;
      if (result.shipped > 0) ctx.log.debug(`shipped ${result.shipped} bytes (${result.segment ?? "?"})`);
    } catch (err) {
      if (this.stopping) return 0;
      this.failures++;
      this.lastError = errorText(err);
      const wait = backoffSeconds(this.loopDelay, this.failures);
      ctx.log.warn(`sync failed (attempt ${this.failures}): ${this.lastError}; retrying in ${wait} s`);
      this.lastHeartbeat = 0;
    }
    await this.runPeriodic(result);
    await this.heartbeat(false);
    return backoffSeconds(this.loopDelay, this.failures);
  }

  private async runPeriodic(result: StepResult | undefined): Promise<void> {
    if (!this.periodic.command || this.stopping) return;
    // command_interval = 0: at every segment switch (walmgr evaluated it at log switches).
    const interval = this.ctx.config.float("command_interval");
    if (interval <= 0 && !result?.switched) return;
    // Not awaited: shipping goes on while it runs. A failure (the slave directory where its
    // state is kept unreachable) is a warning, never the end of the daemon.
    this.periodic.runIfDue(interval <= 0).catch((err: unknown) => {
      this.ctx.log.warn(`periodic_command: ${errorText(err)}`);
    });
  }

  private async heartbeat(final: boolean): Promise<void> {
    const now = Date.now();
    if (!final && now - this.lastHeartbeat < HEARTBEAT_EVERY_MS) return;
    this.lastHeartbeat = now;
    const src = this.shipper.source;
    const state: DaemonState = {
      pid: process.pid,
      host: hostname(),
      started: this.started,
      mode: this.shipper.recordMode ? "record" : "file",
      loopDelay: this.loopDelay,
      heartbeat: new Date(now).toISOString(),
      failures: this.failures,
      ...(this.masterLsn ? { masterLsn: this.masterLsn } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(final ? { stopped: new Date(now).toISOString() } : {}),
      ...(src.timeline !== undefined ? { timeline: src.timeline } : {}),
      ...(src.systemId !== undefined ? { systemId: src.systemId } : {}),
      ...(src.masterData ? { masterData: src.masterData } : {}),
      config: src.config,
    };
    try {
      await writeBytes(
        this.shipper.layout.driver,
        posix.join(this.shipper.dir, DAEMON_STATE),
        Buffer.from(`${JSON.stringify(state)}\n`),
      );
    } catch (err) {
      // The slave directory is having a hiccup; the step's own failure says so.
      this.ctx.log.debug(`cannot write ${DAEMON_STATE}: ${errorText(err)}`);
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  /** SIGHUP: re-read the config file; a bad file keeps the old settings. */
  private async reload(): Promise<void> {
    this.reloadWanted = false;
    const ctx = this.ctx;
    const old = ctx.config;
    const before = this.describe();
    try {
      const next = loadConfig(old.file);
      ctx.config = next;
      checkSettings(ctx);
      const shipper = new Shipper(ctx, "daemon");
      shipper.quiet = true;
      await this.shipper.close();
      const oldLock = this.shipper.lock;
      if (oldLock && shipper.lock && oldLock.key === shipper.lock.key) {
        shipper.lock = oldLock; // same partial_wals: keep holding it
      } else {
        await oldLock?.release(); // the new one is taken by the next step
      }
      this.shipper = shipper;
      this.periodic = new PeriodicRunner(ctx);
      this.loopDelay = loopDelayOf(ctx);
    } catch (err) {
      ctx.config = old;
      ctx.log.error(`SIGHUP: cannot reload ${old.file}, keeping the old settings: ${errorText(err)}`);
      return;
    }
    const logfile = ctx.config.path("logfile");
    ctx.log.configure({ jobName: ctx.config.jobName, ...(logfile ? { logfile } : {}) });
    for (const w of ctx.config.warnings) ctx.log.warn(w);
    if (old.path("pidfile") !== ctx.config.path("pidfile")) {
      ctx.log.warn("SIGHUP: pidfile changed; the new one takes effect when the daemon is restarted");
    }
    const after = this.describe();
    ctx.log.info(`SIGHUP: reloaded ${old.file}${before === after ? " (no change to shipping)" : `: now ${after}`}`);
    this.lastHeartbeat = 0;
  }
}

/**
 * `-d`: start this same command again, detached (own session, no terminal), and return once it
 * has written its pidfile. Its start-up messages are relayed until then; afterwards it logs to
 * `logfile` only.
 */
async function detach(ctx: Context): Promise<ExitCodeValue> {
  const pidfile = ctx.config.path("pidfile");
  if (!pidfile) {
    throw new ConfigError(`${ctx.config.where("pidfile")} is missing: -d (detach) needs it`, "add 'pidfile = …'");
  }
  const held = readPidfile(pidfile, ctx.config.file);
  if (held.kind === "running") {
    throw new LockHeldError(
      `a sync daemon is already running (pid ${held.pid}, pidfile ${pidfile})`,
      "stop it first (wal-ctl CONFIG stop)",
    );
  }
  if (!ctx.config.has("logfile")) ctx.log.warn("logfile is not set: the detached daemon's messages go nowhere");
  const child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1)], {
    detached: true,
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, WALMGR_DETACHED: String(process.pid) },
  });
  child.stderr?.on("data", (chunk: Buffer) => process.stderr.write(chunk));
  const exited = new Promise<number>((resolve) =>
    child.once("exit", (code, signal) => resolve(code ?? (signal ? ExitCode.INTERNAL : 0))),
  );
  const deadline = Date.now() + 30_000;
  for (;;) {
    const st = readPidfile(pidfile, ctx.config.file);
    if (st.kind === "running" && st.pid === child.pid) break;
    const code = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 100))]);
    if (code !== undefined) {
      ctx.log.error(`the detached sync daemon exited with status ${code} before it started`);
      return (code === 0 ? ExitCode.INTERNAL : code) as ExitCodeValue;
    }
    if (Date.now() > deadline) {
      throw new WalmgrError(
        `the detached sync daemon (pid ${child.pid ?? "?"}) did not write ${pidfile} within 30 s`,
        ExitCode.INTERNAL,
        "see the logfile",
      );
    }
  }
  child.stderr?.destroy();
  child.unref();
  ctx.log.info(`sync daemon started in the background (pid ${child.pid ?? "?"}, pidfile ${pidfile})`);
  return ExitCode.OK;
}
