import {
  closeSync,
  constants,
  copyFileSync,
  fstatSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  chmodSync,
  chownSync,
  existsSync,
  read as fsRead,
  fsync as fsFsync,
  ftruncateSync,
  copyFile as fsCopyFile,
  fchmodSync,
  readlinkSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { Readable, Writable, finished } from "node:stream";
import { IoError, ioError, isErrno, WalmgrError } from "../../errors";
import type {
  FileInfo,
  ReadStream,
  StorageDriver,
  StorageFeatures,
  TreeProgress,
  TreeStats,
  WriteHandle,
  WriteOptions,
} from "../driver";
import { buildManifest, type Manifest } from "../manifest";
import { newSha256 } from "../sha256";
import {
  commitTemp,
  createTemp,
  fsyncDir,
  removeDurable,
  removeQuietly,
  removeStaleTemps,
  tempNameFor,
  writeAtDurable,
} from "../durable";
import { expectedOwner, foreignFile, foreignFolder } from "../owners";
import { readAt, writeAt } from "../positional";
import { walkTree, walkTreeSync } from "../tree-walk";

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Creates `dir` and missing parents at 0700; as root, new folders take their parent's owner. */
export function mkdirPrivate(dir: string): void {
  if (existsSync(dir)) return;
  const parent = dirname(dir);
  if (parent !== dir) mkdirPrivate(parent);
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if (isErrno(err, "EEXIST")) return;
    throw ioError("cannot create directory", dir, err);
  }
  if (isRoot) {
    const st = statSync(parent);
    if (st.uid !== 0) chownSync(dir, st.uid, st.gid);
  }
  fsyncDir(parent);
}

/** foreignFile for the file `path` (stat `st`), judged in its folder. */
function foreignOf(path: string, st: { uid: number; mode: number }): string | undefined {
  let folderUid: number | undefined;
  try {
    folderUid = statSync(dirname(path)).uid;
  } catch {
    // judged without its folder's owner
  }
  return foreignFile(st, folderUid);
}

/** The slave directory is on this machine (or a mounted file system). */
export class LocalDriver implements StorageDriver {
  readonly description = "local";
  readonly features: StorageFeatures = {
    range: {
      readRange: async (path: string, offset: number, length: number): Promise<Buffer> => {
        let fd: number;
        try {
          fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
        } catch (err) {
          throw ioError("cannot read", path, err);
        }
        try {
          if (!fstatSync(fd).isFile()) throw new IoError(`cannot read ${path}: not a regular file`);
          const buf = Buffer.allocUnsafe(length);
          const got = await readAt(fd, buf, offset).catch((err: unknown) =>
            Promise.reject(ioError("cannot read", path, err)),
          );
          if (got !== length)
            throw new IoError(`cannot read ${path}: ${length} bytes wanted at ${offset}, the file ends after ${got}`);
          return buf;
        } finally {
          closeSync(fd);
        }
      },
    },
    writeAt: {
      writeAt: async (path: string, offset: number, data: Uint8Array): Promise<void> => {
        writeAtDurable(path, offset, data);
        return Promise.resolve();
      },
    },
    tree: {
      manifest: async (dir: string): Promise<Manifest> => {
        try {
          return Promise.resolve(buildManifest(dir));
        } catch (err) {
          throw ioError("cannot read", dir, err);
        }
      },
      removeTree: async (path: string): Promise<void> => {
        try {
          rmSync(path, { recursive: true, force: true });
          fsyncDir(dirname(path));
        } catch (err) {
          throw ioError("cannot remove", path, err);
        }
        return Promise.resolve();
      },
      renameDir: async (from: string, to: string): Promise<void> => {
        if (existsSync(to)) throw new WalmgrError(`cannot rename ${from} to ${to}: the target exists`, 9);
        try {
          renameSync(from, to);
        } catch (err) {
          throw ioError(`cannot rename ${from} to`, to, err);
        }
        fsyncDir(dirname(to));
        if (dirname(from) !== dirname(to)) fsyncDir(dirname(from));
        return Promise.resolve();
      },
      putTree: async (src, dest, keep, opts): Promise<TreeStats> => copyTree(src, dest, keep, opts?.onProgress),
    },
  };

