/**
 * The points where the WALMGR_TEST_CRASH_AT hook can kill `wal-ctl restore`, in the order a
 * restore that moves the newest set into slave_data passes them (the journal's steps among them:
 * each is a crash point once the journal names it). The crash tests kill a restore at each of
 * these, so a point added here is covered there.
 */
export const RESTORE_CRASH_POINTS = [
  "journal",
  "pending",
  "claimed",
  "prepare",
  "settings",
  "swap",
  "old-aside",
  "swapped",
  "finish",
  "start",
  "started",
] as const;

/**
 * Crash points only some runs pass: a set copied rather than moved (a named set, or another file
 * system), a set with tablespaces, and the breaker of a stale lock (slavedir/lock.ts).
 */
export const OTHER_CRASH_POINTS = [
  "set-copied",
  "tablespaces-claimed",
  "tablespace-copied",
  "tablespace-moved",
  "tablespace-linked",
  "stale-lock-removed",
] as const;

/** Every name WALMGR_TEST_CRASH_AT can take: a point not declared above does not compile. */
export type CrashPoint = (typeof RESTORE_CRASH_POINTS)[number] | (typeof OTHER_CRASH_POINTS)[number];

/**
 * Test hook: with WALMGR_TEST_CRASH_AT=<point> in the environment the process kills itself with
 * SIGKILL at that named point, as a crash would. Inert otherwise. Below every layer, so that the
 * lock code (stale-lock-removed) and restore's journal (its steps) can both name points.
 */
export function crashPoint(point: CrashPoint): void {
  if (process.env.WALMGR_TEST_CRASH_AT === point) process.kill(process.pid, "SIGKILL");
}
