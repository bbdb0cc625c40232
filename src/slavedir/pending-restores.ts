/**
 * A pending restore's hold on WAL. `restore` takes its set out of the listing (the newest set is
 * renamed to `.walmgr-restore.SET.PID.claimed` beside the sets, then moved to the stage beside
 * DST), so the sets alone no longer say that its WAL is needed. Before it takes the set, it
 * writes a record beside the sets, `.walmgr-restore.SET.PID.pending`, naming the set's start
 * WAL, DST and the journal; the record goes only once the restore has recorded the new standby
 * (whose record holds the WAL from then on), at its step "finish".
 *
 * backup's purge and wal-restore's %r cleanup keep the WAL from such a record's start WAL on
 * (`walNeededBySets`, retention.ts), as they do for a listed set, and `listbackups` shows each one as a pending
 * restore. A claimed set without a record (left by an earlier version) counts by its own start
 * WAL. The rule for a restore that is never rerun: its hold stays until the operator abandons it
 * (README, "An interrupted restore"): nothing drops WAL a rerun would need on a guess.
 */
import { posix } from "node:path";
import { readBytes } from "../storage/bytes";
import type { StorageDriver } from "../storage/driver";
import { BACKUP_INFO, setStartWal } from "./backup-sets";
import { parseWalName } from "../wal/names";

const PREFIX = ".walmgr-restore.";
/** The record of a pending restore beside the sets. */
export const PENDING_SUFFIX = ".pending";
/** A set a pending restore moved out of the listing (command/restore/journal.ts, claimedName). */
export const CLAIMED_SUFFIX = ".claimed";

/** What a pending restore's record (`.walmgr-restore.SET.PID.pending`) holds. */
export interface PendingRecord {
  /** The set as it was listed when the restore began. */
  set: string;
  /** Where the set was renamed to while it is taken (a moved set only). */
  claimed?: string;
  /** The first WAL segment the set needs: kept while the record exists. */
  startWal: string;
  /** The data directory being restored, and the journal beside it. */
  dst: string;
  journal: string;
  /** The set's label, start time and size (for listbackups). */
  label?: string;
  startTime?: string;
  bytes?: number;
  /** Who began the restore: host, pid, when, and the command (to rerun it). */
  host: string;
  pid: number;
  startedAt: string;
  command: string;
}

/**
 * The record path for a restore of `set` begun by process `pid`: beside the sets, hidden (never
 * listed as a set), and not ending in a pid, so no sweeper of dead writers' temps takes it.
 */
export function pendingPath(set: string, pid = process.pid): string {
  return posix.join(posix.dirname(set), `${PREFIX}${posix.basename(set)}.${pid}${PENDING_SUFFIX}`);
}

/** A pending restore's hold on WAL, found beside the sets of `fullBackup`. */
export interface RestoreHold {
  /** The record, or a claimed set that has none. */
  path: string;
  kind: "pending" | "claimed";
  /** undefined: it cannot be read, so no WAL may be removed on its account. */
  startWal?: string;
  /** The record's content (kind "pending"). */
  record?: PendingRecord;
  /** Why it cannot be read. */
  problem?: string;
}

/**
 * `name` (a name beside the sets of `fullBackup`) as a restore's record or claimed set:
 * `.walmgr-restore.BASE[.N].PID.pending|claimed`; undefined for any other name. The key (the
 * name without its suffix) pairs a claimed set with its record.
 */
export function restoreHoldName(
  fullBackup: string,
  name: string,
): { kind: "pending" | "claimed"; key: string } | undefined {
  const prefix = `${PREFIX}${posix.basename(fullBackup)}.`;
  if (!name.startsWith(prefix)) return undefined;
  const m = /^(?:\d+\.)?\d+\.(pending|claimed)$/.exec(name.slice(prefix.length));
  if (!m) return undefined;
  const kind = m[1] === "pending" ? "pending" : "claimed";
  return { kind, key: name.slice(0, name.length - `.${kind}`.length) };
}

/** Parses a record; throws (with the reason) when it is not one. */
export function parsePendingRecord(text: string): PendingRecord {
  const v = JSON.parse(text) as Partial<PendingRecord> | null;
  if (typeof v !== "object" || v === null) throw new Error("not a JSON object");
  const w = typeof v.startWal === "string" ? parseWalName(v.startWal) : undefined;
  if (w?.kind !== "segment") throw new Error("no valid startWal");
  for (const key of ["set", "dst", "journal"] as const) {
    if (typeof v[key] !== "string") throw new Error(`'${key}' is missing`);
  }
  return v as PendingRecord;
}

/**
 * The holds of pending restores beside the sets of `fullBackup`: every record, and every claimed
 * set without one (an earlier version's restore). One whose start WAL cannot be read is returned
 * without it (its `problem` says why): callers then remove no WAL at all. `listed`: the names
 * beside the sets, when the caller has just listed them.
 */
export async function restoreHolds(
  driver: StorageDriver,
  fullBackup: string,
  listed?: string[],
): Promise<RestoreHold[]> {
  const dir = posix.dirname(fullBackup);
  const found = (listed ?? (await driver.list(dir)) ?? [])
    .map((name) => ({ name, hold: restoreHoldName(fullBackup, name) }))
    .filter((x): x is { name: string; hold: { kind: "pending" | "claimed"; key: string } } => x.hold !== undefined)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const recorded = new Set(found.filter((f) => f.hold.kind === "pending").map((f) => f.hold.key));
  const out: RestoreHold[] = [];
  for (const { name, hold } of found) {
    const path = posix.join(dir, name);
    if (hold.kind === "pending") {
      const raw = await readBytes(driver, path);
      if (raw === undefined) continue; // removed meanwhile: the restore finished
      try {
        const record = parsePendingRecord(raw.toString("utf8"));
        out.push({ path, kind: "pending", startWal: record.startWal, record });
      } catch (err) {
        out.push({
          path,
          kind: "pending",
          problem: `${path} is not a pending restore's record: ${(err as Error).message}`,
        });
      }
    } else if (!recorded.has(hold.key)) {
      const startWal = await setStartWal(driver, path);
      if (startWal !== undefined) out.push({ path, kind: "claimed", startWal });
      else if ((await driver.info(path)) !== undefined)
        out.push({ path, kind: "claimed", problem: `${path} holds neither ${BACKUP_INFO} nor a backup_label` });
    }
  }
  return out;
}
