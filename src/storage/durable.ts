import {
  closeSync,
  close,
  copyFile,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsync,
  fsyncSync,
  linkSync,
  open,
  openSync,
  readdirSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { ioError, isErrno } from "../errors";

/** Prefix of every temporary file this project writes; never a WAL-like name. */
export const TMP_PREFIX = ".walmgr-tmp.";

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/**
 * When root writes into a folder owned by someone else (the postgres user, typically), the new
 * file takes the folder's owner, so the server and the commands it runs can still read it.
 */
export function inheritOwner(fd: number, dir: string): void {
  if (!isRoot) return;
  const st = statSync(dir);
  if (st.uid !== 0 || st.gid !== 0) fchownSync(fd, st.uid, st.gid);
}

/** fsyncs a directory so that a rename or unlink in it survives a crash. */
export function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch (err) {
    // Some file systems refuse fsync on directories; the rename is then as durable as they allow.
    if (!isErrno(err, "EINVAL") && !isErrno(err, "EISDIR")) throw ioError("cannot fsync directory", dir, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Writes all of `data` (write() may write less than asked). */
export function writeAll(fd: number, data: Uint8Array, position: number | null = null): void {
  let off = 0;
  while (off < data.length) {
    const n = writeSync(fd, data, off, data.length - off, position === null ? null : position + off);
    off += n;
  }
}

/**
 * Puts a durable temporary file in place as `path`: rename, or with `exclusive` link() (which
 * refuses an existing target, so nothing is ever replaced), then fsyncs the directory. The
 * temporary name is gone afterwards in every case. False when `exclusive` and `path` exists.
 */
export function commitTemp(tmp: string, path: string, exclusive: boolean): boolean {
  if (exclusive) {
    try {
      linkSync(tmp, path);
    } catch (err) {
      if (isErrno(err, "EEXIST")) return false;
      throw err;
    } finally {
      unlinkSync(tmp);
    }
  } else {
    renameSync(tmp, path);
  }
  fsyncDir(dirname(path));
  return true;
}

/** Removes a file that may not exist (a temporary file after a failure). */
export function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there
  }
}

export function tempNameFor(path: string): string {
  return join(dirname(path), `${TMP_PREFIX}${basename(path)}.${process.pid}`);
}

/**
 * Writes `data` to `path` so that readers see the old content or the new, never a part, and the
 * new content survives a crash once this returns: temp file, fsync, rename, directory fsync.
 * `padTo` zero-extends the file to that size (partial WAL segments are stored full-size).
 * With `exclusive`, fails with EEXIST (returned as false) if `path` exists, atomically.
 */
export function writeFileDurable(
  path: string,
  data: Uint8Array,
  opts: { mode?: number; padTo?: number; exclusive?: boolean } = {},
): boolean {
  const dir = dirname(path);
  const tmp = tempNameFor(path);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, "w", opts.mode ?? 0o600);
    inheritOwner(fd, dir);
    writeAll(fd, data);
    if (opts.padTo !== undefined && opts.padTo > data.length) {
      writeAll(fd, Buffer.alloc(opts.padTo - data.length), data.length);
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    return commitTemp(tmp, path, opts.exclusive === true);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    removeQuietly(tmp);
    throw ioError("cannot write", path, err);
  }
}

export interface StagedCopy {
  sha256: string;
  bytes: number;
  /** rename (or link, when `exclusive`) into place + directory fsync; false when `exclusive` and the target exists. */
  commit: (exclusive?: boolean) => boolean;
  abort: () => void;
}

/**
 * Copies the local file `src` to a temporary file beside `path`, makes it durable, and returns
 * the sha256 of the staged copy with a commit and an abort function. Splitting the two lets the
 * caller make something else durable in between. A regular file is copied by the kernel and
 * fsynced on the thread pool while the main thread hashes the copy: the hash costs no wall time
 * beyond the fsync it overlaps. Anything else (a pipe) is streamed and hashed on the way.
 */
