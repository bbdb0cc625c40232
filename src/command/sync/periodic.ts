import { spawn } from "node:child_process";
import { posix } from "node:path";
import type { Context } from "../../context";
import { IoError, UsageError } from "../../errors";
import { slaveLayout, type SlaveLayout } from "../../slavedir/layout";
import { writeBytes } from "../../storage/bytes";
import { PERIODIC_STATE, readPeriodicState, type PeriodicState } from "../../slavedir/periodic-state";

/** "exited with status 3" / "was killed by SIGKILL": the real outcome, never a re-decoded one. */
export function describeExit(status: number | null | undefined, signal: string | null | undefined): string {
  if (signal) return `was killed by ${signal}`;
  return `exited with status ${status ?? "?"}`;
}

/**
 * Due when `interval` seconds have passed since the last run started (or it never ran). A failed
 * run counts as a run: it is tried again after the next interval, not on every loop.
 */
export function periodicDue(state: PeriodicState | undefined, intervalSec: number, now = Date.now()): boolean {
  if (!state) return true;
  const last = Date.parse(state.started);
  if (!Number.isFinite(last)) return true;
  return now - last >= intervalSec * 1000;
}

/**
 * Runs periodic_command (through /bin/sh -c, as written) without blocking the caller's event
 * loop: the daemon keeps shipping while it runs. Resolves with its outcome; never rejects. A
 * failure is logged as a warning with the command's real exit status (or signal).
 */
export class PeriodicRunner {
  private running: Promise<PeriodicState> | undefined;
  private pid: number | undefined;

  constructor(private readonly ctx: Context) {}

  get busy(): boolean {
    return this.running !== undefined;
  }

  get childPid(): number | undefined {
    return this.pid;
  }

  get command(): string | undefined {
    const c = this.ctx.config.get("periodic_command");
    return c && c.trim() !== "" ? c : undefined;
  }

  private target(): { layout: SlaveLayout; dir: string } {
    return {
      layout: slaveLayout(this.ctx.config, "periodic"),
      dir: this.ctx.config.requireLocation("partial_wals", "periodic").path,
    };
  }

  async lastState(): Promise<PeriodicState | undefined> {
    const { layout, dir } = this.target();
    return readPeriodicState(layout, dir);
  }

  /** Starts the command when due (no-op while a run is still going). */
  async runIfDue(force = false): Promise<PeriodicState | undefined> {
    const cmd = this.command;
    if (!cmd || this.running) return undefined;
    const interval = this.ctx.config.float("command_interval");
    if (!force && !periodicDue(await this.lastState(), interval)) return undefined;
    return this.start(cmd);
  }

  private start(cmd: string): Promise<PeriodicState> {
    const ctx = this.ctx;
    const state: PeriodicState = { started: new Date().toISOString() };
    const p = (async (): Promise<PeriodicState> => {
      const { layout, dir } = this.target();
      const save = async (): Promise<void> => {
        try {
          await writeBytes(layout.driver, posix.join(dir, PERIODIC_STATE), Buffer.from(`${JSON.stringify(state)}\n`));
        } catch (err) {
          ctx.log.warn(`cannot record the periodic_command run: ${(err as Error).message}`);
        }
      };
      if (ctx.dryRun) {
        ctx.out(`[not really] run periodic_command: ${cmd}`);
        return state;
      }
      await save();
      ctx.log.info(`running periodic_command: ${cmd}`);
      const outcome = await new Promise<{ status: number | null; signal: string | null; error?: string }>((resolve) => {
        const child = spawn("/bin/sh", ["-c", cmd, "walmgr-ts"], { stdio: ["ignore", "inherit", "inherit"] });
        this.pid = child.pid;
        child.once("error", (err) => resolve({ status: null, signal: null, error: err.message }));
        child.once("exit", (status, signal) => resolve({ status, signal }));
      });
      this.pid = undefined;
      state.ended = new Date().toISOString();
      state.status = outcome.status;
      state.signal = outcome.signal;
      if (outcome.error) state.error = outcome.error;
      await save();
      if (outcome.error) {
        ctx.log.warn(
          `periodic_command could not be started: ${outcome.error} (${ctx.config.where("periodic_command")})`,
        );
      } else if (outcome.status !== 0) {
        ctx.log.warn(
          `periodic_command (${cmd}) ${describeExit(outcome.status, outcome.signal)}; it runs again in ${ctx.config.float("command_interval")} s`,
        );
      } else {
        ctx.log.info("periodic_command finished (status 0)");
      }
      return state;
    })().finally(() => {
      this.running = undefined;
    });
    this.running = p;
    return p;
  }
}

/**
 * `wal-ctl CONFIG periodic`: runs periodic_command once when command_interval seconds have passed
 * since its last run (as walmgr.py did; `--force` runs it regardless). Exits 9 when the command
 * fails, naming its exit status.
 */
export async function periodic(ctx: Context): Promise<void> {
  if (ctx.config.role !== "master") throw new UsageError("periodic runs on the master: pass the master's config file");
  const runner = new PeriodicRunner(ctx);
  if (!runner.command) {
    ctx.log.info(`periodic_command is not set in ${ctx.config.file}: nothing to run`);
    return;
  }
  const state = await runner.runIfDue(ctx.options.has("force"));
  if (!state) {
    const last = await runner.lastState();
    ctx.log.info(
      `periodic_command last ran at ${last?.started ?? "?"}; command_interval is ${ctx.config.float("command_interval")} s: not due yet (--force runs it now)`,
    );
    return;
  }
  if (ctx.dryRun) return;
  if (state.error) throw new IoError(`periodic_command could not be started: ${state.error}`);
  if (state.status !== 0) {
    throw new IoError(
      `periodic_command (${runner.command}) ${describeExit(state.status, state.signal)}`,
      `check the command in ${ctx.config.where("periodic_command")} by running it by hand`,
    );
  }
}
