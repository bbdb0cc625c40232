import { closeSync, fstatSync, openSync, constants } from "node:fs";
import { ioError, isErrno } from "../errors";
import type { StorageDriver } from "../storage/driver";
import { readAt } from "../storage/positional";
import { sha256 } from "../storage/sha256";
import { walkTree } from "../storage/tree-walk";
import type { Codec } from "./codec";
import type { RepoLayout } from "./layout";
import { frameTuple, type BlockRef, type FileEntry, type FrameTuple } from "./manifest";
import { PackWriter, type BlockData } from "./pack";

/** How a tree is cut and packed; recorded in the repository and each manifest. */
export interface StoreShape {
  /** Bytes per block: the unit of deduplication and verification. */
  blockSize: number;
  /** Raw bytes of new blocks compressed together at most (one frame). */
  frameSize: number;
  /** Bytes after which a worker's pack is committed and a new one begun. */
  packSize: number;
  codec: Codec;
  /** Workers reading, hashing, compressing and writing at once (each its own pack). */
  parallel: number;
}

/** What one store did, for the log and `listbackups`. */
export interface StoreStats {
  files: number;
  /** Bytes of the files (the set's logical size). */
  bytes: number;
  /** Raw bytes of blocks stored by this run (not found in the reference). */
  newBytes: number;
  /** Bytes this run wrote into packs (compressed). */
  storedBytes: number;
  /** Raw bytes of blocks taken from the reference unchanged. */
  reusedBytes: number;
  /** Raw bytes of blocks of zeros (not stored). */
  zeroBytes: number;
  /** Packs this run committed. */
  packs: string[];
}

/** An earlier set's entries, in path order (a manifest being read): what need not be stored again. */
export type Reference = AsyncIterator<FileEntry>;

const ZERO_BLOCKS = new Map<number, string>();

/** The sha256 of `size` zero bytes (cached: a block of zeros is found by comparing ids). */
function zeroId(size: number): string {
  let id = ZERO_BLOCKS.get(size);
  if (id === undefined) {
    id = sha256(Buffer.alloc(size));
    ZERO_BLOCKS.set(size, id);
  }
  return id;
}

/**
 * Stores the local tree `source` (what `keep(rel, isDir)` accepts; symbolic links followed, as a
 * backup of a data directory follows pg_tblspc's) into packs in the repository, and hands each
 * file's and folder's manifest entry to `emit` in path order. A block equal to the reference's
 * block at the same place in the same file (same sha256) is referenced, not stored. Files that
 * vanish while being read are left out (a running database removes files; WAL replay repairs
 * that), as the plain format's copy does. Every pack is durable before this resolves; on an
 * error the packs committed so far stay (orphans until a manifest or an expire deals with them).
 */
export async function storeTree(
  driver: StorageDriver,
  layout: RepoLayout,
  source: string,
  keep: (rel: string, isDir: boolean) => boolean,
  shape: StoreShape,
  reference: Reference | undefined,
  emit: (entry: FileEntry) => Promise<void>,
  opts: {
    onProgress?: (bytes: number, files: number) => void;
    /**
     * Files read after every other (pg_control, as pg_basebackup copies it), and listed at the
     * manifest's end (so no entry waits for them in memory); stored without the reference.
     */
    last?: readonly string[];
  } = {},
): Promise<StoreStats> {
  const onProgress = opts.onProgress;
  const last = new Set(opts.last ?? []);
  const items: { rel: string; path: string; dir: boolean; mode: number; mtime: number }[] = [];
  await walkTree(source, (e) => {
    const dir = e.st.isDirectory();
    if (!keep(e.rel, dir)) return false;
    if (!dir && !e.st.isFile()) return false; // sockets, FIFOs: not PostgreSQL's data
    items.push({ rel: e.rel, path: e.path, dir, mode: e.st.mode & 0o7777, mtime: Math.trunc(e.st.mtimeMs) });
    return true;
  });
  // Manifests are in this order (path order, the `last` files at the end); the reference was
  // written in it too (or in plain path order), so one forward pass merges them.
  const rank = (rel: string): number => (last.has(rel) ? 1 : 0);
  items.sort((a, b) => rank(a.rel) - rank(b.rel) || (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  const stats: StoreStats = {
    files: 0,
    bytes: 0,
    newBytes: 0,
    storedBytes: 0,
    reusedBytes: 0,
    zeroBytes: 0,
    packs: [],
  };
  let refNext: FileEntry | undefined | null = null; // null: not read yet; undefined: the reference ended
  const referenceFor = async (rel: string): Promise<FileEntry | undefined> => {
    if (reference === undefined) return undefined;
    for (;;) {
      if (refNext === null) refNext = (await reference.next()).value as FileEntry | undefined;
      if (refNext === undefined) return undefined;
      if (refNext.p >= rel) return refNext.p === rel ? refNext : undefined;
      refNext = null;
    }
  };
  // Lookups must reach the reference in item order (it is read forwards only): chained.
  let refChain: Promise<unknown> = Promise.resolve();
  const lookup = (rel: string): Promise<FileEntry | undefined> => {
    const p = refChain.then(() => referenceFor(rel));
    refChain = p.catch(() => undefined);
    return p;
  };
  // Work is taken in manifest order: only what runs at once waits in `done` to be emitted.
  const order = [...items.keys()];
  // Workers take items in order; results wait in `done` until every earlier one is emitted.
  const done = new Map<number, FileEntry | undefined>();
  let emitted = 0;
  let next = 0;
  const flushInOrder = async (): Promise<void> => {
    while (done.has(emitted)) {
      const e = done.get(emitted);
      done.delete(emitted);
      emitted++;
      if (e !== undefined) await emit(e);
    }
  };
  let emitting = Promise.resolve();
  const worker = async (): Promise<void> => {
    let pack = new PackWriter(driver, layout);
    try {
      while (next < order.length) {
        const i = order[next++] as number;
        const item = items[i] as (typeof items)[number];
        // Asked in the same synchronous step as the item was taken: in item order.
        const ref = item.dir || last.has(item.rel) ? undefined : await lookup(item.rel);
        let entry: FileEntry | undefined;
        if (item.dir) {
          entry = { p: item.rel, d: 1, s: 0, m: item.mode, t: item.mtime, f: [], b: [] };
        } else {
          entry = await storeFile(item.path, item.rel, item.mode, item.mtime, ref, pack, shape, stats);
          if (entry !== undefined) {
            stats.files++;
            stats.bytes += entry.s;
            onProgress?.(entry.s, 1);
          }
          if (pack.size >= shape.packSize) {
            const id = await pack.finish();
            if (id !== undefined) stats.packs.push(id);
            pack = new PackWriter(driver, layout);
          }
        }
        done.set(i, entry);
        emitting = emitting.then(flushInOrder);
        await emitting;
      }
      const id = await pack.finish();
      if (id !== undefined) stats.packs.push(id);
    } catch (err) {
      await pack.abort();
      throw err;
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, shape.parallel) }, worker));
  await emitting;
  return stats;
}

