/**
 * Local files in and out of any storage, streaming (constant memory for any size): a local file
 * stored under a name with its sha256 computed on the way, and a stored file fetched into a
 * local file through sha256, put in place only when its digest is the one expected.
 */
import { closeSync, fsync as fsFsync, open as fsOpen, read as fsRead, renameSync, write as fsWrite } from "node:fs";
import { dirname } from "node:path";
import type { Writable } from "node:stream";
import { IoError, ioError, WalmgrError } from "../errors";
import type { ReadStream, StorageDriver, WriteHandle, WriteOptions } from "./driver";
import { createTemp, fsyncDir, removeQuietly, tempNameFor } from "./durable";
import { newSha256 } from "./sha256";

const CHUNK = 1 << 20;

/**
 * The chunks of `stream`, through caller-owned buffers when the driver offers `readInto`: then
 * each chunk is only valid until the next is asked for (consume it, awaiting any write of it,
 * before you pull again), and nothing is allocated per chunk.
 */
export async function* chunks(stream: ReadStream): AsyncGenerator<Buffer> {
  if (stream.readInto === undefined) {
    for await (const c of stream) yield c as Buffer;
    return;
  }
  const buf = Buffer.allocUnsafe(CHUNK);
  try {
    for (;;) {
      const n = await stream.readInto(buf);
      if (n === 0) return;
      yield buf.subarray(0, n);
    }
  } finally {
    stream.destroy();
  }
}

function readChunk(fd: number, buf: Buffer): Promise<number> {
  return new Promise((res, rej) => fsRead(fd, buf, 0, buf.length, null, (err, n) => (err ? rej(err) : res(n))));
}

/** Writes `chunk` to `w`; resolves when the writer is done with it (the buffer may be reused). */
function writeTo(w: Writable, chunk: Buffer): Promise<void> {
  return new Promise((res, rej) => {
    w.write(chunk, (err) => (err ? rej(err) : res()));
  });
}

/**
 * Stores the local file `src` (a regular file or a pipe) at `path`, streaming, and returns the
 * sha256 and size of `src` as it was read (what was stored, before any `padTo` zeros: the
 * stored copy itself is not read back). `stored` is false when `exclusive` and the name was
 * taken: nothing changed (the digest is still that of `src`, for comparison). Two buffers alternate:
 * the next chunk is read while the last is written and hashed, and nothing is allocated per
 * chunk, so a segment of any size costs a few MB.
 */
