import {
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readdirSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { inheritOwner } from "../fs-owner";
import { hostname } from "node:os";
import { basename, dirname, join } from "node:path";
import { ioError, isErrno } from "../errors";
import { processAlive, processStart } from "../proc";

/** Prefix of every temporary file this project writes; never a WAL-like name. */
export const TMP_PREFIX = ".walmgr-tmp.";

/**
 * How long a temp file written from another host (a slave directory mounted by two machines)
 * may sit unchanged before a cleaner here takes its writer for dead: its pid means nothing on
 * this host. A writer that is alive keeps its temp fresh by writing it, and commits seconds
 * after its last write; losing a temp only ever costs that writer a retry.
 */
export const FOREIGN_TEMP_LEASE_MS = 60 * 60 * 1000;

// Kept here for the storage code that already imports it from durable.ts.
export { inheritOwner };

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

/** Writes `data` at `offset` of an existing file and fsyncs it. */
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
