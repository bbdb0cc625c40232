/** The restore prefetcher from the outside: tests and benchmarks stop it through its lock. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

/** Kills (SIGKILL) the prefetcher that holds `dataDir`'s spool lock, if there is one. */
export function killPrefetcher(dataDir: string): void {
  try {
    const lock = join(dataDir, "pg_wal", ".walmgr-prefetch", "lock");
    process.kill((JSON.parse(readFileSync(lock, "utf8")) as { pid: number }).pid, "SIGKILL");
  } catch {
    // no lock, or its holder is gone
  }
}
