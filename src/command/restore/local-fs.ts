/**
 * restore's helpers on the local file system: file-system calls whose failure is an I/O error
 * naming the path, chown of a restored tree (when root restores for the postgres user), names for
 * a kept old data directory, and whether a destination may be replaced.
 */
import { chownSync, existsSync, lchownSync, lstatSync, readdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { ioError, isErrno } from "../../errors";
import { isSymlink, LocalDriver } from "../../storage/local/driver";
import { walkTreeSync } from "../../storage/tree-walk";

/** The driver restore reads a local set and writes its local files with. */
export const localDriver = new LocalDriver();

/** Runs a file-system call; a failure becomes an I/O error (exit 9) naming the path. */
export function io<T>(action: string, path: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw ioError(action, path, err);
  }
}

/** Chowns a tree to uid:gid (when running as root on behalf of the postgres user); links are not followed. */
export function chownTree(path: string, uid: number, gid: number): void {
  // A link is chowned itself (lchown), never the file it points to: restore's own links point
  // out of the tree (tablespaces, pg_wal), and chown would follow them.
  const fix = (p: string, st: { uid: number; gid: number; isSymbolicLink(): boolean }): void => {
    if (st.uid !== uid || st.gid !== gid)
      io("cannot chown", p, () => (st.isSymbolicLink() ? lchownSync(p, uid, gid) : chownSync(p, uid, gid)));
  };
  const st = io("cannot stat", path, () => lstatSync(path));
  fix(path, st);
  if (st.isDirectory()) walkTreeSync(path, (e) => fix(e.path, e.st), { follow: false, skipVanished: false });
}

/** Running as root (on behalf of the postgres user): the restored tree is then chowned to its owner. */
export const isRoot = (): boolean => process.getuid?.() === 0;

/** The first of BASE.0, BASE.1 … that does not exist: where a kept old data directory goes. */
export function firstFree(base: string): string {
  for (let i = 0; ; i++) {
    const candidate = `${base}.${i}`;
    if (!existsSync(candidate) && !isSymlink(candidate)) return candidate;
  }
}

/** An existing, empty directory (false for anything else, or when it cannot be read). */
export function isEmptyDir(path: string): boolean {
  try {
    return statSync(path).isDirectory() && readdirSync(path).length === 0;
  } catch {
    return false;
  }
}

/**
 * Why `dst` may not be replaced by a restore (undefined when it may): it must be missing, an
 * empty directory, or a PostgreSQL data directory (PG_VERSION), and neither a backup set nor a
 * mount point.
 */
export function unfitDestination(dst: string, sets: string[]): string | undefined {
  let st;
  try {
    st = statSync(dst);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw ioError("cannot stat", dst, err);
  }
  if (sets.includes(dst)) return `${dst} is a backup set`;
  if (!st.isDirectory()) return `${dst} is not a directory`;
  // The new directory is renamed into place, and a mount point cannot be renamed or replaced.
  const parent = io("cannot stat", dirname(dst), () => statSync(dirname(dst)));
  if (parent.dev !== st.dev && !isSymlink(dst))
    return `${dst} is a mount point (restore renames data directories): restore into a directory below it`;
  const names = io("cannot list", dst, () => readdirSync(dst));
  if (names.length === 0) return undefined;
  if (!names.includes("PG_VERSION")) return `${dst} is neither empty nor a PostgreSQL data directory (no PG_VERSION)`;
  return undefined;
}
