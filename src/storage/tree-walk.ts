/**
 * The one walker of local trees (backup copies, manifests, fsync of received trees, the list
 * rsync is given, ownership fixes after a restore).
 */
import { lstatSync, readdirSync, statSync, type Stats } from "node:fs";
import { join } from "node:path";
import { ioError, isErrno } from "../errors";

export interface TreeEntry {
  /** Path below the root, '/'-separated; "" is the root itself. */
  rel: string;
  /** Absolute (or root-relative as the root was given) path. */
  path: string;
  st: Stats;
}

export interface WalkOptions {
  /** stat (follow symbolic links: a link to a folder is walked) rather than lstat. Default true. */
  follow?: boolean;
  /** Entries that vanish between listing and stat are skipped (a running database). Default true. */
  skipVanished?: boolean;
}

/**
 * Walks the tree below `root` depth-first, parents before children. `visit` is called for every
 * entry below the root; for a folder it returns whether to descend (false: skip its content).
 * `leave` is called for every folder (the root included) once its content is done: where a
 * caller fsyncs the folder. A root that does not exist walks nothing. Async, so that long walks
 * can yield (`visit` may return a promise).
 */
export async function walkTree(
  root: string,
  visit: (e: TreeEntry) => boolean | void | Promise<boolean | void>,
  opts: WalkOptions & { leave?: (dir: string, rel: string) => void | Promise<void> } = {},
): Promise<void> {
  const stat = opts.follow === false ? lstatSync : statSync;
  const skip = opts.skipVanished !== false;
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      if (skip && isErrno(err, "ENOENT")) return;
      throw ioError("cannot list", dir, err);
    }
    for (const name of names) {
      const path = join(dir, name);
      const childRel = rel === "" ? name : `${rel}/${name}`;
      let st: Stats;
      try {
        st = stat(path);
      } catch (err) {
        if (skip && isErrno(err, "ENOENT")) continue;
        throw ioError("cannot stat", path, err);
      }
      const descend = await visit({ rel: childRel, path, st });
      if (st.isDirectory() && descend !== false) await walk(path, childRel);
    }
    if (opts.leave) await opts.leave(dir, rel);
  };
  await walk(root, "");
}

/** Synchronous twin of `walkTree` for callers that cannot wait (signal paths, sync helpers). */
export function walkTreeSync(
  root: string,
  visit: (e: TreeEntry) => boolean | void,
  opts: WalkOptions & { leave?: (dir: string, rel: string) => void } = {},
): void {
  const stat = opts.follow === false ? lstatSync : statSync;
  const skip = opts.skipVanished !== false;
  const walk = (dir: string, rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (err) {
      if (skip && isErrno(err, "ENOENT")) return;
      throw ioError("cannot list", dir, err);
    }
    for (const name of names) {
      const path = join(dir, name);
      const childRel = rel === "" ? name : `${rel}/${name}`;
      let st: Stats;
      try {
        st = stat(path);
      } catch (err) {
        if (skip && isErrno(err, "ENOENT")) continue;
        throw ioError("cannot stat", path, err);
      }
      const descend = visit({ rel: childRel, path, st });
      if (st.isDirectory() && descend !== false) walk(path, childRel);
    }
    if (opts.leave) opts.leave(dir, rel);
  };
  walk(root, "");
}