export async function stageFileCopy(path: string, src: string): Promise<StagedCopy> {
  const dir = dirname(path);
  const tmp = tempNameFor(path);
  const abort = (): void => removeQuietly(tmp);
  let isRegular: boolean;
  try {
    isRegular = statSync(src).isFile();
  } catch (err) {
    throw ioError("cannot read", src, err);
  }
  let result: { sha256: string; bytes: number };
  try {
    result = isRegular ? await kernelCopy(src, tmp, dir) : streamCopy(src, tmp, dir);
  } catch (err) {
    abort();
    throw ioError("cannot write", path, err);
  }
  return {
    ...result,
    commit: (exclusive = false) => {
      try {
        return commitTemp(tmp, path, exclusive);
      } catch (err) {
        abort();
        throw ioError("cannot write", path, err);
      }
    },
    abort,
  };
}

async function kernelCopy(src: string, tmp: string, dir: string): Promise<{ sha256: string; bytes: number }> {
  // The thread pool copies (in the kernel) and then fsyncs the copy while this thread hashes
  // the source: the passes overlap, so the checksum costs little wall time. PostgreSQL never
  // changes a segment it has handed to archive_command, so the source's hash is the copy's;
  // the sizes are compared to be sure.
  const durable = new Promise<number>((resolveCopy, rejectCopy) =>
    copyFile(src, tmp, (copyErr) => {
      if (copyErr) return rejectCopy(copyErr);
      open(tmp, "r", (openErr, fd) => {
        if (openErr) return rejectCopy(openErr);
        fsync(fd, (syncErr) => {
          let size = -1;
          try {
            size = fstatSync(fd).size;
            fchmodSync(fd, 0o600);
            inheritOwner(fd, dir);
          } catch (err) {
            syncErr ??= err as NodeJS.ErrnoException;
          }
          close(fd, () => (syncErr ? rejectCopy(syncErr) : resolveCopy(size)));
        });
      });
    }),
  );
  let hashed: { sha256: string; bytes: number };
  try {
    hashed = hashFile(src);
  } catch (err) {
    await durable.catch(() => undefined);
    throw err;
  }
  const size = await durable;
  if (size !== hashed.bytes) throw new Error(`copied ${size} bytes but read ${hashed.bytes} from ${src}`);
  return hashed;
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

function streamCopy(src: string, tmp: string, dir: string): { sha256: string; bytes: number } {
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(1 << 20);
  let bytes = 0;
  const inFd = openSync(src, "r");
  let outFd: number | undefined;
  try {
    outFd = openSync(tmp, "w", 0o600);
    inheritOwner(outFd, dir);
    for (;;) {
      const n = readSync(inFd, buf, 0, buf.length, null);
      if (n === 0) break;
      const chunk = buf.subarray(0, n);
      hash.update(chunk);
      writeAll(outFd, chunk);
      bytes += n;
    }
    fsyncSync(outFd);
  } finally {
    closeSync(inFd);
    if (outFd !== undefined) closeSync(outFd);
  }
  return { sha256: hash.digest("hex"), bytes };
}

/** Writes `data` at `offset` of an existing file and fsyncs it. */
export function writeAtDurable(path: string, offset: number, data: Uint8Array): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r+");
    writeAll(fd, data, offset);
    fsyncSync(fd);
  } catch (err) {
    throw ioError("cannot write", path, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Removes a file and fsyncs its directory; false when it was not there. */
export function removeDurable(path: string): boolean {
  try {
    unlinkSync(path);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw ioError("cannot remove", path, err);
  }
  fsyncDir(dirname(path));
  return true;
}

/** Removes temp files left in `dir` by killed processes (their pid is gone). */
export function removeStaleTemps(dir: string, forName?: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  const prefix = forName === undefined ? TMP_PREFIX : `${TMP_PREFIX}${forName}.`;
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number.parseInt(n.slice(n.lastIndexOf(".") + 1), 10);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) continue;
    try {
      unlinkSync(join(dir, n));
    } catch {
      // raced with another cleaner
    }
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return isErrno(err, "EPERM");
  }
}
