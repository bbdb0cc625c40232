/**
 * Which master a sync ships from (host, config, data directory, timeline, system identifier),
 * and how a sync lock held by another master is told apart: two masters never ship into one
 * partial_wals unnoticed.
 */
import { readdirSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import { type LockInfo } from "../../slavedir/lock";
import { parseWalName } from "../../wal/names";
import { walDirOf } from "../../pg/wal-dir";
import { readRange } from "../../read-range";

/** Which master a sync ships from, as far as it knows it yet. */
export interface MasterSource {
  host: string;
  config: string;
  masterData: string;
  /** The master's current timeline (undefined until it was asked). */
  timeline?: number;
  /** Its database system identifier (pg_control), when readable. */
  systemId?: string;
}

/**
 * The database system identifier of the data directory `dataDir`: pg_control's first field
 * (uint64, little-endian as on the machines PostgreSQL runs on), as decimal text; undefined when
 * pg_control cannot be read. The same for a master and every standby made from it.
 */
export function systemIdentifier(dataDir: string): string | undefined {
  try {
    const head = readRange(join(dataDir, "global", "pg_control"), 0, 8);
    return head.length === 8 ? head.readBigUInt64LE(0).toString() : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The timeline of the newest (by mtime) segment file in the WAL folder of `dataDir`: on a
 * running master, the one being written. Undefined when there is none or it cannot be listed.
 */
export function newestLocalTimeline(dataDir: string): number | undefined {
  const walDir = walDirOf(dataDir);
  let best: { tli: number; mtime: number } | undefined;
  let names: string[];
  try {
    names = readdirSync(walDir);
  } catch {
    return undefined;
  }
  for (const n of names) {
    const w = parseWalName(n);
    if (w?.kind !== "segment") continue;
    try {
      const m = statSync(join(walDir, n)).mtimeMs;
      if (!best || m > best.mtime) best = { tli: w.timeline, mtime: m };
    } catch {
      // recycled meanwhile
    }
  }
  return best?.tli;
}

/**
 * Whether the sync lock's holder ships from another master than `self`: another timeline or
 * database system, or another data directory or host. Returns why (in words), or undefined when
 * it is (as far as either records) the same master. A lock of an older version names neither
 * timeline nor data directory: it is never called foreign.
 */
export function foreignHolder(holder: LockInfo | undefined, self: MasterSource): string | undefined {
  if (!holder) return undefined;
  const diffs: string[] = [];
  if (holder.timeline !== undefined && self.timeline !== undefined && holder.timeline !== self.timeline) {
    diffs.push(`it ships timeline ${holder.timeline}, this master is on timeline ${self.timeline}`);
  }
  if (holder.systemId !== undefined && self.systemId !== undefined && holder.systemId !== self.systemId) {
    diffs.push(`it ships database system ${holder.systemId}, this master is system ${self.systemId}`);
  }
  const sameDir = (a: string, b: string): boolean => posix.resolve(a) === posix.resolve(b);
  if (
    holder.masterData !== undefined &&
    self.masterData !== "" &&
    (holder.host !== self.host || !sameDir(holder.masterData, self.masterData))
  ) {
    diffs.push(`it ships from ${holder.host}:${holder.masterData}, this master is ${self.host}:${self.masterData}`);
  }
  return diffs.length ? diffs.join("; ") : undefined;
}
