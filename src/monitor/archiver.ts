/**
 * The master's archiver, seen two ways: the `.ready` files PostgreSQL leaves in
 * pg_wal/archive_status until archive_command succeeds for them (the backlog), and
 * pg_stat_archiver (its own counters). Both are needed: pg_stat_archiver counts a failure only
 * when archive_command exits non-zero, so a command that hangs, or an archiver that is not
 * running, leaves failed_count at 0 while the backlog grows.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { ioError, isErrno } from "../errors";
import type { Db } from "../pg/client";
import { walDirOf } from "../pg/wal-dir";
import { ageSeconds } from "./timeout";

/** The `.ready` backlog of a master's data directory. */
export interface ReadyBacklog {
  /** WAL files (segments, .history, .backup) PostgreSQL has not archived yet. */
  count: number;
  /** The one waiting longest (oldest .ready file), or null when none waits. */
  oldest: string | null;
  /** How long it has waited (seconds since its .ready file was made), or null when none waits. */
  oldestAgeSeconds: number | null;
}

/**
 * A .ready file older than this (seconds) with no failure recorded looks like a hung
 * archive_command: status says so and check warns. failed_count counts only a command that
 * exits non-zero.
 */
export const STUCK_AFTER_SECONDS = 300;

/** DATA/pg_wal/archive_status, or DATA/pg_xlog/archive_status before PostgreSQL 10. */
export function archiveStatusDir(masterData: string): string {
  return join(walDirOf(masterData), "archive_status");
}

/** The *.ready files in DATA/pg_wal/archive_status (pg_xlog before 10); missing folder → count 0. */
export function readyBacklog(masterData: string, now: number = Date.now()): ReadyBacklog {
  const dir = archiveStatusDir(masterData);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    // No such folder: no server has run there (or it is not a data directory): nothing waits.
    if (isErrno(err, "ENOENT")) return { count: 0, oldest: null, oldestAgeSeconds: null };
    throw ioError("cannot list", dir, err);
  }
  let count = 0;
  let oldest: string | null = null;
  let oldestMs = Infinity;
  for (const n of names) {
    if (!n.endsWith(".ready")) continue;
    let mtime: number;
    try {
      mtime = statSync(join(dir, n)).mtimeMs;
    } catch {
      continue; // renamed to .done meanwhile: archived, not waiting
    }
    count++;
    const wal = n.slice(0, -".ready".length);
    // The longest wait is what an alert is about; equal times go by name (archive order).
    if (mtime < oldestMs || (mtime === oldestMs && oldest !== null && wal < oldest)) {
      oldest = wal;
      oldestMs = mtime;
    }
  }
  return { count, oldest, oldestAgeSeconds: oldest === null ? null : ageSeconds(oldestMs, now) };
}

/** pg_stat_archiver (PostgreSQL 9.4+), times as ISO strings. */
export interface ArchiverStats {
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: string | null;
  /** archive_command failures since statsReset. Stays 0 while a hanging command holds archiving up. */
  failedCount: number;
  lastFailedWal: string | null;
  lastFailedTime: string | null;
  statsReset: string | null;
  /** Archiving is failing right now: the last failure is newer than the last success. */
  failingNow: boolean;
}

const isoOf = (epoch: number | null): string | null => (epoch === null ? null : new Date(epoch * 1000).toISOString());

/** pg_stat_archiver of the server `db` is connected to. */
export async function archiverStats(db: Db): Promise<ArchiverStats> {
  // Times as epoch seconds (node-pg's Date would depend on the session's time zone handling);
  // the failing-now comparison is made in SQL, at the server's full precision.
  const row = await db.one<{
    archived_count: string;
    last_archived_wal: string | null;
    last_archived_time: number | null;
    failed_count: string;
    last_failed_wal: string | null;
    last_failed_time: number | null;
    stats_reset: number | null;
    failing_now: boolean;
  }>(
    `SELECT archived_count::text AS archived_count, last_archived_wal,
       extract(epoch FROM last_archived_time)::float8 AS last_archived_time,
       failed_count::text AS failed_count, last_failed_wal,
       extract(epoch FROM last_failed_time)::float8 AS last_failed_time,
       extract(epoch FROM stats_reset)::float8 AS stats_reset,
       coalesce(last_failed_time > coalesce(last_archived_time, '-infinity'::timestamptz), false) AS failing_now
     FROM pg_stat_archiver`,
  );
  return {
    archivedCount: Number(row.archived_count),
    lastArchivedWal: row.last_archived_wal,
    lastArchivedTime: isoOf(row.last_archived_time),
    failedCount: Number(row.failed_count),
    lastFailedWal: row.last_failed_wal,
    lastFailedTime: isoOf(row.last_failed_time),
    statsReset: isoOf(row.stats_reset),
    failingNow: row.failing_now,
  };
}
