import { posix } from "node:path";
import { checksumName, isChecksumName } from "../storage/archive";
import { readBytes } from "../storage/bytes";
import type { StorageDriver } from "../storage/driver";
import { chunks } from "../storage/files";
import { newSha256 } from "../storage/sha256";
import { parseHistory } from "../wal/history";
import { isWalSegmentSize, parseWalName, segmentNumber, comparePosition } from "../wal/names";
import { BACKUPLOCK, PAUSE, STOP } from "../slavedir/control";
import type { Histories } from "./chain";
import { DEFAULT_SEGMENT_SIZE } from "../slavedir/standbys";

/** A file in completed_wals that is not what its name says, or not readable. */
export interface BadFile {
  name: string;
  reason: string;
}

/** What a listing of completed_wals holds, sorted out by name. */
export interface ArchiveListing {
  dir: string;
  /** Every name listed. */
  names: string[];
  /** WAL files (segments, .history, .backup, .partial), oldest position first. */
  wal: string[];
  /** Names that are neither WAL, nor our own hidden files, nor walmgr's control files. */
  unexpected: BadFile[];
  /** The segment size, from the newest segment's size (16 MiB when there is none). */
  segSize: number;
  histories: Histories;
  /** .history files that cannot be parsed (the chain is then worked out without them). */
  badHistories: BadFile[];
}

/**
 * Lists completed_wals through `driver` and sorts what is there. Our own files start with a dot
 * (checksums, records, temporaries); STOP, PAUSE and BACKUPLOCK are walmgr's control files; any
 * other name that is not PostgreSQL's is unexpected. A checksum whose file is gone is unexpected
 * too: the file was removed by hand (purging removes the checksum first).
 */
export async function listArchive(driver: StorageDriver, dir: string): Promise<ArchiveListing> {
  const names = ((await driver.list(dir)) ?? []).sort();
  const present = new Set(names);
  const wal: string[] = [];
  const unexpected: BadFile[] = [];
  for (const n of names) {
    const w = parseWalName(n);
    if (w) wal.push(n);
    else if (isChecksumName(n)) {
      const of = n.slice(1, -".sha256".length);
      if (parseWalName(of) && !present.has(of))
        unexpected.push({ name: n, reason: `checksum of ${of}, which is missing` });
    } else if (!n.startsWith(".") && n !== STOP && n !== PAUSE && n !== BACKUPLOCK) {
      unexpected.push({ name: n, reason: "not a WAL file name (not written by PostgreSQL or walmgr)" });
    }
  }
  wal.sort((a, b) => comparePosition(a, b) || a.localeCompare(b));
  let segSize = DEFAULT_SEGMENT_SIZE;
  const newest = [...wal].reverse().find((n) => parseWalName(n)?.kind === "segment");
  if (newest !== undefined) {
    const size = (await driver.info(posix.join(dir, newest)))?.size;
    if (size !== undefined && isWalSegmentSize(size)) segSize = size;
  }
  const histories: Histories = new Map();
  const badHistories: BadFile[] = [];
  for (const n of wal) {
    const w = parseWalName(n);
    if (w?.kind !== "history") continue;
    try {
      const raw = await readBytes(driver, posix.join(dir, n));
      if (raw !== undefined) histories.set(w.timeline, parseHistory(raw.toString("utf8"), n));
    } catch (err) {
      badHistories.push({ name: n, reason: (err as Error).message });
    }
  }
  return { dir, names, wal, unexpected, segSize, histories, badHistories };
}

/** What re-reading one archived file found. */
export interface FileCheck {
  bytes: number;
  /** true: matches its checksum; false: does not; undefined: it has none (walmgr.py archived it). */
  checksumOk: boolean | undefined;
  /** Why the file is not what its name says (checksum, size, header); undefined when it is. */
  problem?: string;
}

/**
 * Re-reads the archived file `name` (streamed, constant memory) and checks it: against its
 * checksum file; a segment also by its size and its first page header, which names the
 * segment's own start position and the database system it belongs to (a file renamed into
 * place, or another cluster's WAL, is caught even without a checksum). `onBytes` is told of
 * every chunk read (progress).
 */
export async function checkArchivedFile(
  driver: StorageDriver,
  dir: string,
  name: string,
  segSize: number,
  systemId?: string,
  onBytes?: (n: number) => void,
): Promise<FileCheck> {
  const w = parseWalName(name);
  const sumRaw = await readBytes(driver, posix.join(dir, checksumName(name)));
  const expected = sumRaw === undefined ? undefined : /^([0-9a-f]{64})\b/.exec(sumRaw.toString("utf8"))?.[1];
  const stream = await driver.newRead(posix.join(dir, name));
  if (stream === undefined) return { bytes: 0, checksumOk: undefined, problem: "vanished while being checked" };
  const hash = newSha256();
  const head = Buffer.alloc(40);
  let headLen = 0;
  let bytes = 0;
  for await (const chunk of chunks(stream)) {
    hash.update(chunk);
    if (headLen < head.length) headLen += chunk.copy(head, headLen, 0, Math.min(chunk.length, head.length - headLen));
    bytes += chunk.length;
    onBytes?.(chunk.length);
  }
  const digest = hash.digest("hex");
  const checksumOk = sumRaw === undefined ? undefined : expected === digest;
  const out: FileCheck = { bytes, checksumOk };
  if (sumRaw !== undefined && expected === undefined)
    out.problem = `its checksum file ${checksumName(name)} is damaged`;
  else if (checksumOk === false)
    out.problem = `does not match its checksum (sha256 ${digest.slice(0, 16)}…, expected ${expected?.slice(0, 16)}…)`;
  else if (w?.kind === "segment" || w?.kind === "partial") {
    if (w.kind === "segment" && bytes !== segSize)
      out.problem = `has ${bytes} bytes; the archive's segments have ${segSize}`;
    else if (headLen === head.length) out.problem = headerProblem(name, head, segSize, systemId);
  }
  return out;
}

/**
 * Checks a segment's first page header (XLogLongPageHeaderData, little-endian as PostgreSQL on
 * the machines it runs on writes it): xlp_pageaddr at 8 must be the segment's start, and the
 * long header's system identifier (24) and segment size (32) must match.
 */
function headerProblem(name: string, head: Buffer, segSize: number, systemId?: string): string | undefined {
  const pageaddr = head.readBigUInt64LE(8);
  const sysid = head.readBigUInt64LE(24);
  const size = head.readUInt32LE(32);
  const start = segmentNumber(name, segSize) * BigInt(segSize);
  if (pageaddr !== start) {
    return `its first page is for position ${pageaddr.toString(16).toUpperCase()}, not this segment's start ${start.toString(16).toUpperCase()} (a renamed or foreign file)`;
  }
  if (size !== segSize) return `its header says the segment size is ${size}, not ${segSize}`;
  if (systemId !== undefined && sysid.toString() !== systemId) {
    return `it belongs to database system ${sysid}, not ${systemId} (the backups' system)`;
  }
  return undefined;
}
