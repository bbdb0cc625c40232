import { formatLsn, parseWalName, segmentName, segmentNumber } from "../wal/names";
import type { TimelineSwitch } from "../wal/history";

/**
 * The WAL chain of an archive, worked out from file names alone (no I/O here: callers list the
 * folder and read the .history files through the storage driver). Used by `verify` (which also
 * re-reads every file) and by `check` (names only, fast).
 */

/** A run of missing segments on one timeline: `from` to `to`, both included. */
export interface Gap {
  timeline: number;
  from: string;
  to: string;
  count: number;
}

/** Where a backup set's WAL starts and where it must at least reach to be consistent. */
export interface ChainStart {
  timeline: number;
  /** The segment with the backup's start (backup_label's START WAL LOCATION file). */
  startWal: string;
  /** The segment with the backup's end (pg_backup_stop's LSN); the start segment when unknown. */
  stopWal?: string;
}

/** How far a backup set can be recovered from the archive. */
export interface Reach {
  /** The timeline recovery follows to its end (recovery_target_timeline = latest). */
  timeline: number;
  /** The timelines walked and the segment each one's part of the chain ends with (undefined: none). */
  path: { timeline: number; first: string; last?: string }[];
  /** The last segment of the unbroken run from the start; undefined when the start itself is missing. */
  lastSegment?: string;
  /** The end of `lastSegment`: recovery can replay up to here (point-in-time targets before it). */
  reachableLsn?: string;
  /** The first segment recovery would need and cannot find before the newest archived one. */
  firstMissing?: string;
  /** Every missing segment on the way, as runs. */
  gaps: Gap[];
  /** The stop segment is reached: the set can be restored to a consistent state at all. */
  consistent: boolean;
}

/** The timelines' histories, by timeline, from the .history files present. */
export type Histories = Map<number, TimelineSwitch[]>;

/** Segment numbers present, per timeline, from a folder listing (other names ignored). */
export function segmentsByTimeline(names: Iterable<string>, segSize: number): Map<number, Set<bigint>> {
  const out = new Map<number, Set<bigint>>();
  for (const n of names) {
    const w = parseWalName(n);
    if (w?.kind !== "segment") continue;
    let set = out.get(w.timeline);
    if (!set) out.set(w.timeline, (set = new Set()));
    set.add(segmentNumber(n, segSize));
  }
  return out;
}

/** Runs of consecutive segment numbers missing from `want`, as gaps on `timeline`. */
function runs(timeline: number, missing: bigint[], segSize: number): Gap[] {
  const out: Gap[] = [];
  for (const s of missing) {
    const last = out[out.length - 1];
    if (last !== undefined && segmentNumber(last.to, segSize) + 1n === s) {
      last.to = segmentName(timeline, s, segSize);
      last.count++;
    } else {
      const name = segmentName(timeline, s, segSize);
      out.push({ timeline, from: name, to: name, count: 1 });
    }
  }
  return out;
}

/**
 * Every hole in the archive: per timeline, the segments missing between the oldest and the
 * newest present (purged WAL before the oldest is not a hole; a timeline's WAL past its switch
 * point is never written, so holes are only looked for inside what the timeline has).
 */
export function archiveGaps(names: Iterable<string>, segSize: number): Gap[] {
  const out: Gap[] = [];
  for (const [tli, segs] of [...segmentsByTimeline(names, segSize)].sort((a, b) => a[0] - b[0])) {
    const sorted = [...segs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const missing: bigint[] = [];
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1] ?? 0n;
      const cur = sorted[i] ?? 0n;
      // A hole of millions of segments is not listed one by one: its ends are enough.
      for (let s = prev + 1n; s < cur && missing.length < 100_000; s++) missing.push(s);
    }
    out.push(...runs(tli, missing, segSize));
  }
  return out;
}

