/**
 * Test hook: with WALMGR_TEST_CRASH_AT=<point> in the environment the process kills itself with
 * SIGKILL at that named point, as a crash would. Inert otherwise. Below every layer, so that the
 * lock code (stale-lock-removed) and restore's journal (its steps) can both name points.
 */
export function crashPoint(point: string): void {
  if (process.env.WALMGR_TEST_CRASH_AT === point) process.kill(process.pid, "SIGKILL");
}
