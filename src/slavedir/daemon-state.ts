/**
 * The sync daemon's heartbeat file in partial_wals: written by the daemon (command/sync/daemon.ts), read by
 * `status` without loading the daemon itself.
 */
import { posix } from "node:path";
import type { SlaveLayout } from "./layout";
import { readJson } from "../storage/bytes";

/** Kept in partial_wals by the daemon: who ships, how often, and when it last looked. */
export const DAEMON_STATE = ".walmgr-daemon-state";

/** What DAEMON_STATE holds. */
export interface DaemonState {
  pid: number;
  host: string;
  started: string;
  mode: "record" | "file";
  loopDelay: number;
  /** Last time the daemon completed a loop (or tried to). */
  heartbeat: string;
  /** The master's WAL position at the heartbeat (record mode). */
  masterLsn?: string;
  /** Consecutive failed steps, and the last failure. */
  failures: number;
  lastError?: string;
  /** Set when the daemon stopped cleanly. */
  stopped?: string;
  /**
   * What it ships from (missing in heartbeats of older versions): the master's timeline once it
   * was asked, its database system identifier, and its data directory and config file. An old
   * master's daemon left running after a failover is told apart by them.
   */
  timeline?: number;
  systemId?: string;
  masterData?: string;
  config?: string;
}

/** The daemon's last heartbeat in partial_wals folder `dir`; undefined when there is none (or it is not JSON). */
export async function readDaemonState(layout: SlaveLayout, dir: string): Promise<DaemonState | undefined> {
  return readJson<DaemonState>(layout.driver, posix.join(dir, DAEMON_STATE));
}
