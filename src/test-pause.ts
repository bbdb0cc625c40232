import { writeStderr } from "./log";

/**
 * A test-only stop at a named point of a command (a backup, a restore, a batch, a check), so
 * that a test can kill it exactly there:
 * with WALMGR_TEST_PAUSE_AT=NAME in the environment the process stops itself (SIGSTOP) when it
 * reaches NAME, and goes on when continued (SIGCONT). Without the variable it does nothing.
 * The short wait after the stop lets a signal sent meanwhile be handled at this very point.
 */
export async function testPause(point: string): Promise<void> {
  if (process.env.WALMGR_TEST_PAUSE_AT !== point) return;
  writeStderr(`walmgr test pause at ${point} (pid ${process.pid})\n`);
  process.kill(process.pid, "SIGSTOP");
  await new Promise((r) => setTimeout(r, 200));
}
