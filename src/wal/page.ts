/**
 * The WAL page header, as far as walmgr reads it: every page of a segment starts with a header
 * whose xlp_pageaddr (uint64 at offset 8, after magic 2, info 2 and timeline 4; little-endian as
 * on the machines PostgreSQL runs on) is the WAL address of the page itself. A page that carries
 * another address belongs to a recycled (renamed and reused) segment; an all-zero header is a
 * page not written yet (or, since PostgreSQL 13, the rest of a segment after a switch record).
 * setup's copy of missed WAL and the sync's shipping of the in-progress segment both judge pages
 * by this, and only here.
 */
import { IoError } from "../errors";
import { formatLsn } from "./names";

/** Offset of xlp_pageaddr in a WAL page header (magic 2, info 2, timeline 4). */
export const XLP_PAGEADDR_OFFSET = 8;

/** Bytes of a page header that hold xlp_pageaddr and everything before it. */
export const PAGE_ADDRESS_END = XLP_PAGEADDR_OFFSET + 8;

/** The WAL address the page at `off` of `pages` says it holds. */
export function pageAddress(pages: Buffer, off = 0): bigint {
  return pages.readBigUInt64LE(off + XLP_PAGEADDR_OFFSET);
}

/**
 * True when `head` (at least PAGE_ADDRESS_END bytes read from the start of a segment) is the
 * first page of the segment that begins at WAL address `segLsn`: the file still holds its own WAL.
 */
export function holdsOwnWal(head: Buffer, segLsn: bigint): boolean {
  return head.length >= PAGE_ADDRESS_END && pageAddress(head) === segLsn;
}

/**
 * Checks that every WAL page header in `pages` (read from `fileStart` bytes into a segment that
 * begins at `segLsn`) carries its own address, so a recycled or renamed segment file is never
 * shipped as if it held current WAL.
 */
export function checkPageAddresses(
  pages: Buffer,
  fileStart: number,
  segLsn: bigint,
  blockSize: number,
  what: string,
): void {
  for (let off = 0; off + PAGE_ADDRESS_END <= pages.length; off += blockSize) {
    const addr = pageAddress(pages, off);
    const expected = segLsn + BigInt(fileStart + off);
    if (addr !== expected) {
      throw new IoError(
        `${what}: page at offset ${fileStart + off} holds WAL for ${formatLsn(addr)}, expected ${formatLsn(expected)} (the segment was recycled while reading?)`,
        "run sync again",
      );
    }
  }
}

/**
 * How many bytes of `pages` (read from `fileStart`, page-aligned, into the segment at `segLsn`,
 * up to the master's write position) hold WAL: every page up to the first one whose header is
 * all zeros. Since PostgreSQL 13 the rest of a segment after a switch record is written as zero
 * pages (headers too), and the write position passes through them while the switch is flushed:
 * they are nothing to ship. A page carrying another address (a recycled segment) is an error,
 * as in checkPageAddresses.
 */
export function writtenPrefix(
  pages: Buffer,
  fileStart: number,
  segLsn: bigint,
  blockSize: number,
  what: string,
): number {
  for (let off = 0; off < pages.length; off += blockSize) {
    const header = pages.subarray(off, Math.min(off + 24, pages.length));
    if (header.every((b) => b === 0)) return off;
    if (header.length >= PAGE_ADDRESS_END) checkPageAddresses(header, fileStart + off, segLsn, blockSize, what);
  }
  return pages.length;
}

/**
 * How many bytes of `pages` (read from `fileStart`, page-aligned, into the segment at `segLsn`)
 * are WAL pages that carry their own address: the rest is unwritten (zeros) or recycled.
 */
export function validPrefix(pages: Buffer, fileStart: number, segLsn: bigint, blockSize: number): number {
  let off = 0;
  for (; off + PAGE_ADDRESS_END <= pages.length; off += blockSize) {
    if (pageAddress(pages, off) !== segLsn + BigInt(fileStart + off)) break;
  }
  return Math.min(off, pages.length);
}
