/**
 * Crash tests: run one of our executables until it stops itself at a named point
 * (WALMGR_TEST_PAUSE_AT, see src/test-pause.ts), then kill it exactly there.
 */
import { readFileSync } from "node:fs";
import { spawnBin, waitFor, type Spawned } from "./env";

/** True when the process is stopped (state T in /proc/PID/stat). */
export function isStopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("T");
  } catch {
    return false;
  }
}

/** Starts `name args` as the server user and waits until it has stopped itself at `point`. */
export async function runUntilPause(name: string, args: string[], point: string): Promise<Spawned> {
  const s = spawnBin(name, args, { env: { WALMGR_TEST_PAUSE_AT: point } });
  let ended = false;
  void s.exited.then(() => (ended = true));
  await waitFor(
    `${name} to pause at ${point}`,
    () => {
      if (ended) throw new Error(`${name} ended without pausing at ${point}:\n${s.output()}`);
      return s.child.pid !== undefined && isStopped(s.child.pid);
    },
    120_000,
    20,
  );
  return s;
}

/** Sends `sig` to a paused process (and lets it go on, unless the signal is SIGKILL); resolves when it is gone. */
export async function signalPaused(
  s: Spawned,
  sig: NodeJS.Signals,
): Promise<{ status: number | null; signal: NodeJS.Signals | null }> {
  const pid = s.child.pid;
  if (pid === undefined) throw new Error("no pid");
  process.kill(pid, sig);
  if (sig !== "SIGKILL") process.kill(pid, "SIGCONT");
  return s.exited;
}
