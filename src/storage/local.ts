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
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  chmodSync,
  chownSync,
  existsSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { IoError, ioError, isErrno, WalmgrError } from "../errors";
import type { FileInfo, StorageDriver, TreeStats } from "./driver";
import { buildManifest, type Manifest } from "./manifest";
import { fsyncDir, removeDurable, removeStaleTemps, stageFileCopy, writeAtDurable, writeFileDurable } from "./durable";

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

/** The slave directory is on this machine (or a mounted file system). */
export class LocalDriver implements StorageDriver {
  readonly description = "local";

  async manifest(dir: string): Promise<Manifest> {
    try {
      return buildManifest(dir);
    } catch (err) {
      throw ioError("cannot read", dir, err);
    }
  }

  async publish(path: string, data: Uint8Array, opts: { exclusive?: boolean; padTo?: number } = {}): Promise<boolean> {
    return Promise.resolve(writeFileDurable(path, data, opts));
  }

  async publishFile(
    path: string,
    src: string,
    opts: { exclusive?: boolean } = {},
  ): Promise<{ sha256: string; bytes: number; stored: boolean }> {
    // Litter of killed writers beside `path` goes on the way in: a kill -9 must not leave
    // temps that pile up until the disk is full.
    removeStaleTemps(dirname(path));
    const staged = await stageFileCopy(path, src);
    const stored = staged.commit(opts.exclusive);
    return { sha256: staged.sha256, bytes: staged.bytes, stored };
  }

  async writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    writeAtDurable(path, offset, data);
    return Promise.resolve();
  }

  async read(path: string): Promise<Buffer | undefined> {
    return Promise.resolve(readRegularFile(path));
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    let link = false;
    try {
      link = lstatSync(path).isSymbolicLink();
      const st = statSync(path);
      return Promise.resolve({
        size: st.size,
        mtimeMs: st.mtimeMs,
        isDirectory: st.isDirectory(),
        isFile: st.isFile() && !link,
        isSymlink: link,
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

  async removeTree(path: string): Promise<void> {
    try {
      rmSync(path, { recursive: true, force: true });
      fsyncDir(dirname(path));
    } catch (err) {
      throw ioError("cannot remove", path, err);
    }
    return Promise.resolve();
  }

  async mkdirp(path: string): Promise<void> {
    mkdirPrivate(path);
    return Promise.resolve();
  }

  async rename(from: string, to: string): Promise<void> {
    if (existsSync(to)) throw new WalmgrError(`cannot rename ${from} to ${to}: the target exists`, 9);
    try {
      renameSync(from, to);
    } catch (err) {
      throw ioError(`cannot rename ${from} to`, to, err);
    }
    fsyncDir(dirname(to));
    if (dirname(from) !== dirname(to)) fsyncDir(dirname(from));
    return Promise.resolve();
  }

  async putTree(src: string, dest: string, keep: (rel: string, isDir: boolean) => boolean): Promise<TreeStats> {
    return copyTree(src, dest, keep);
  }
}

/**
 * Copies a local tree (following symlinks to directories and files), fsyncing everything. It
 * yields to the event loop every few files so that SIGINT/SIGTERM are handled promptly.
 */
export async function copyTree(
  src: string,
  dest: string,
  keep: (rel: string, isDir: boolean) => boolean,
): Promise<TreeStats> {
  const stats: TreeStats = { files: 0, bytes: 0 };
  const walk = async (rel: string): Promise<void> => {
    const from = rel === "" ? src : join(src, rel);
    const to = rel === "" ? dest : join(dest, rel);
    mkdirPrivate(to);
    let entries: string[];
    try {
      entries = readdirSync(from);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return;
      throw ioError("cannot list", from, err);
    }
    for (const name of entries) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      const childFrom = join(from, name);
      let st;
      try {
        st = statSync(childFrom);
      } catch (err) {
        if (isErrno(err, "ENOENT")) continue;
        throw ioError("cannot stat", childFrom, err);
      }
      if (st.isDirectory()) {
        if (keep(childRel, true)) await walk(childRel);
        continue;
      }
      if (!st.isFile() || !keep(childRel, false)) continue;
      const childTo = join(to, name);
      try {
        copyFileSync(childFrom, childTo);
        chmodSync(childTo, 0o600);
        const fd = openSync(childTo, "r");
        if (isRoot) {
          const owner = statSync(to);
          if (owner.uid !== 0) chownSync(childTo, owner.uid, owner.gid);
        }
        fsyncSync(fd);
        closeSync(fd);
      } catch (err) {
        if (isErrno(err, "ENOENT") && !existsSync(childFrom)) continue;
        throw ioError("cannot copy", `${childFrom} to ${childTo}`, err);
      }
      stats.files++;
      stats.bytes += st.size;
      if (stats.files % 64 === 0) await new Promise((r) => setImmediate(r));
    }
    fsyncDir(to);
  };
  await walk("");
  return stats;
}

/**
 * The whole content of the regular file `path`; undefined when nothing is there. Anything else
 * under that name (a symbolic link, even to a regular file; a FIFO, a device, a folder) is an
 * IoError naming it: the slave directory holds only regular files this project wrote, so
 * anything else was planted, and following it could serve another file's bytes as WAL.
 */
export function readRegularFile(path: string): Buffer | undefined {
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
    return readFileSync(fd);
  } catch (err) {
    if (err instanceof WalmgrError) throw err;
    throw ioError("cannot read", path, err);
  } finally {
    closeSync(fd);
  }
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
 * it has recorded that the copy is complete, so a crash never leaves only a partial copy.
 * `rename` is for tests (fault injection).
 */
export async function renameOrCopyTree(
  from: string,
  to: string,
  rename: (a: string, b: string) => void = renameSync,
): Promise<"renamed" | "copied"> {
  try {
    rename(from, to);
    fsyncDir(dirname(to));
    if (dirname(from) !== dirname(to)) fsyncDir(dirname(from));
    return "renamed";
  } catch (err) {
    if (!isErrno(err, "EXDEV") && !isErrno(err, "EBUSY")) throw ioError(`cannot move ${from} to`, to, err);
  }
  await copyTree(from, to, () => true);
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
