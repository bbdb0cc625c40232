/** `stop`: archiving turned off (archive-settings.ts), then the sync daemon stopped. */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Context } from "../../context";
import { processAlive } from "../../proc";
import { walDirOf } from "../../pg/wal-dir";
import { ACK_DIR } from "../archive/acks";
import { applyArchiveSettings, isOff } from "./archive-settings";

/** `stop`: turns archiving off in master_config (checked with SHOW); WAL is no longer shipped afterwards. */
export async function stopArchiving(ctx: Context): Promise<void> {
  const canRestart = ctx.config.has("master_restart_cmd");
  try {
    // Without a restart archive_mode stays on; '/bin/true' then keeps pg_wal from filling up.
    await applyArchiveSettings(
      ctx,
      canRestart
        ? {
            command: "stop",
            values: () => ({ archive_mode: "off" }),
            accept: { archive_mode: isOff },
            goal: "turning archiving off",
            marker: "set by walmgr-ts stop",
          }
        : {
            command: "stop",
            values: () => ({ archive_command: "/bin/true" }),
            accept: { archive_command: (v) => v === "/bin/true" },
            goal: "turning archiving off (archive_command = '/bin/true')",
            marker: "set by walmgr-ts stop",
          },
    );
    ctx.log.warn("ARCHIVING IS OFF: WAL is no longer shipped to the slave; a standby restored from it falls behind");
    // Segments archived ahead and not yet acknowledged: no call will come for them now, and each
    // record holds its segment's blocks.
    const dataDir = ctx.config.path("master_data");
    const acks = dataDir === undefined ? undefined : join(walDirOf(dataDir), ACK_DIR);
    if (acks !== undefined && existsSync(acks))
      await ctx.act(`remove ${acks}`, () => rmSync(acks, { recursive: true, force: true }));
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
  const { readPidfile } = await import("../../slavedir/pidfile.js");
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