export async function storeFile(
  driver: StorageDriver,
  path: string,
  src: string,
  opts: WriteOptions = {},
): Promise<{ sha256: string; bytes: number; stored: boolean }> {
  let fd: number;
  try {
    // On the thread pool: opening a FIFO waits for its writer without blocking signal handling.
    fd = await new Promise<number>((res, rej) => fsOpen(src, "r", (err, f) => (err ? rej(err) : res(f))));
  } catch (err) {
    throw ioError("cannot read", src, err);
  }
  let handle: WriteHandle;
  try {
    handle = await driver.newWrite(path, opts);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  handle.on("error", () => undefined); // reported through the write callbacks
  let whole: { sha256: string; bytes: number } | undefined;
  try {
    whole = await handle.copyFile?.(src, fd);
  } catch (err) {
    closeSync(fd);
    await handle.abort();
    throw err;
  }
  if (whole !== undefined) {
    closeSync(fd);
    return { ...whole, stored: await handle.commit() };
  }
  const hash = newSha256();
  let bytes = 0;
  try {
    let cur = Buffer.allocUnsafe(CHUNK);
    let spare = Buffer.allocUnsafe(CHUNK);
    let n = await readChunk(fd, cur).catch((err: unknown) => Promise.reject(ioError("cannot read", src, err)));
    while (n > 0) {
      const chunk = cur.subarray(0, n);
      const written = writeTo(handle, chunk);
      const next = readChunk(fd, spare);
      hash.update(chunk);
      // Both must settle before a buffer is reused or a descriptor closed.
      const [w, r] = await Promise.allSettled([written, next]);
      if (w.status === "rejected") throw w.reason;
      if (r.status === "rejected") throw ioError("cannot read", src, r.reason);
      bytes += n;
      [cur, spare] = [spare, cur];
      n = r.value;
    }
  } catch (err) {
    await handle.abort();
    throw err instanceof WalmgrError ? err : ioError("cannot write", path, err);
  } finally {
    closeSync(fd);
  }
  const stored = await handle.commit();
  return { sha256: hash.digest("hex"), bytes, stored };
}

/** Options of `fetchToFile`. */
export interface FetchOptions {
  /** The digest the copy must have; a mismatch removes the temp and throws `onMismatch(actual)`. */
  expectSha256?: string;
  onMismatch?: (actual: string) => Error;
  /** fsync the file and its folder. */
  durable?: boolean;
  /**
   * Runs once the copy is complete and its digest checked, on the temp still under its private
   * name, before it is renamed to `dest`: what must exist before `dest` does (the prefetch
   * spool's record of a verified entry). A throw removes the temp and fails the fetch.
   */
  beforeRename?: (tmp: string, got: { sha256: string; bytes: number }) => Promise<void>;
}

/**
 * Copies the stored file `path` into the local file `dest`, through sha256: written to a private
 * (0600) temp beside `dest`, and renamed to `dest` only when the digest is `expectSha256` (when
 * given); a mismatch removes the temp and throws `onMismatch(actual)`, so `dest` is never a
 * short, partial or unverified file. `durable` fsyncs the file and its folder. Undefined when
 * nothing is stored under `path` (and `dest` is untouched).
 */
export async function fetchToFile(
  driver: StorageDriver,
  path: string,
  dest: string,
  opts: FetchOptions = {},
): Promise<{ sha256: string; bytes: number } | undefined> {
  const input = await driver.newRead(path);
  if (input === undefined) return undefined;
  const tmp = tempNameFor(dest);
  let fd: number;
  try {
    fd = createTemp(tmp);
  } catch (err) {
    input.destroy();
    throw ioError("cannot write", dest, err);
  }
  const hash = newSha256();
  let bytes = 0;
  let reading = true;
  try {
    for await (const chunk of chunks(input)) {
      reading = false;
      hash.update(chunk);
      await writeFully(fd, chunk);
      bytes += chunk.length;
      reading = true;
    }
    if (opts.durable === true) await new Promise<void>((res, rej) => fsFsync(fd, (e) => (e ? rej(e) : res())));
  } catch (err) {
    closeSync(fd);
    removeQuietly(tmp);
    if (err instanceof WalmgrError) throw err;
    throw reading ? ioError("cannot read", path, err) : ioError("cannot write", dest, err);
  }
  const digest = hash.digest("hex");
  closeSync(fd);
  if (opts.expectSha256 !== undefined && digest !== opts.expectSha256) {
    removeQuietly(tmp);
    throw (
      opts.onMismatch?.(digest) ??
      new IoError(`${path} does not match its checksum: not copied to ${dest}`, "the stored copy is damaged")
    );
  }
  if (opts.beforeRename !== undefined) {
    try {
      await opts.beforeRename(tmp, { sha256: digest, bytes });
    } catch (err) {
      removeQuietly(tmp);
      throw err;
    }
  }
  try {
    renameSync(tmp, dest);
    if (opts.durable === true) fsyncDir(dirname(dest));
  } catch (err) {
    removeQuietly(tmp);
    throw ioError("cannot write", dest, err);
  }
  return { sha256: digest, bytes };
}

async function writeFully(fd: number, data: Buffer): Promise<void> {
  let off = 0;
  while (off < data.length) {
    off += await new Promise<number>((res, rej) =>
      fsWrite(fd, data, off, data.length - off, null, (err, n) => (err ? rej(err) : res(n))),
    );
  }
}