  async info(path: string): Promise<FileInfo | undefined> {
    let link = false;
    try {
      link = lstatSync(path).isSymbolicLink();
      const st = statSync(path);
      const foreign = link ? undefined : st.isDirectory() ? foreignFolder(st) : foreignOf(path, st);
      return Promise.resolve({
        size: st.size,
        mtimeMs: st.mtimeMs,
        isDirectory: st.isDirectory(),
        isFile: st.isFile() && !link,
        isSymlink: link,
        ...(foreign !== undefined ? { foreign } : {}),
      });
    } catch (err) {
      // A dangling symbolic link is there (it blocks the name) but leads nowhere.
      if (isErrno(err, "ENOENT") && link)
        return { size: 0, mtimeMs: 0, isDirectory: false, isFile: false, isSymlink: true };
      if (isErrno(err, "ENOENT")) return Promise.resolve(undefined);
      throw ioError("cannot stat", path, err);
    }
  }

  async list(dir: string): Promise<string[] | undefined> {
    try {
      return Promise.resolve(readdirSync(dir));
    } catch (err) {
      if (isErrno(err, "ENOENT")) return Promise.resolve(undefined);
      throw ioError("cannot list", dir, err);
    }
  }

  async remove(path: string): Promise<boolean> {
    return Promise.resolve(removeDurable(path));
  }

  async pathCreate(dir: string): Promise<void> {
    mkdirPrivate(dir);
    return Promise.resolve();
  }

  async newRead(path: string): Promise<ReadStream | undefined> {
    const file = openRegularFile(path);
    if (file === undefined) return undefined;
    return Promise.resolve(new LocalRead(path, file.fd));
  }

  async newWrite(path: string, opts: WriteOptions = {}): Promise<WriteHandle> {
    // Litter of killed writers beside `path` goes on the way in when asked: a kill -9 must
    // not leave temps that pile up until the disk is full.
    if (opts.sweepDeadWriters === true) removeStaleTemps(dirname(path));
    const tmp = tempNameFor(path);
    let fd: number;
    try {
      fd = createTemp(tmp);
    } catch (err) {
      throw ioError("cannot write", path, err);
    }
    return Promise.resolve(new LocalWrite(path, tmp, fd, opts));
  }
}

const CHUNK = 1 << 20;

/** A local file as a ReadStream: streamed, or read into the caller's buffers (`readInto`). */
class LocalRead extends Readable implements ReadStream {
  private fd: number | undefined;

  constructor(
    readonly path: string,
    fd: number,
  ) {
    super({ highWaterMark: CHUNK });
    this.fd = fd;
  }

  async readInto(buf: Buffer): Promise<number> {
    const fd = this.fd;
    if (fd === undefined) return 0;
    try {
      const n = await new Promise<number>((res, rej) =>
        fsRead(fd, buf, 0, buf.length, null, (err, got) => (err ? rej(err) : res(got))),
      );
      if (n === 0) this.closeFd();
      return n;
    } catch (err) {
      this.closeFd();
      throw ioError("cannot read", this.path, err);
    }
  }

  override _read(size: number): void {
    const buf = Buffer.allocUnsafe(Math.max(size, 64 * 1024));
    this.readInto(buf).then(
      (n) => this.push(n === 0 ? null : buf.subarray(0, n)),
      (err: Error) => this.destroy(err),
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.closeFd();
    cb(err);
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // read-only descriptor
    }
    this.fd = undefined;
  }
}

/**
 * A new local file: written to a private temp beside `path` (see tempNameFor), fsynced at the
 * end, then renamed (or, exclusive, linked) into place with a folder fsync.
 */
class LocalWrite extends Writable implements WriteHandle {
  private fd: number | undefined;
  private written = 0;
  private done = false;

  constructor(
    readonly path: string,
    private readonly tmp: string,
    fd: number,
    private readonly opts: WriteOptions,
  ) {
    // autoDestroy off: finishing the stream must not discard the temp before `commit`.
    super({ highWaterMark: CHUNK, autoDestroy: false });
    this.fd = fd;
  }

