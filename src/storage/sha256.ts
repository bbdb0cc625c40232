/**
 * The one sha256 helper: of a buffer, of a local file (read in 1 MiB chunks, constant memory),
 * and of a stream passing through (`HashStream`), so that verify-while-read costs no second read.
 */
import { createHash, type Hash } from "node:crypto";
import { closeSync, openSync, readSync } from "node:fs";
import { Transform, type TransformCallback } from "node:stream";

/** An incremental sha256 (update chunks, digest("hex") at the end): the one place naming it. */
export function newSha256(): Hash {
  return createHash("sha256");
}

/** Hex sha256 of `data`. */
export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** sha256 and size of a local file, read in 1 MiB chunks. */
export function hashFile(path: string): { sha256: string; bytes: number } {
  const hash = createHash("sha256");
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

/**
 * A pass-through that hashes what flows through it; `sha256` and `bytes` are final once the
 * stream has ended (after `pipeline` resolves).
 */
export class HashStream extends Transform {
  private readonly hash = createHash("sha256");
  private digest: string | undefined;
  bytes = 0;

  constructor() {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    this.digest = this.hash.digest("hex");
    cb();
  }

  /** Hex sha256 of everything that passed; only once the stream has ended. */
  get sha256(): string {
    if (this.digest === undefined) throw new Error("HashStream: sha256 asked before the end of the stream");
    return this.digest;
  }
}

/** sha256 and size of everything `stream` yields, consuming it (constant memory). */
export async function hashStream(stream: AsyncIterable<Uint8Array>): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest("hex"), bytes };
}