/**
 * The timeline a recovery from `start` follows to the end, as `recovery_target_timeline =
 * latest` does: the highest timeline whose history shows it branched off the start's timeline
 * (directly or through others) at or after the start segment; the start's own timeline when
 * none did. Returns the ranges to walk: each timeline and the segment number it ends before.
 */
function route(start: ChainStart, startSeg: bigint, histories: Histories, segSize: number): [number, bigint][] {
  let best: [number, bigint][] = [[start.timeline, -1n]];
  for (const [tli, history] of histories) {
    if (tli <= start.timeline) continue;
    const idx = history.findIndex((h) => h.parent === start.timeline);
    if (idx === -1) continue;
    const ranges: [number, bigint][] = [];
    let ok = true;
    for (const h of history.slice(idx)) {
      // A new timeline starts in the segment holding the switch point (PostgreSQL copies the
      // old timeline's part of it into the new file), so the parent's own files end before it.
      const end = h.switchpoint / BigInt(segSize);
      if (h.parent === start.timeline && end < startSeg) ok = false; // branched off before the backup
      ranges.push([h.parent, end]);
    }
    if (!ok) continue;
    ranges.push([tli, -1n]);
    if (tli > (best[best.length - 1]?.[0] ?? 0)) best = ranges;
  }
  return best;
}

/**
 * How far recovery from `start` gets with the segments in `names`: it walks the route's
 * timelines from the start segment up to the newest segment on the route, and records every
 * missing one. The reachable point is the end of the unbroken run from the start.
 */
export function reach(start: ChainStart, names: Iterable<string>, histories: Histories, segSize: number): Reach {
  const present = segmentsByTimeline(names, segSize);
  const startSeg = segmentNumber(start.startWal, segSize);
  const stopSeg = segmentNumber(start.stopWal ?? start.startWal, segSize);
  const ranges = route(start, startSeg, histories, segSize);
  // The newest segment on the route: the walk stops there (nothing newer was archived yet).
  let newest = -1n;
  let lo = startSeg;
  for (const [tli, end] of ranges) {
    for (const s of present.get(tli) ?? []) {
      if (s >= lo && (end < 0n || s < end) && s > newest) newest = s;
    }
    if (end >= 0n) lo = end;
  }
  const out: Reach = {
    timeline: ranges[ranges.length - 1]?.[0] ?? start.timeline,
    path: [],
    gaps: [],
    consistent: false,
  };
  let cur = startSeg;
  let unbroken = true;
  for (const [tli, end] of ranges) {
    const stopAt = end < 0n ? newest + 1n : end < newest + 1n ? end : newest + 1n;
    const have = present.get(tli) ?? new Set<bigint>();
    const missing: bigint[] = [];
    const first = cur;
    let last: bigint | undefined;
    for (; cur < stopAt; cur++) {
      if (have.has(cur)) {
        last = cur;
        if (unbroken) {
          out.lastSegment = segmentName(tli, cur, segSize);
          out.reachableLsn = formatLsn((cur + 1n) * BigInt(segSize));
        }
      } else {
        if (unbroken) out.firstMissing = segmentName(tli, cur, segSize);
        unbroken = false;
        if (missing.length < 100_000) missing.push(cur);
      }
    }
    out.path.push({
      timeline: tli,
      first: segmentName(tli, first, segSize),
      ...(last !== undefined ? { last: segmentName(tli, last, segSize) } : {}),
    });
    out.gaps.push(...runs(tli, missing, segSize));
    if (end >= 0n && end > cur) cur = end;
  }
  if (newest < startSeg) {
    // Not even the start segment is on the route.
    out.firstMissing = start.startWal;
    out.gaps.push({ timeline: start.timeline, from: start.startWal, to: start.startWal, count: 1 });
  }
  const lastSeg = out.lastSegment !== undefined ? segmentNumber(out.lastSegment, segSize) : -1n;
  out.consistent = lastSeg >= stopSeg;
  return out;
}
