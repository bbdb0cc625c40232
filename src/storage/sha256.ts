/**
 * The one sha256 helper: of a buffer, of a local file (read in 1 MiB chunks, constant memory),
 * of a stream it consumes, and incremental (`newSha256`) for those who hash while they copy, so
 * that verify-while-read costs no second read.
 */
import type { Hash } from "node:crypto";
import { crypto } from "../lazy";
import { closeSync, openSync, readSync } from "node:fs";

/** An incremental sha256 (update chunks, digest("hex") at the end): the one place naming it. */
export function newSha256(): Hash {
  return crypto().createHash("sha256");
}

/** Hex sha256 of `data`. */
export function sha256(data: Uint8Array): string {
  return crypto().createHash("sha256").update(data).digest("hex");
}

/** sha256 and size of a local file, read in 1 MiB chunks. */
export function hashFile(path: string): { sha256: string; bytes: number } {
  const hash = crypto().createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 20);
  const fd = openSync(path, "r");
  let bytes = 0;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, bytes);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return { sha256: hash.digest("hex"), bytes };
}

/** sha256 and size of everything `stream` yields, consuming it (constant memory). */
export async function hashStream(stream: AsyncIterable<Uint8Array>): Promise<{ sha256: string; bytes: number }> {
  const hash = crypto().createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest("hex"), bytes };
}