/**
 * One file: read block by block, each block's sha256 compared with the reference's block at the
 * same place; new blocks gathered into frames of up to `frameSize` and written to `pack`.
 * Undefined when the file vanished before it could be opened.
 */
async function storeFile(
  path: string,
  rel: string,
  mode: number,
  mtime: number,
  ref: FileEntry | undefined,
  pack: PackWriter,
  shape: StoreShape,
  stats: StoreStats,
): Promise<FileEntry | undefined> {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw ioError("cannot read", path, err);
  }
  try {
    if (!fstatSync(fd).isFile()) return undefined;
    const frames: FrameTuple[] = [];
    const frameIndex = new Map<string, number>();
    const frameOf = (t: FrameTuple): number => {
      const key = `${t[0]}:${t[1]}`;
      let k = frameIndex.get(key);
      if (k === undefined) {
        k = frames.length;
        frames.push(t);
        frameIndex.set(key, k);
      }
      return k;
    };
    const blocks: BlockRef[] = [];
    let pending: { k: number; block: BlockData }[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pending.length === 0) return;
      const fr = await pack.addFrame(
        pending.map((p) => p.block),
        shape.codec,
      );
      stats.storedBytes += fr.length;
      const fi = frameOf(frameTuple(fr));
      let off = 0;
      for (const p of pending) {
        blocks[p.k] = [fi, off, p.block.id];
        off += p.block.data.length;
      }
      pending = [];
      pendingBytes = 0;
    };
    const buf = Buffer.allocUnsafe(shape.blockSize);
    let size = 0;
    for (let k = 0; ; k++) {
      const n = await readAt(fd, buf, size).catch((err: unknown) => Promise.reject(ioError("cannot read", path, err)));
      if (n === 0) break;
      size += n;
      const data = buf.subarray(0, n);
      const id = sha256(data);
      if (id === zeroId(n)) {
        blocks[k] = 0;
        stats.zeroBytes += n;
      } else {
        const old = ref?.b[k];
        if (old !== undefined && old !== 0 && old[2] === id && ref !== undefined) {
          const t = ref.f[old[0]];
          if (t === undefined)
            throw ioError("cannot read", `the reference's entry for ${rel}`, new Error("frame index out of range"));
          blocks[k] = [frameOf(t), old[1], id];
          stats.reusedBytes += n;
        } else {
          pending.push({ k, block: { id, data: Buffer.from(data) } });
          pendingBytes += n;
          stats.newBytes += n;
          if (pendingBytes >= shape.frameSize) await flush();
        }
      }
      if (n < shape.blockSize) break;
    }
    await flush();
    return { p: rel, s: size, m: mode, t: mtime, f: frames, b: blocks };
  } finally {
    closeSync(fd);
  }
}
