/**
 * Signs, in a slave directory, of two masters writing into it at once: after a failover the old
 * master (its sync daemon, its archive_command) left running beside the promoted one. Used by
 * `verify`. Everything is judged by the slave directory's own clock (file mtimes, all written by
 * the storage holding them), against the moment a newer timeline's `.history` file appeared in
 * completed_wals: one master never writes its old timeline after its successor's history is
 * archived, so a file of an older timeline written after that is the other writer.
 *
 * What is looked at, all cheap (a handful of stats and two small reads):
 * - the sync state and the partial segments in partial_wals of an older timeline, written after
 *   a newer timeline's `.history` appeared;
 * - the sync lock held by a live process (this host) shipping an older timeline, or one whose
 *   daemon's heartbeat of an older timeline was written after that `.history`;
 * - archived segments of an older timeline past the point where a newer timeline branched off
 *   it, archived after that timeline's `.history` (per branch, only the newest is looked at).
 *
 * Never a sign: the files of the old timeline written before the new `.history` appeared (a
 * failover where the old master was really down), a stale lock of a dead process, anything
 * without a newer timeline. Cannot be told: two writers before the new timeline's `.history`
 * reached completed_wals (setup on the new master archives it), two masters of the same
 * timeline (two different clusters: verify's system-identifier check finds their segments), and
 * an old writer that stopped before that `.history` appeared.
 */
import { posix } from "node:path";
import { DAEMON_STATE, type DaemonState } from "../slavedir/daemon-state";
import { SYNC_STATE, syncStateTimeline, type SyncState } from "../slavedir/sync-state";
import { readBytes } from "../storage/bytes";
import type { StorageDriver } from "../storage/driver";
import { comparePosition, parseWalName, segmentNumber } from "../wal/names";
import { readSyncLock } from "./sync-lock";
import type { ArchiveListing } from "./wal-scan";

/** One sign of a second writer. */
export interface TwoWritersSign {
  kind: "sync-state" | "partial" | "sync-lock" | "sync-daemon" | "archived-segment";
  /** The file it was seen in (a path in the slave directory). */
  file: string;
  /** What it shows, in words. */
  detail: string;
}

/** What `verify` reports of two writers (`verify --json`: `twoWriters`). */
export interface TwoWriters {
  /** At least one sign was seen. */
  detected: boolean;
  /** The newest timeline with a `.history` file in completed_wals (null: none; then nothing can be told). */
  newestTimeline: number | null;
  signs: TwoWritersSign[];
}

/** A file counts as written after a `.history` only this much later (mtime granularity, clocks of two hosts). */
export const AFTER_SLACK_MS = 2_000;

async function mtimeOf(driver: StorageDriver, path: string): Promise<number | undefined> {
  try {
    const info = await driver.info(path);
    return info !== undefined && Number.isFinite(info.mtimeMs) && info.mtimeMs > 0 ? info.mtimeMs : undefined;
  } catch {
    return undefined;
  }
}

async function readJsonSafe<T>(driver: StorageDriver, path: string): Promise<T | undefined> {
  try {
    const raw = await readBytes(driver, path);
    return raw === undefined ? undefined : (JSON.parse(raw.toString("utf8")) as T);
  } catch {
    return undefined;
  }
}

/**
 * Looks for signs of two writers in completed_wals (as `listing` found it) and partial_wals
 * (`partialDir`; undefined when the config has none). Unreadable parts are skipped: this never
 * fails verify, and reports only what it saw.
 */
