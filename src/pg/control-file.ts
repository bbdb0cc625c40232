/**
 * The one thing walmgr reads from a standby's `global/pg_control`: its current restart point,
 * the WAL segment PostgreSQL passes as `%r` (xlogarchive.c: GetOldestRestartPoint, the redo
 * pointer and timeline of the control file's copy of the last restartpoint). A standby's
 * liveness heartbeat (command/archive/prefetch.ts) records it between restore_command calls,
 * so the WAL kept for a standby follows its real restart point even while no call is made.
 *
 * Layout (pg_control.h, unchanged from PostgreSQL 11 to 18): system_identifier u64 at 0,
 * pg_control_version u32 at 8, state (DBState) at 16, checkPointCopy at 40 (48 before 11, which
 * also had prevCheckPoint), whose first fields are redo (u64) and ThisTimeLineID (u32). The
 * struct ends with a CRC-32C of everything before it, at an offset that differs between
 * versions: the one 4-aligned offset where the CRC of the bytes before it is stored proves both
 * that the read was not torn by a concurrent write and that the bytes are a control file.
 */
import { closeSync, existsSync, openSync, readSync } from "node:fs";
import { join } from "node:path";
import { lsnToSegment } from "../wal/names";

/** pg_control_version of PostgreSQL 11, which dropped prevCheckPoint. */
const CONTROL_VERSION_11 = 1100;
/** DBState: the server is in archive recovery (a standby, or recovery towards a target). */
const DB_IN_ARCHIVE_RECOVERY = 5;
/** PG_CONTROL_MAX_SAFE_SIZE: the part PostgreSQL writes as one sector. */
const READ_BYTES = 512;

let table: Int32Array | undefined;

/** CRC-32C (Castagnoli, reflected), as PostgreSQL's COMP_CRC32C, of `buf[0..end)`, running. */
function crc32cTable(): Int32Array {
  if (table === undefined) {
    table = new Int32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
      table[i] = c;
    }
  }
  return table;
}

/**
 * True when `buf` holds a control file whose CRC checks: some 4-aligned offset past the fields
 * read here stores the CRC-32C of the bytes before it.
 */
export function controlCrcOk(buf: Buffer): boolean {
  const t = crc32cTable();
  let crc = 0xffffffff;
  for (let i = 0; i + 4 <= buf.length; i++) {
    if (i >= 64 && i % 4 === 0 && (crc ^ 0xffffffff) >>> 0 === buf.readUInt32LE(i)) return true;
    crc = (t[(crc ^ (buf[i] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  return false;
}

/**
 * The restart point of the standby in `dataDir` (the segment `%r` names), read from its
 * pg_control; undefined unless it is certain: the control file reads whole with a good CRC, the
 * server is in archive recovery, and no `backup_label` is there. (A restored data directory
 * keeps the control file copied by the backup, which may name a later checkpoint than the
 * backup's start, until recovery starts: PostgreSQL writes the backup's checkpoint into
 * pg_control and only then renames backup_label away, so the label is looked for first.)
 */
export function standbyRestartPoint(dataDir: string, segSize: number): string | undefined {
  if (existsSync(join(dataDir, "backup_label"))) return undefined;
  let fd: number | undefined;
  const buf = Buffer.alloc(READ_BYTES);
  try {
    fd = openSync(join(dataDir, "global", "pg_control"), "r");
    if (readSync(fd, buf, 0, READ_BYTES, 0) !== READ_BYTES) return undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (!controlCrcOk(buf)) return undefined;
  if (buf.readUInt32LE(16) !== DB_IN_ARCHIVE_RECOVERY) return undefined;
  const at = buf.readUInt32LE(8) >= CONTROL_VERSION_11 ? 40 : 48;
  const redo = buf.readBigUInt64LE(at);
  const timeline = buf.readUInt32LE(at + 8);
  if (timeline === 0 || redo === 0n) return undefined;
  return lsnToSegment(redo, timeline, segSize).name;
}
