/** The restore prefetcher from the outside: tests and benchmarks stop it through its lock. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { processAlive } from "../../src/proc";
import { waitFor } from "./env";

function lockHolder(dataDir: string): number | undefined {
  try {
    const lock = join(dataDir, "pg_wal", ".walmgr-prefetch", "lock");
    return (JSON.parse(readFileSync(lock, "utf8")) as { pid: number }).pid;
  } catch {
    return undefined; // no lock (or one being written)
  }
}

/** Kills (SIGKILL) the prefetcher that holds `dataDir`'s spool lock, if there is one. */
export function killPrefetcher(dataDir: string): void {
  const pid = lockHolder(dataDir);
  if (pid === undefined) return;
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // its holder is gone
  }
}

/**
 * Waits until a live prefetcher holds `dataDir`'s spool lock (one a wal-restore call has just
 * started: a lock left by a killed one does not count), then kills it.
 */
export async function stopStartedPrefetcher(dataDir: string): Promise<void> {
  await waitFor(
    "a live prefetcher",
    () => {
      const pid = lockHolder(dataDir);
      return pid !== undefined && processAlive(pid);
    },
    30_000,
    20,
  );
  killPrefetcher(dataDir);
}