  /**
   * Copies `src` into the temp while hashing it, one of two ways. A file whose last 64 KiB are
   * zeros (a segment PostgreSQL switched early: archive_timeout, pg_switch_wal, a backup's
   * start; the benchmark's held WAL in 157 of 2048 pages) is read once, chunk by chunk, and
   * written with holes where it has whole blocks of zeros (copySparse): the copy holds the same
   * bytes (a hole reads as zeros) at about a tenth of the writes and space. Any other private
   * file is copied by the kernel while this thread hashes it (copyKernel): 16 segments full of
   * WAL took 235-300 ms that way, 336-397 ms through our buffers. No reader depends on the
   * holes: every restore writes the bytes it reads (a restored segment in pg_wal is never
   * sparse, which PostgreSQL needs: it writes into recycled segments in place). The digest is of
   * `src` as read; should it change during the copy (PostgreSQL never writes a segment it
   * archives), the stored copy fails its checksum when served instead of being served wrong.
   */
  async copyFile(src: string, srcFd: number): Promise<{ sha256: string; bytes: number } | undefined> {
    const fd = this.fd;
    if (fd === undefined || this.written > 0 || this.opts.padTo !== undefined) return undefined;
    const st = fstatSync(srcFd);
    if (!st.isFile()) return undefined;
    // libuv's copy gives the temp the source's mode for a moment: only a private source keeps
    // the temp private throughout.
    const got =
      (st.mode & 0o077) === 0 && !(await endsInZeros(srcFd, st.size).catch(() => false))
        ? await this.copyKernel(src, srcFd, fd)
        : await this.copySparse(src, srcFd, fd);
    this.written = got.bytes;
    return got;
  }

  private async copySparse(src: string, srcFd: number, fd: number): Promise<{ sha256: string; bytes: number }> {
    const hash = newSha256();
    let cur = Buffer.allocUnsafe(CHUNK);
    let spare = Buffer.allocUnsafe(CHUNK);
    let bytes = 0;
    let n = await readAt(srcFd, cur, 0).catch((err: unknown) => Promise.reject(ioError("cannot read", src, err)));
    while (n > 0) {
      const chunk = cur.subarray(0, n);
      const next = readAt(srcFd, spare, bytes + n);
      hash.update(chunk);
      const written = writeDataBlocks(fd, chunk, bytes);
      // Both must settle before a buffer is reused or a descriptor closed.
      const [w, r] = await Promise.allSettled([written, next]);
      if (w.status === "rejected") throw ioError("cannot write", this.path, w.reason);
      if (r.status === "rejected") throw ioError("cannot read", src, r.reason);
      bytes += n;
      [cur, spare] = [spare, cur];
      n = r.value;
    }
    try {
      // Trailing zeros are a hole too: the size says where the file ends.
      ftruncateSync(fd, bytes);
    } catch (err) {
      throw ioError("cannot write", this.path, err);
    }
    return { sha256: hash.digest("hex"), bytes };
  }

  private async copyKernel(src: string, srcFd: number, fd: number): Promise<{ sha256: string; bytes: number }> {
    const copied = new Promise<void>((res, rej) => fsCopyFile(src, this.tmp, (err) => (err ? rej(err) : res())));
    const hash = newSha256();
    const buf = Buffer.allocUnsafe(CHUNK);
    let bytes = 0;
    try {
      for (;;) {
        // Read on the thread pool: the event loop stays free for the other batch workers to
        // start their copies and hash between this one's chunks (2 copies at once, not 1).
        const n = await new Promise<number>((res, rej) =>
          fsRead(srcFd, buf, 0, buf.length, bytes, (err, got) => (err ? rej(err) : res(got))),
        );
        if (n === 0) break;
        hash.update(buf.subarray(0, n));
        bytes += n;
      }
    } catch (err) {
      await copied.catch(() => undefined);
      throw ioError("cannot read", src, err);
    }
    try {
      await copied;
      fchmodSync(fd, 0o600);
      const size = fstatSync(fd).size;
      if (size !== bytes) throw new Error(`copied ${size} bytes but read ${bytes} from ${src}`);
    } catch (err) {
      throw ioError("cannot write", this.path, err);
    }
    return { sha256: hash.digest("hex"), bytes };
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const fd = this.fd;
    if (fd === undefined) return cb(new IoError(`cannot write ${this.path}: already closed`));
    writeAt(fd, chunk, null).then(
      () => {
        this.written += chunk.length;
        cb();
      },
      (err: unknown) => cb(ioError("cannot write", this.path, err)),
    );
  }

  override _final(cb: (err?: Error | null) => void): void {
    const fd = this.fd;
    if (fd === undefined) return cb(new IoError(`cannot write ${this.path}: already closed`));
    (async (): Promise<void> => {
      const padTo = this.opts.padTo ?? 0;
      if (padTo > this.written) {
        const zeros = Buffer.alloc(Math.min(CHUNK, padTo - this.written));
        while (this.written < padTo) {
          const n = Math.min(zeros.length, padTo - this.written);
          await writeAt(fd, zeros.subarray(0, n), null);
          this.written += n;
        }
      }
      await new Promise<void>((res, rej) => fsFsync(fd, (err) => (err ? rej(err) : res())));
    })().then(
      () => cb(),
      (err: unknown) => cb(ioError("cannot write", this.path, err)),
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.discard();
    cb(err);
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // closing a temp we are about to drop or have fsynced
    }
    this.fd = undefined;
  }

