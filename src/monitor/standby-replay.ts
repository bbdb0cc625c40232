/**
 * The standby server in slave_data, as it sees its own replay: how far it has replayed and
 * received, when the last replayed transaction committed on the master, and whether replay is
 * paused. Two different pauses exist and both are reported: walmgr's PAUSE control file (made
 * by `pause`: wal-restore then holds back new WAL, so the server waits for WAL it is not given
 * and reports itself "not paused"), and the server's own pg_wal_replay_pause().
 */
import type { Config } from "../config/load";
import { PAUSE } from "../slavedir/control";
import { controlFilesFor } from "../slavedir/layout";
import { connectStandby, type Db } from "../pg/client";
import { driverFor } from "../storage/open";
import { ageSeconds, DB_TIMEOUT_MS, errorText, STORAGE_TIMEOUT_S, withTimeout } from "./timeout";

/** The standby server's replay. Fields past `reason` are set only while it runs. */
export interface StandbyReplay {
  running: boolean;
  /** Why it is not running, or why the rest could not be read. */
  reason?: string;
  inRecovery?: boolean;
  replayLsn?: string | null;
  receiveLsn?: string | null;
  /** Commit time (on the master) of the last transaction replayed. */
  lastReplayTime?: string | null;
  /**
   * Seconds since that commit: the usual replay-lag measure. It also grows while the master
   * commits nothing, so read it together with the backlog, not alone. null when unknown.
   */
  replayLagSeconds?: number | null;
  /** Replay is held: walmgr's PAUSE file exists, or the server paused (or was asked to). */
  paused?: boolean;
  /**
   * Which pause holds: "not paused", "pause requested", "paused" (the server's own, see
   * pg_get_wal_replay_pause_state), "PAUSE file" (walmgr's; the server waits for WAL), "PAUSE
   * file and paused", "PAUSE file and pause requested", or "not in recovery" (booted).
   */
  pauseState?: string;
  /** The server's own pause state ("not paused", "pause requested", "paused"). */
  serverPauseState?: string;
  /** walmgr's PAUSE control file exists (undefined: it could not be looked at). */
  pauseFile?: boolean;
  /** Why the PAUSE file could not be looked at. */
  pauseFileError?: string;
}

/** Whether this standby's PAUSE control file exists (in completed_wals, or control_dir on S3). */
async function pauseFileState(config: Config): Promise<{ pauseFile?: boolean; pauseFileError?: string }> {
  try {
    const completed = config.requireLocation("completed_wals", "status");
    const driver = driverFor(completed, config, { timeout: STORAGE_TIMEOUT_S });
    const control = controlFilesFor(config, completed, driver);
    return {
      pauseFile: await withTimeout(control.exists(PAUSE), STORAGE_TIMEOUT_S * 1000, "the PAUSE file's storage"),
    };
  } catch (err) {
    return { pauseFileError: errorText(err) };
  }
}

/** The server's own pause state, by the function its version has. */
async function serverPauseState(db: Db): Promise<string> {
  if (db.serverVersion >= 140000) {
    return (await db.one<{ s: string }>("SELECT pg_get_wal_replay_pause_state() AS s")).s;
  }
  const fn = db.serverVersion >= 100000 ? "pg_is_wal_replay_paused()" : "pg_is_xlog_replay_paused()";
  return (await db.one<{ p: boolean }>(`SELECT ${fn} AS p`)).p ? "paused" : "not paused";
}

/** The two pauses as one: `pauseState` names which holds. */
function combinePause(server: string, file: boolean | undefined): { paused: boolean; pauseState: string } {
  // "pause requested" counts as paused: replay stops before the next record it would apply.
  const serverHolds = server !== "not paused";
  if (file === true) return { paused: true, pauseState: serverHolds ? `PAUSE file and ${server}` : "PAUSE file" };
  return { paused: serverHolds, pauseState: server };
}

/**
 * Asks the standby in slave_data (slave_db, or the socket of its postmaster.pid) how far it has
 * replayed. A server that is not running, or does not answer within DB_TIMEOUT_MS, is
 * `running: false` with the reason: never an error.
 */
export async function standbyReplay(config: Config, now: number = Date.now()): Promise<StandbyReplay> {
  const pause = await pauseFileState(config);
  let db: Db;
  try {
    db = await withTimeout(connectStandby(config, "status"), DB_TIMEOUT_MS, "the standby", (late) => {
      void late.close();
    });
  } catch (err) {
    return { running: false, reason: errorText(err), ...pause };
  }
  try {
    return await withTimeout(replayOf(db, now, pause), DB_TIMEOUT_MS, `the standby (${db.where})`);
  } catch (err) {
    return { running: true, reason: errorText(err), ...pause };
  } finally {
    await db.close();
  }
}

async function replayOf(
  db: Db,
  now: number,
  pause: { pauseFile?: boolean; pauseFileError?: string },
): Promise<StandbyReplay> {
  // A server that accepted the connection and then stalls must not hold status up.
  await db.query("SET statement_timeout = 5000");
  const v10 = db.serverVersion >= 100000;
  const replayFn = v10 ? "pg_last_wal_replay_lsn()" : "pg_last_xlog_replay_location()";
  const receiveFn = v10 ? "pg_last_wal_receive_lsn()" : "pg_last_xlog_receive_location()";
  const row = await db.one<{
    in_recovery: boolean;
    replay_lsn: string | null;
    receive_lsn: string | null;
    replay_time: number | null;
  }>(
    `SELECT pg_is_in_recovery() AS in_recovery, ${replayFn}::text AS replay_lsn, ${receiveFn}::text AS receive_lsn,
       extract(epoch FROM pg_last_xact_replay_timestamp())::float8 AS replay_time`,
  );
  const out: StandbyReplay = {
    running: true,
    inRecovery: row.in_recovery,
    replayLsn: row.replay_lsn,
    receiveLsn: row.receive_lsn,
    lastReplayTime: row.replay_time === null ? null : new Date(row.replay_time * 1000).toISOString(),
    replayLagSeconds: row.replay_time === null ? null : ageSeconds(row.replay_time * 1000, now),
    ...pause,
  };
  if (!row.in_recovery) {
    // Booted: nothing is replayed any more, whatever PAUSE says (the pause functions would fail).
    return { ...out, paused: false, pauseState: "not in recovery" };
  }
  const server = await serverPauseState(db);
  return { ...out, serverPauseState: server, ...combinePause(server, pause.pauseFile) };
}
