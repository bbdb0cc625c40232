/**
 * periodic_command's record in partial_wals: when it last started and how it ended. Written by
 * the periodic runner (command/sync/periodic.ts), read by status.
 */
import { posix } from "node:path";
import type { SlaveLayout } from "./layout";
import { readJson } from "../storage/bytes";

/** Kept in partial_wals: when periodic_command was last started, and how it ended. */
export const PERIODIC_STATE = ".walmgr-periodic-state";

export interface PeriodicState {
  /** When the last run started (ISO time). */
  started: string;
  /** When it ended; absent while running (or when the runner died). */
  ended?: string;
  /** Exit status, or the signal that killed it. */
  status?: number | null;
  signal?: string | null;
  error?: string;
}

/** The last periodic_command run recorded in partial_wals folder `dir`; undefined when none (or not JSON). */
export async function readPeriodicState(layout: SlaveLayout, dir: string): Promise<PeriodicState | undefined> {
  return readJson<PeriodicState>(layout.driver, posix.join(dir, PERIODIC_STATE));
}