  private discard(): void {
    if (this.done) return;
    this.done = true;
    this.closeFd();
    removeQuietly(this.tmp);
  }

  async commit(): Promise<boolean> {
    if (this.done) throw new IoError(`cannot write ${this.path}: the write was already committed or aborted`);
    try {
      if (!this.writableFinished) {
        if (!this.writableEnded) this.end();
        // node:stream's callback form: node:stream/promises would cost wal-archive a module load.
        await new Promise<void>((resolve, reject) => finished(this, (err) => (err ? reject(err) : resolve())));
      }
    } catch (err) {
      this.discard();
      throw ioError("cannot write", this.path, err);
    }
    this.done = true;
    this.closeFd();
    try {
      return commitTemp(this.tmp, this.path, this.opts.exclusive === true);
    } catch (err) {
      removeQuietly(this.tmp);
      throw ioError("cannot write", this.path, err);
    }
  }

  async abort(): Promise<void> {
    this.discard();
    if (!this.destroyed) this.destroy();
    return Promise.resolve();
  }
}

/** Whether the file of `size` bytes ends in ZERO_SPAN bytes of zeros (one read of them). */
async function endsInZeros(fd: number, size: number): Promise<boolean> {
  if (size < ZERO_SPAN) return false;
  const tail = Buffer.allocUnsafe(ZERO_SPAN);
  return (await readAt(fd, tail, size - ZERO_SPAN)) === ZERO_SPAN && tail.equals(ZEROS);
}

/** The unit of holes: a file system block (ext4's, xfs's); a WAL page is two. */
const HOLE_BLOCK = 4096;
/** Zeros are looked for this many bytes at a time first (fewer comparisons), then block by block. */
const ZERO_SPAN = 16 * HOLE_BLOCK;
const ZEROS = Buffer.alloc(ZERO_SPAN);

/** Whether `data[off, end)` is all zeros. */
function isZero(data: Buffer, off: number, end: number): boolean {
  return data.compare(ZEROS, 0, end - off, off, end) === 0;
}

/**
 * Writes `data` at `pos` in a file that is all holes there (a new temp), leaving out each
 * aligned block of zeros: runs of other blocks are written one call each.
 */
async function writeDataBlocks(fd: number, data: Buffer, pos: number): Promise<void> {
  const runs: [number, number][] = [];
  let runStart = -1;
  const block = (off: number, end: number): void => {
    if (!isZero(data, off, end)) {
      if (runStart < 0) runStart = off;
    } else if (runStart >= 0) {
      runs.push([runStart, off]);
      runStart = -1;
    }
  };
  for (let span = 0; span < data.length; span += ZERO_SPAN) {
    const spanEnd = Math.min(span + ZERO_SPAN, data.length);
    if (isZero(data, span, spanEnd)) block(span, spanEnd);
    else for (let off = span; off < spanEnd; off += HOLE_BLOCK) block(off, Math.min(off + HOLE_BLOCK, spanEnd));
  }
  if (runStart >= 0) runs.push([runStart, data.length]);
  for (const [from, to] of runs) await writeAt(fd, data.subarray(from, to), pos + from);
}

/**
 * What a tree copy does with what is neither a folder nor a regular file. "follow": symbolic
 * links are followed (a backup copies a data directory: its tablespaces are links under
 * pg_tblspc, and any link there is meant), other special files are skipped. "refuse": nothing is
 * followed, and anything but a folder or a regular file is an IoError naming it (a restore
 * copying a backup set: backups copy what links point to, so a set holds no link, and one there
 * was planted to make the restore read or write outside its target).
 */
export type LinkPolicy = "follow" | "refuse";

/** The IoError for `path` (below `root`, the tree being restored), which is not a folder or a regular file. */
function notPlain(root: string, path: string, st: { isSymbolicLink(): boolean; isFIFO(): boolean }): IoError {
  let what = "a special file (device, FIFO or socket)";
  if (st.isSymbolicLink()) {
    let to = "?";
    try {
      to = readlinkSync(path);
    } catch {
      // gone meanwhile: it was a link all the same
    }
    what = `a symbolic link (to ${to})`;
  } else if (st.isFIFO()) what = "a FIFO";
  return new IoError(
    `${path} is ${what}: a backup set holds only folders and regular files (backups copy what links point to), so it was put into ${root} by something else; refusing to follow or copy it`,
    `find out who wrote it, remove it (or replace it by what it should hold) and restore again; if ${root} cannot be trusted, restore another set`,
  );
}

