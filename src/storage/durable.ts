import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  open as fsOpen,
  read as fsRead,
  write as fsWrite,
  fsync as fsFsync,
  copyFile as fsCopyFile,
} from "node:fs";
import { createHash } from "node:crypto";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { ioError, isErrno, WalmgrError } from "../errors";

/** Prefix of every temporary file this project writes; never a WAL-like name. */
export const TMP_PREFIX = ".walmgr-tmp.";

/**
 * How long a temp file written from another host (a slave directory mounted by two machines)
 * may sit unchanged before a cleaner here takes its writer for dead: its pid means nothing on
 * this host. A writer that is alive keeps its temp fresh by writing it, and commits seconds
 * after its last write; losing a temp only ever costs that writer a retry.
 */
export const FOREIGN_TEMP_LEASE_MS = 60 * 60 * 1000;

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

/** This host's name as it appears in temp names: letters, digits and '-' only (no '.'). */
export function hostTag(host = hostname()): string {
  return host.replace(/[^A-Za-z0-9-]/g, "-").slice(0, 64) || "-";
}

/**
 * When the process `pid` started (clock ticks since boot, /proc/PID/stat field 22), or
 * undefined where that cannot be read (no /proc, or the process is gone). Together with the
 * pid it names a process for certain: a reused pid has another start time.
 */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses, so count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const start = fields[19];
    return start !== undefined && /^\d+$/.test(start) ? start : undefined;
  } catch {
    return undefined;
  }
}

let ownToken: string | undefined;

/** This process as the owner of its temp files: `PID-START@HOST` (`PID@HOST` without /proc). */
export function ownerToken(): string {
  if (ownToken === undefined) {
    const start = processStart(process.pid);
    ownToken = `${process.pid}${start === undefined ? "" : `-${start}`}@${hostTag()}`;
  }
  return ownToken;
}

/**
 * The temporary name for `path`: hidden, beside it, and naming its writer (this process, for
 * as long as it owns the temp), so that a cleaner can tell a dead writer's litter from a live
 * writer's work: `.walmgr-tmp.NAME.PID-START@HOST`.
 */
export function tempNameFor(path: string): string {
  return join(dirname(path), `${TMP_PREFIX}${basename(path)}.${ownerToken()}`);
}

/**
 * Creates the temp file `tmp` for writing, private (0600) from its first moment, and owned like
 * its folder when root writes. The name is this process's own, so an existing file of that name
 * is a leftover of an earlier process with the same pid (where start times are unknown): it is
 * replaced.
 */
