/**
 * Backup sets in an object store: a local tree stored one object per file (uploads in
 * parallel, each streamed, multipart above the part size), and a stored tree fetched back into
 * a local folder. Folders travel as empty `dir/` marker objects, so PostgreSQL's empty folders
 * (pg_wal, pg_replslot …) come back.
 */
import { join, posix } from "node:path";
import { IoError } from "../../errors";
import { eachLimit } from "../../parallel";
import type { StorageDriver, TreeProgress, TreeStats } from "../driver";
import { fetchToFile, storeFile } from "../files";
import { mkdirPrivate } from "../local/driver";
import { isOwnMetadata, type Manifest } from "../manifest";
import { isSafeRelPath } from "../rel-path";
import { walkTree } from "../tree-walk";

/**
 * What these functions use of the S3 driver, named here rather than imported: driver.ts imports
 * this file, and the two must not import each other.
 */
interface S3Tree extends StorageDriver {
  /** Every object under the folder `dir`, by path relative to it (folder markers end in `/`). */
  listAll(dir: string): Promise<{ rel: string }[]>;
  /** The object key of a path. */
  key(path: string): string;
  /** The request client: `url(key)` names an object in messages. */
  readonly client: { url(key: string): string };
}

/** Files uploaded or fetched at once: enough to hide a request's latency, few enough for memory (each holds up to a part). */
const TREE_PARALLEL = 8;

/** TreeFeature.putTree for an object store: one object per file, uploaded in parallel. */
export async function s3PutTree(
  driver: S3Tree,
  src: string,
  dest: string,
  keep: (rel: string, isDir: boolean) => boolean,
  onProgress?: TreeProgress,
): Promise<TreeStats> {
  const stats: TreeStats = { files: 0, bytes: 0 };
  const dirs: string[] = [""];
  const files: { rel: string; path: string }[] = [];
  await walkTree(src, ({ rel, path, st }) => {
    if (st.isDirectory()) {
      if (!keep(rel, true)) return false;
      dirs.push(rel);
      return true;
    }
    if (st.isFile() && keep(rel, false)) files.push({ rel, path });
    return false;
  });
  await eachLimit(dirs, TREE_PARALLEL * 2, (rel) => driver.pathCreate(rel === "" ? dest : posix.join(dest, rel)));
  await eachLimit(files, TREE_PARALLEL, async ({ rel, path }) => {
    let put;
    try {
      put = await storeFile(driver, posix.join(dest, rel), path);
    } catch (err) {
      // A running database removes files; WAL replay repairs that (the backup contract).
      if (err instanceof IoError && /ENOENT|no such file/i.test(err.message)) return;
      throw err;
    }
    stats.files++;
    stats.bytes += put.bytes;
    onProgress?.(put.bytes, 1);
  });
  return stats;
}

/** TreeFeature.getTree for an object store: every object of the set fetched into a local folder, checked against `expect`. */
export async function s3GetTree(
  driver: S3Tree,
  src: string,
  dest: string,
  expect?: Manifest,
  onProgress?: TreeProgress,
): Promise<TreeStats> {
  const stats: TreeStats = { files: 0, bytes: 0 };
  const listed = await driver.listAll(src);
  if (listed.length === 0) throw new IoError(`${driver.client.url(driver.key(src))} holds nothing: no such backup set`);
  // Keys are opaque strings: one holding `..` (or an empty or absolute part) would be written
  // outside `dest` by the joins below. Such a key is no part of a set we wrote: refused.
  for (const { rel } of listed) {
    const path = rel.endsWith("/") ? rel.slice(0, -1) : rel;
    if (path !== "" && !isSafeRelPath(path)) {
      throw new IoError(
        `${driver.client.url(driver.key(src))} holds the key ${JSON.stringify(rel)}, which names a path outside the set: nothing was fetched`,
        "someone wrote to the bucket outside walmgr-ts: remove that key, check who can write there, and restore again",
      );
    }
  }
  // With a manifest, only what it names (and the set's own metadata) is fetched: anything else
  // under the prefix was not part of the backup.
  const all =
    expect === undefined
      ? listed
      : listed.filter(({ rel }) => rel.endsWith("/") || isOwnMetadata(rel) || expect.files[rel] !== undefined);
  // Every folder a file or a folder marker names (mkdirPrivate makes the parents, fsyncing each).
  const dirs = new Set<string>([""]);
  for (const { rel } of all) {
    const d = rel.endsWith("/") ? rel.slice(0, -1) : posix.dirname(rel);
    dirs.add(d === "." ? "" : d);
  }
  for (const d of dirs) mkdirPrivate(d === "" ? dest : join(dest, d));
  const files = all.filter((e) => e.rel !== "" && !e.rel.endsWith("/"));
  await eachLimit(files, TREE_PARALLEL, async ({ rel }) => {
    const want = expect?.files[rel]?.sha256;
    const got = await fetchToFile(driver, posix.join(src, rel), join(dest, rel), {
      durable: true,
      ...(want !== undefined ? { expectSha256: want } : {}),
      onMismatch: (actual) =>
        new IoError(
          `${driver.client.url(driver.key(posix.join(src, rel)))} fails its manifest checksum (expected ${want?.slice(0, 16)}…, found ${actual.slice(0, 16)}…)`,
          "the stored backup set is damaged: restore another set",
        ),
    });
    if (got === undefined)
      throw new IoError(
        `${driver.client.url(driver.key(posix.join(src, rel)))} vanished while the set was fetched`,
        "is a backup rotating the sets? restore again",
      );
    stats.files++;
    stats.bytes += got.bytes;
    onProgress?.(got.bytes, 1);
  });
  // (Each file's folder was fsynced after its rename by fetchToFile's `durable`.)
  return stats;
}