/**
 * Throws the IoError of `notPlain` for the first entry below `root` that is neither a folder nor
 * a regular file (nothing below `root` is followed; `root` itself may be a link to a folder):
 * the check of a backup set before a restore takes it.
 */
export function refuseUnplainTree(root: string): void {
  walkTreeSync(
    root,
    ({ path, st }) => {
      if (!st.isDirectory() && !st.isFile()) throw notPlain(root, path, st);
    },
    { follow: false, skipVanished: false },
  );
}

/**
 * Copies a local tree, fsyncing everything; symbolic links and other special files as `links`
 * says (default: followed, for backups). It yields to the event loop every few files so that
 * SIGINT/SIGTERM are handled promptly (and a progress line gets redrawn). `onProgress` hears of
 * each file once it is copied.
 */
export async function copyTree(
  src: string,
  dest: string,
  keep: (rel: string, isDir: boolean) => boolean,
  onProgress?: TreeProgress,
  links: LinkPolicy = "follow",
): Promise<TreeStats> {
  const stats: TreeStats = { files: 0, bytes: 0 };
  const target = (rel: string): string => (rel === "" ? dest : join(dest, rel));
  const refuse = links === "refuse";
  mkdirPrivate(dest);
  await walkTree(
    src,
    async ({ rel, path: from, st }) => {
      if (st.isDirectory()) {
        if (!keep(rel, true)) return false;
        mkdirPrivate(target(rel));
        return true;
      }
      if (refuse && !st.isFile()) throw notPlain(src, from, st);
      if (!st.isFile() || !keep(rel, false)) return false;
      const to = target(rel);
      let srcFd: number | undefined;
      try {
        // Refusing: the file copied is the one opened without following a link (a link put
        // there since it was listed is refused too), read through its descriptor.
        if (refuse) srcFd = openNoFollow(src, from);
        copyFileSync(srcFd === undefined || !PROC_FD ? from : `/proc/self/fd/${srcFd}`, to);
        chmodSync(to, 0o600);
        const fd = openSync(to, "r");
        if (isRoot) {
          const owner = statSync(dirname(to));
          if (owner.uid !== 0) chownSync(to, owner.uid, owner.gid);
        }
        fsyncSync(fd);
        closeSync(fd);
      } catch (err) {
        if (err instanceof WalmgrError) throw err;
        if (isErrno(err, "ENOENT") && !existsSync(from)) return false;
        throw ioError("cannot copy", `${from} to ${to}`, err);
      } finally {
        if (srcFd !== undefined) closeSync(srcFd);
      }
      stats.files++;
      stats.bytes += st.size;
      onProgress?.(st.size, 1);
      if (stats.files % 64 === 0) await new Promise((r) => setImmediate(r));
      return false;
    },
    { leave: (_dir, rel) => fsyncDir(target(rel)), follow: !refuse },
  );
  return stats;
}

/** Whether an open descriptor can be named as a path (Linux): the copy then reads exactly the file opened. */
const PROC_FD = existsSync("/proc/self/fd");

/** Opens the regular file `path` (below `root`) for reading without following a link in its last part. */
function openNoFollow(root: string, path: string): number {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, "ELOOP")) throw notPlain(root, path, lstatSync(path));
    throw err;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    throw notPlain(root, path, st);
  }
  return fd;
}

/**
 * An open descriptor on the regular file `path`, and its size; undefined when nothing is there
 * (the local driver's reads, and the ssh helper's on the slave host). Anything else
 * under that name (a symbolic link, even to a regular file; a FIFO, a device, a folder) is an
 * IoError naming it: the slave directory holds only regular files this project wrote, so
 * anything else was planted, and following it could serve another file's bytes as WAL.
 */
export function openRegularFile(path: string): { fd: number; size: number } | undefined {
  let fd: number;
  try {
    // O_NOFOLLOW refuses a symlink in the last component atomically; O_NONBLOCK keeps a planted
    // FIFO from hanging the open (it changes nothing for regular files).
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    if (isErrno(err, "ELOOP")) throw notRegular(path, "a symbolic link");
    throw ioError("cannot read", path, err);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw notRegular(path, st.isDirectory() ? "a folder" : "a special file");
    refuseForeign(path, st);
    return { fd, size: st.size };
  } catch (err) {
    closeSync(fd);
    if (err instanceof WalmgrError) throw err;
    throw ioError("cannot read", path, err);
  }
}

