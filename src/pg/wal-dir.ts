import { existsSync } from "node:fs";
import { join } from "node:path";

/**
 * The WAL folder of a data directory: pg_wal, or pg_xlog before PostgreSQL 10 (a data directory
 * holding pg_xlog and no pg_wal). One holding neither (not made yet, or not a data directory)
 * gets pg_wal, so messages name the folder today's servers have. Setup, the sync, restore's
 * pg_wal link and the archiver's backlog all ask here.
 */
export function walDirOf(dataDir: string): string {
  return join(dataDir, walDirName(dataDir));
}

/** The name of the WAL folder under `dataDir`: `pg_wal`, or `pg_xlog` (see walDirOf). */
export function walDirName(dataDir: string): "pg_wal" | "pg_xlog" {
  return !existsSync(join(dataDir, "pg_wal")) && existsSync(join(dataDir, "pg_xlog")) ? "pg_xlog" : "pg_wal";
}
