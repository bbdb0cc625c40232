/**
 * Local files in and out of any storage, streaming (constant memory for any size): a local file
 * stored under a name with its sha256 computed on the way, and a stored file fetched into a
 * local file through sha256, put in place only when its digest is the one expected.
 */
import { closeSync, createReadStream, createWriteStream, fsync as fsFsync, open as fsOpen, renameSync } from "node:fs";
import { dirname } from "node:path";
import { pipeline } from "node:stream/promises";
import { IoError, ioError, WalmgrError } from "../errors";
import type { StorageDriver, WriteOptions } from "./driver";
import { createTemp, fsyncDir, removeQuietly, tempNameFor } from "./durable";
import { HashStream } from "./sha256";

const CHUNK = 1 << 20;

/**
 * Stores the local file `src` (a regular file or a pipe) at `path`, streaming, and returns the
 * sha256 and size of what it stored. `stored` is false when `exclusive` and the name was taken:
 * nothing changed (the digest is still that of `src`, for comparison).
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
  const input = createReadStream("", { fd, highWaterMark: CHUNK });
  let handle;
  try {
    handle = await driver.newWrite(path, opts);
  } catch (err) {
    input.destroy();
    throw err;
  }
  const hash = new HashStream();
  input.on("error", () => undefined); // reported by pipeline, named below
  try {
    await pipeline(input, hash, handle);
  } catch (err) {
    await handle.abort();
    if (input.errored) throw ioError("cannot read", src, input.errored);
    throw err instanceof WalmgrError ? err : ioError("cannot write", path, err);
  }
  const stored = await handle.commit();
  return { sha256: hash.sha256, bytes: hash.bytes, stored };
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
  opts: { expectSha256?: string; onMismatch?: (actual: string) => Error; durable?: boolean } = {},
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
  const out = createWriteStream("", { fd, autoClose: false, highWaterMark: CHUNK });
  const hash = new HashStream();
  try {
    await pipeline(input, hash, out);
    if (opts.durable === true) await new Promise<void>((res, rej) => fsFsync(fd, (e) => (e ? rej(e) : res())));
  } catch (err) {
    closeSync(fd);
    removeQuietly(tmp);
    if (err instanceof WalmgrError) throw err;
    throw input.errored ? ioError("cannot read", path, err) : ioError("cannot write", dest, err);
  }
  closeSync(fd);
  if (opts.expectSha256 !== undefined && hash.sha256 !== opts.expectSha256) {
    removeQuietly(tmp);
    throw (
      opts.onMismatch?.(hash.sha256) ??
      new IoError(`${path} does not match its checksum: not copied to ${dest}`, "the stored copy is damaged")
    );
  }
  try {
    renameSync(tmp, dest);
    if (opts.durable === true) fsyncDir(dirname(dest));
  } catch (err) {
    removeQuietly(tmp);
    throw ioError("cannot write", dest, err);
  }
  return { sha256: hash.sha256, bytes: hash.bytes };
}