/**
 * Refuses the file `path` (stat `st`, open) when another user could have written it or its
 * folder (owners.ts): an IoError naming the file, its owner and mode, and the chown/chmod that
 * makes it ours again.
 */
function refuseForeign(path: string, st: { uid: number; mode: number }): void {
  const dir = dirname(path);
  let dirSt: { uid: number; mode: number } | undefined;
  try {
    dirSt = statSync(dir);
  } catch {
    // the file is open: its folder is there; a stat that fails leaves only the file to judge
  }
  const file = foreignFile(st, dirSt?.uid);
  const folder = dirSt === undefined ? undefined : foreignFolder(dirSt, true);
  if (file === undefined && folder === undefined) return;
  const owner = expectedOwner(dirSt?.uid);
  if (file !== undefined) {
    throw new IoError(
      `${path} could have been written by another user (${file}): refusing to read it`,
      `if it is genuine, make it ${owner}'s alone (chown ${owner} '${path}' && chmod 0600 '${path}'); if not, remove it and find out who put it there`,
    );
  }
  throw new IoError(
    `${path} is in ${dir}, which another user could have written into (${folder ?? ""}): refusing to read it`,
    `make the folder ${owner}'s alone (chown ${owner} '${dir}' && chmod 0700 '${dir}'), then check what is in it (wal-ctl CONFIG verify)`,
  );
}

function notRegular(path: string, what: string): IoError {
  return new IoError(
    `${path} is ${what}, not a regular file: refusing to read it`,
    `only regular files belong there; find out who put it there, remove it, and re-archive or re-ship what it should have been`,
  );
}

/** True when `path` is a symbolic link (not followed). */
export function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Puts the directory `from` at `to` durably: rename() where it can (atomic), otherwise (another
 * file system: EXDEV; `to` a mount point: EBUSY) a copy of the tree, fsynced, into `to`. An
 * existing `to` must be an empty directory; it is kept (a mount point is never removed, only
 * filled). After a copy `from` is still there: the caller removes it (`removeTreeDurable`) once
 * it has recorded that the copy is complete, so a crash never leaves only a partial copy. A copy
 * follows no link: anything but folders and regular files is refused (`LinkPolicy` "refuse"; the
 * trees restore moves are backup sets and their tablespaces).
 * `rename` is for tests (fault injection); `onProgress` hears of each file a copy copies.
 */
export async function renameOrCopyTree(
  from: string,
  to: string,
  rename: (a: string, b: string) => void = renameSync,
  onProgress?: TreeProgress,
): Promise<"renamed" | "copied"> {
  try {
    rename(from, to);
    fsyncDir(dirname(to));
    if (dirname(from) !== dirname(to)) fsyncDir(dirname(from));
    return "renamed";
  } catch (err) {
    if (!isErrno(err, "EXDEV") && !isErrno(err, "EBUSY")) throw ioError(`cannot move ${from} to`, to, err);
  }
  await copyTree(from, to, () => true, onProgress, "refuse");
  fsyncDir(dirname(to));
  return "copied";
}

/** Where `removeTreeDurable` puts a tree while removing it: a name no reader takes for data. */
export function goneName(path: string): string {
  return join(dirname(path), `.walmgr-gone.${basename(path)}`);
}

/**
 * Removes the tree `path` so that a crash midway never leaves a part of it under its name: it
 * is first renamed (atomically) to `goneName(path)`, then removed. Idempotent: a leftover from
 * an earlier crash is removed too. False when `path` was not there.
 */
export function removeTreeDurable(path: string): boolean {
  const gone = goneName(path);
  try {
    rmSync(gone, { recursive: true, force: true });
    if (!existsSync(path) && !isSymlink(path)) return false;
    renameSync(path, gone);
    fsyncDir(dirname(path));
    rmSync(gone, { recursive: true, force: true });
    fsyncDir(dirname(path));
    return true;
  } catch (err) {
    throw ioError("cannot remove", path, err);
  }
}

/** Removes everything inside `dir`, keeping `dir` itself (it may be a mount point). */
export function emptyDir(dir: string): void {
  try {
    for (const n of readdirSync(dir)) rmSync(join(dir, n), { recursive: true, force: true });
  } catch (err) {
    if (isErrno(err, "ENOENT")) return;
    throw ioError("cannot empty directory", dir, err);
  }
  fsyncDir(dir);
}