export function createTemp(tmp: string): number {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
  let fd: number;
  try {
    fd = openSync(tmp, flags, 0o600);
  } catch (err) {
    if (!isErrno(err, "EEXIST")) throw err;
    unlinkSync(tmp);
    fd = openSync(tmp, flags, 0o600);
  }
  try {
    fchmodSync(fd, 0o600); // the umask may only narrow 0600; this makes the intent explicit
    inheritOwner(fd, dirname(tmp));
  } catch (err) {
    closeSync(fd);
    removeQuietly(tmp);
    throw err;
  }
  return fd;
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
  const tmp = tempNameFor(path);
  let fd: number | undefined;
  try {
    fd = createTemp(tmp);
    if (opts.mode !== undefined && opts.mode !== 0o600) fchmodSync(fd, opts.mode);
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
 * Copies the local file `src` (a regular file or a pipe) to a temporary file beside `path`,
 * makes it durable, and returns the sha256 of the staged copy with a commit and an abort
 * function. Splitting the two lets the caller decide between them. The temp file is 0600 from
 * its creation and named after this process (see `tempNameFor`), so a kill -9 leaves nothing
 * readable by others and nothing a later cleaner cannot recognise as litter.
 */
export async function stageFileCopy(path: string, src: string): Promise<StagedCopy> {
  const tmp = tempNameFor(path);
  const abort = (): void => removeQuietly(tmp);
  let inFd: number;
  try {
    // On the thread pool: opening a FIFO waits for its writer without blocking signal handling.
    inFd = await new Promise<number>((resolveOpen, rejectOpen) =>
      fsOpen(src, "r", (err, fd) => (err ? rejectOpen(err) : resolveOpen(fd))),
    );
  } catch (err) {
    throw ioError("cannot read", src, err);
  }
  let result: { sha256: string; bytes: number };
  let outFd: number | undefined;
  try {
    outFd = createTemp(tmp);
    const st = fstatSync(inFd);
    // The kernel copies a private regular file (libuv gives the temp the source's mode for a
    // moment, so only a 0600 source keeps the temp private throughout); pipes and files others
    // may read go through our buffers.
    result =
      st.isFile() && (st.mode & 0o077) === 0
        ? await kernelCopyHashed(inFd, outFd, src, tmp)
        : await copyHashed(inFd, outFd, src);
  } catch (err) {
    abort();
    throw err instanceof WalmgrError ? err : ioError("cannot write", path, err);
  } finally {
    closeSync(inFd);
    if (outFd !== undefined) closeSync(outFd);
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

const COPY_CHUNK = 1 << 20;

function readChunk(fd: number, buf: Buffer): Promise<number> {
  return new Promise((resolveRead, rejectRead) =>
    fsRead(fd, buf, 0, buf.length, null, (err, n) => (err ? rejectRead(err) : resolveRead(n))),
  );
}

async function writeChunk(fd: number, data: Buffer): Promise<void> {
  let off = 0;
  while (off < data.length) {
    off += await new Promise<number>((resolveWrite, rejectWrite) =>
      fsWrite(fd, data, off, data.length - off, null, (err, n) => (err ? rejectWrite(err) : resolveWrite(n))),
    );
  }
}

/**
 * Copies `inFd` to `outFd` and fsyncs the copy; returns the sha256 and size of what it copied.
 * The thread pool writes one chunk and reads the next while this thread hashes the chunk in
 * between, so the hash costs little wall time beyond the copy it overlaps (the checksum of a
 * segment is the price of archiving it, paid once). Sequential reads work for pipes too.
 */
async function copyHashed(inFd: number, outFd: number, src: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash("sha256");
  let cur = Buffer.allocUnsafe(COPY_CHUNK);
  let spare = Buffer.allocUnsafe(COPY_CHUNK);
  let bytes = 0;
  let n: number;
  try {
    n = await readChunk(inFd, cur);
  } catch (err) {
    throw ioError("cannot read", src, err);
  }
  while (n > 0) {
    const chunk = cur.subarray(0, n);
    const written = writeChunk(outFd, chunk);
    const next = readChunk(inFd, spare);
    hash.update(chunk);
    // Both must settle before a buffer is reused or a descriptor closed.
    const [w, r] = await Promise.allSettled([written, next]);
    if (w.status === "rejected") throw w.reason;
    if (r.status === "rejected") throw ioError("cannot read", src, r.reason);
    bytes += n;
    [cur, spare] = [spare, cur];
    n = r.value;
  }
  await new Promise<void>((resolveSync, rejectSync) =>
    fsFsync(outFd, (err) => (err ? rejectSync(err) : resolveSync())),
  );
  return { sha256: hash.digest("hex"), bytes };
}

/**
 * Like `copyHashed` for a regular file, about 10 ms faster per 16 MiB segment: the kernel copies
 * `src` into the temp (copy_file_range through libuv's copyFile, on the thread pool) while this
 * thread hashes `src`; then the copy is fsynced. The digest is of the source as read; should the
 * source change during the copy (PostgreSQL never writes a segment it is archiving), the
 * stored copy fails its checksum on the way out instead of being served wrong.
 */
async function kernelCopyHashed(
  inFd: number,
  outFd: number,
  src: string,
  tmp: string,
): Promise<{ sha256: string; bytes: number }> {
  const copied = new Promise<void>((res, rej) => fsCopyFile(src, tmp, (err) => (err ? rej(err) : res())));
  const hash = createHash("sha256");
  const buf = Buffer.allocUnsafe(COPY_CHUNK);
  let bytes = 0;
  try {
    for (;;) {
      const n = readSync(inFd, buf, 0, buf.length, bytes);
      if (n === 0) break;
      hash.update(buf.subarray(0, n));
      bytes += n;
    }
  } catch (err) {
    await copied.catch(() => undefined);
    throw ioError("cannot read", src, err);
  }
  await copied;
  fchmodSync(outFd, 0o600);
  const copiedSize = fstatSync(outFd).size;
  if (copiedSize !== bytes) throw new Error(`copied ${copiedSize} bytes but read ${bytes} from ${src}`);
  await new Promise<void>((resolveSync, rejectSync) =>
    fsFsync(outFd, (err) => (err ? rejectSync(err) : resolveSync())),
  );
  return { sha256: hash.digest("hex"), bytes };
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
 * Writes `data` at `offset` of an existing regular file and fsyncs it. A symbolic link (or
 * anything else) planted under `path` is refused, never written through: its target could be
 * any file the writer may write (a master's WAL segment, say).
 */
export function writeAtDurable(path: string, offset: number, data: Uint8Array): void {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    if (!fstatSync(fd).isFile()) throw new Error("not a regular file");
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

const OWNER = /^(\d+)(?:-(\d+))?(?:@([A-Za-z0-9-]+))?$/;

/**
 * Whether the writer named at the end of the temp file name `name` is gone, so that the temp
 * is litter. A writer on this host is judged by pid and start time (a reused pid has another
 * start), one on another host (a slave directory mounted on two machines) by the temp's age:
 * FOREIGN_TEMP_LEASE_MS without a write. Older versions named temps with a bare pid: those are
 * judged as this host's by pid alone; names that carry no writer at all are litter.
 */
export function tempWriterGone(name: string, ageMs: () => number): boolean {
  const m = OWNER.exec(name.slice(name.lastIndexOf(".") + 1));
  if (!m) return true;
  const pid = Number(m[1]);
  const start = m[2];
  const host = m[3];
  if (host !== undefined && host !== hostTag()) return ageMs() > FOREIGN_TEMP_LEASE_MS;
  if (!Number.isSafeInteger(pid) || pid <= 0) return true;
  if (pid === process.pid) return start !== undefined && start !== processStart(pid);
  if (!processAlive(pid)) return true;
  if (start === undefined) return false;
  const now = processStart(pid);
  return now !== undefined && now !== start;
}

/**
 * Removes the temp files in `dir` (only those for `forName`, when given) whose writers are
 * gone (see tempWriterGone): what a kill -9 or a crash left behind. A live writer's temp is
 * never touched, on this host or another; removing a temp at worst costs its writer a retry.
 */
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
    const path = join(dir, n);
    const age = (): number => {
      try {
        return Date.now() - lstatSync(path).mtimeMs;
      } catch {
        return 0; // gone meanwhile
      }
    };
    if (!tempWriterGone(n, age)) continue;
    try {
      unlinkSync(path);
    } catch {
      // raced with another cleaner, or not a file
    }
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return isErrno(err, "EPERM");
  }
  // A zombie has exited and only waits for its parent to reap it: it holds nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return true; // no /proc here, or gone this instant: kill(0) said it was there
  }
}