export async function findTwoWriters(
  driver: StorageDriver,
  listing: ArchiveListing,
  partialDir: string | undefined,
  now = Date.now(),
): Promise<TwoWriters> {
  const signs: TwoWritersSign[] = [];
  // When each timeline's .history appeared in completed_wals.
  const appeared = new Map<number, { name: string; ms: number }>();
  for (const n of listing.wal) {
    const w = parseWalName(n);
    if (w?.kind !== "history") continue;
    const ms = await mtimeOf(driver, posix.join(listing.dir, n));
    if (ms !== undefined) appeared.set(w.timeline, { name: n, ms });
  }
  const newest = appeared.size ? Math.max(...appeared.keys()) : null;
  if (newest === null) return { detected: false, newestTimeline: null, signs };

  /** The first .history of a timeline newer than `tli`, if a file written at `ms` came after it. */
  const after = (tli: number, ms: number | undefined): { name: string; ms: number } | undefined => {
    if (ms === undefined) return undefined;
    let first: { name: string; ms: number } | undefined;
    for (const [t, h] of appeared) if (t > tli && (first === undefined || h.ms < first.ms)) first = h;
    return first !== undefined && ms > first.ms + AFTER_SLACK_MS ? first : undefined;
  };
  const at = (ms: number): string => new Date(ms).toISOString();

  if (partialDir !== undefined) {
    // The sync state: rewritten by every sync that ships.
    const statePath = posix.join(partialDir, SYNC_STATE);
    const state = await readJsonSafe<SyncState>(driver, statePath);
    const stateTli = state && typeof state.name === "string" ? syncStateTimeline(state) : undefined;
    if (state && stateTli !== undefined && stateTli < newest) {
      const ms = await mtimeOf(driver, statePath);
      const h = after(stateTli, ms);
      if (h && ms !== undefined) {
        const from =
          state.host !== undefined
            ? ` by a sync on ${state.host}${state.masterData ? `:${state.masterData}` : ""}`
            : "";
        signs.push({
          kind: "sync-state",
          file: statePath,
          detail: `written at ${at(ms)}${from}, of timeline ${stateTli} (${state.name}${state.lsn ? ` up to ${state.lsn}` : ""}), after ${h.name} appeared at ${at(h.ms)}`,
        });
      }
    }
    // Partial segments of an older timeline written since.
    let names: string[] = [];
    try {
      names = (await driver.list(partialDir)) ?? [];
    } catch {
      names = [];
    }
    for (const n of names) {
      const w = parseWalName(n);
      if (w?.kind !== "segment" || w.timeline >= newest) continue;
      const path = posix.join(partialDir, n);
      const ms = await mtimeOf(driver, path);
      const h = after(w.timeline, ms);
      if (h && ms !== undefined) {
        signs.push({
          kind: "partial",
          file: path,
          detail: `partial segment of timeline ${w.timeline} written at ${at(ms)}, after ${h.name} appeared at ${at(h.ms)}`,
        });
      }
    }
    // The sync lock and the daemon's heartbeat.
    const hbPath = posix.join(partialDir, DAEMON_STATE);
    const hb = await readJsonSafe<DaemonState>(driver, hbPath);
    const hbMs = hb ? await mtimeOf(driver, hbPath) : undefined;
    let lockSign = false;
    try {
      const lock = await readSyncLock(driver, partialDir, now);
      const h = lock.holder;
      if (lock.present && h && h.timeline !== undefined && h.timeline < newest && lock.verdict !== "stale") {
        const who = `pid ${h.pid} on ${h.host} (${h.command})`;
        const what = `timeline ${h.timeline}${h.masterData ? ` of ${h.host}:${h.masterData}` : ""}`;
        const lockMs = lock.mtime !== undefined ? Date.parse(lock.mtime) : undefined;
        const took = after(h.timeline, lockMs);
        const beat = hb && hb.pid === h.pid && hb.host === h.host && !hb.stopped ? after(h.timeline, hbMs) : undefined;
        const first = [...appeared.entries()]
          .filter(([t]) => t > (h.timeline ?? 0))
          .sort((a, b) => a[1].ms - b[1].ms)[0];
        if (lock.verdict === "live") {
          signs.push({
            kind: "sync-lock",
            file: lock.path,
            detail: `held by ${who}, a live process shipping ${what}, older than timeline ${newest}${first ? ` (${first[1].name} appeared at ${at(first[1].ms)})` : ""}`,
          });
          lockSign = true;
        } else if (took ?? beat) {
          const seen = took ? `taken at ${lock.mtime ?? "?"}` : `its heartbeat written at ${at(hbMs ?? 0)}`;
          signs.push({
            kind: "sync-lock",
            file: lock.path,
            detail: `held by ${who}, shipping ${what}: ${seen}, after ${(took ?? beat)?.name ?? "?"} appeared (it cannot be checked from here: ${lock.why ?? "?"})`,
          });
          lockSign = true;
        }
      }
    } catch {
      // unreadable: nothing to tell
    }
    if (!lockSign && hb && typeof hb.timeline === "number" && hb.timeline < newest && !hb.stopped) {
      const h = after(hb.timeline, hbMs);
      if (h && hbMs !== undefined) {
        signs.push({
          kind: "sync-daemon",
          file: hbPath,
          detail: `the heartbeat of a sync daemon shipping timeline ${hb.timeline} (pid ${hb.pid} on ${hb.host}${hb.masterData ? `:${hb.masterData}` : ""}) was written at ${at(hbMs)}, after ${h.name} appeared at ${at(h.ms)}`,
        });
      }
    }
  }

  // Archived segments of an older timeline past a newer timeline's branch point.
  const segSize = listing.segSize;
  const checked = new Set<string>();
  for (const [tli, history] of listing.histories) {
    const hist = appeared.get(tli);
    if (hist === undefined) continue;
    for (const sw of history) {
      const key = `${sw.parent}/${sw.switchpoint}`;
      if (checked.has(key)) continue;
      checked.add(key);
      const branch = sw.switchpoint / BigInt(segSize);
      // The newest segment of the parent from the branch point's segment on (the last archived).
      const past = listing.wal.filter((n) => {
        const w = parseWalName(n);
        return w?.kind === "segment" && w.timeline === sw.parent && segmentNumber(n, segSize) >= branch;
      });
      const last = past.sort(comparePosition).pop();
      if (last === undefined) continue;
      const path = posix.join(listing.dir, last);
      const ms = await mtimeOf(driver, path);
      const h = after(sw.parent, ms);
      if (h && ms !== undefined) {
        signs.push({
          kind: "archived-segment",
          file: path,
          detail: `${past.length} segment(s) of timeline ${sw.parent} from its end in ${hist.name} on (${last} the newest, archived at ${at(ms)}, after ${h.name} appeared at ${at(h.ms)}): the old master's archive_command still runs`,
        });
      }
    }
  }
  return { detected: signs.length > 0, newestTimeline: newest, signs };
}
