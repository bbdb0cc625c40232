/**
 * The sync's files in partial_wals: its state (how far the in-progress segment has been shipped,
 * and by whom) and the name of its lock. Written by the sync (command/sync/shipper.ts), read by status,
 * check and the monitors without loading the sync itself.
 */
import { posix } from "node:path";
import type { SlaveLayout } from "./layout";
import { readBytes } from "../storage/bytes";
import { parseWalName } from "../wal/names";

/** Kept in partial_wals: how far the in-progress segment has been shipped. */
export const SYNC_STATE = ".walmgr-sync-state";

export interface SyncState {
  /** Segment shipped last, how far (bytes into it), the LSN that is, and when. */
  name: string;
  offset: number;
  lsn: string;
  time: string;
  /**
   * Who shipped it (missing in states written by older versions): the master's timeline (the
   * same as `name`'s), its database system identifier, the host and master data directory the
   * sync ran on. Another master's sync (an old master left running after a failover) writes a
   * state of its own timeline: positions of two timelines are never compared.
   */
  timeline?: number;
  systemId?: string;
  host?: string;
  masterData?: string;
}

/** The timeline a sync state is of: its own field, else its segment's name (older states). */
export function syncStateTimeline(st: SyncState): number | undefined {
  if (typeof st.timeline === "number") return st.timeline;
  return parseWalName(st.name)?.timeline;
}

/**
 * Kept in partial_wals while a sync writes there: the sync daemon holds it for as long as it
 * runs, a one-shot sync for its one step. Every writer of partial_wals takes it first, so a
 * one-shot sync beside the daemon never writes into a file the other replaces.
 */
export const SYNC_LOCK = ".walmgr-sync-lock";
/** Programs that may hold SYNC_LOCK. */
export const SYNC_PROGRAMS = ["wal-sync", "wal-ctl"] as const;

/** The sync state in partial_wals folder `dir`; undefined when there is none (or it is not one). */
export async function readSyncState(layout: SlaveLayout, dir: string): Promise<SyncState | undefined> {
  return parseSyncState(await readBytes(layout.driver, posix.join(dir, SYNC_STATE)));
}

/** A sync state file's content, or undefined for one that is not a sync state. */
export function parseSyncState(raw: Buffer | undefined): SyncState | undefined {
  if (!raw) return undefined;
  try {
    const st = JSON.parse(raw.toString("utf8")) as SyncState;
    return typeof st.name === "string" && typeof st.offset === "number" ? st : undefined;
  } catch {
    return undefined;
  }
}
