import { UsageError } from "../errors";

export type WalKind = "segment" | "history" | "backup" | "partial";

export interface WalName {
  name: string;
  kind: WalKind;
  timeline: number;
  /** For segment/backup/partial: the 16 hex digits after the timeline (log + seg). */
  position?: string;
}

const PATTERNS: [WalKind, RegExp][] = [
  ["segment", /^([0-9A-F]{8})([0-9A-F]{16})$/],
  ["history", /^([0-9A-F]{8})\.history$/],
  ["backup", /^([0-9A-F]{8})([0-9A-F]{16})\.[0-9A-F]{8}\.backup$/],
  ["partial", /^([0-9A-F]{8})([0-9A-F]{16})\.partial$/],
];

/** Parses an archive file name; undefined for anything that is not one of PostgreSQL's. */
export function parseWalName(name: string): WalName | undefined {
  for (const [kind, re] of PATTERNS) {
    const m = re.exec(name);
    if (m) {
      const position = m[2];
      return {
        name,
        kind,
        timeline: Number.parseInt(m[1] ?? "0", 16),
        ...(position !== undefined ? { position } : {}),
      };
    }
  }
  return undefined;
}

/**
 * Validates a WAL file name before any path is built from it (safety rule 4). Refuses empty
 * names, path separators, `..`, wrong lengths and lower-case hex with a usage error.
 */
export function requireWalName(name: string | undefined, what = "WAL file name"): WalName {
  if (name === undefined || name === "")
    throw new UsageError(`${what} is missing`, "expected a name like 000000010000000000000001");
  const parsed = parseWalName(name);
  if (!parsed) {
    throw new UsageError(
      `invalid ${what} ${JSON.stringify(name)}: not a WAL segment, .history, .backup or .partial name`,
      "PostgreSQL passes %f, e.g. 000000010000000000000001 or 00000002.history",
    );
  }
  return parsed;
}

/** Segments per 4 GiB "log" id, for a segment size in bytes. */
/** A size PostgreSQL allows for a WAL segment: a power of two from 1 MiB to 1 GiB (initdb --wal-segsize). */
export function isWalSegmentSize(size: number): boolean {
  return size >= 1 << 20 && size <= 1 << 30 && (size & (size - 1)) === 0;
}

function segsPerId(segSize: number): number {
  return 0x100000000 / segSize;
}

/** The segment number of a segment-like name (ignoring timeline). */
export function segmentNumber(name: string, segSize: number): bigint {
  const hi = BigInt(Number.parseInt(name.slice(8, 16), 16));
  const lo = BigInt(Number.parseInt(name.slice(16, 24), 16));
  return hi * BigInt(segsPerId(segSize)) + lo;
}

export function segmentName(timeline: number, segno: bigint, segSize: number): string {
  const per = BigInt(segsPerId(segSize));
  const hex = (n: bigint | number): string => n.toString(16).toUpperCase().padStart(8, "0");
  return hex(timeline) + hex(segno / per) + hex(segno % per);
}

/** Segment name holding the byte at `lsn`, and the offset within it. */
export function lsnToSegment(lsn: bigint, timeline: number, segSize: number): { name: string; offset: number } {
  const size = BigInt(segSize);
  return { name: segmentName(timeline, lsn / size, segSize), offset: Number(lsn % size) };
}

/**
 * Parses "16/B374D848" into a byte position; undefined for text that is not exactly an LSN (no
 * spaces around it). The one LSN parser: status, restore's --target-lsn and parseLsn use it.
 */
export function tryParseLsn(text: string): bigint | undefined {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  return m ? (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`) : undefined;
}

/** Parses "16/B374D848" (spaces around it allowed) into a byte position; throws for text that is not an LSN. */
export function parseLsn(text: string): bigint {
  const lsn = tryParseLsn(text.trim());
  if (lsn === undefined) throw new Error(`not an LSN: ${text}`);
  return lsn;
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/**
 * Compares the 16-digit position of two segment-like names, ignoring the timeline, the way
 * pg_archivecleanup does: negative when `a` is older than `b`.
 */
export function comparePosition(a: string, b: string): number {
  const pa = a.slice(8, 24);
  const pb = b.slice(8, 24);
  return pa < pb ? -1 : pa > pb ? 1 : 0;
}
