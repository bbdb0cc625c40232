import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { IoError, ioError } from "../errors";
import type { StorageDriver } from "../storage/driver";
import { fsyncDir } from "../storage/durable";
import { isSafeRelPath } from "../storage/rel-path";
import { writeAt } from "../storage/positional";
import type { RepoLayout } from "./layout";
import { blockReader } from "./blocks";
import { openManifest, type FileEntry, type ManifestHeader } from "./manifest";

/** What a materialization wrote. */
export interface MaterializeStats {
  files: number;
  bytes: number;
}

/**
 * Writes the set `set` into the new local folder `dest` (which must not exist): every folder and
 * file of its manifest, and its backup_label and tablespace_map (from the manifest's end line), every byte (blocks of zeros too: a restored data directory is never
 * sparse), each block checked against its sha256 before it is written. A block that fails is an
 * IoError (exit 9) naming the set, the file and the offset, and that file is not completed.
 * Everything is fsynced before this resolves. Undefined when the set has no manifest.
 */
export async function materializeSet(
  driver: StorageDriver,
  layout: RepoLayout,
  set: string,
  dest: string,
  onProgress?: (bytes: number, files: number) => void,
): Promise<{ header: ManifestHeader; info: Record<string, unknown>; stats: MaterializeStats } | undefined> {
  const m = await openManifest(driver, layout.manifestPath(set));
  if (m === undefined) return undefined;
  const { header } = m;
  makeDir(dest, false);
  const stats: MaterializeStats = { files: 0, bytes: 0 };
  const dirs: { path: string; mode: number; mtime: number }[] = [];
  const readBlock = blockReader(driver, layout);
  for await (const e of m.entries) {
    const rel = checkedRel(e, set);
    const path = join(dest, rel);
    if (e.d === 1) {
      makeDir(path, true);
      dirs.push({ path, mode: e.m, mtime: e.t });
      continue;
    }
    makeDir(dirname(path), true);
    await writeFile(path, e, header, set, readBlock);
    stats.files++;
    stats.bytes += e.s;
    onProgress?.(e.s, 1);
  }
  // Folders last, deepest first: their modes and times as stored, and durable.
  for (const d of dirs.reverse()) {
    try {
      fsyncDir(d.path);
      chmodSync(d.path, d.mode & 0o7777);
      utimesSync(d.path, d.mtime / 1000, d.mtime / 1000);
    } catch (err) {
      throw ioError("cannot write", d.path, err);
    }
  }
  // What pg_backup_stop gave the backup at its end: files of the set, as in the plain format.
  const info = m.end?.info ?? {};
  for (const [key, name] of [
    ["labelfile", "backup_label"],
    ["spcmapfile", "tablespace_map"],
  ] as const) {
    const text = info[key];
    if (typeof text !== "string") continue;
    try {
      writeFileSync(join(dest, name), text, { mode: 0o600, flag: "wx" });
      const fd = openSync(join(dest, name), "r");
      fsyncSync(fd);
      closeSync(fd);
    } catch (err) {
      throw ioError("cannot write", join(dest, name), err);
    }
  }
  fsyncDir(dest);
  fsyncDir(dirname(dest));
  return { header, info, stats };
}

/** mkdir (private), its failure an IoError naming the folder (exit 9). */
function makeDir(path: string, recursive: boolean): void {
  try {
    mkdirSync(path, { recursive, mode: 0o700 });
  } catch (err) {
    throw ioError("cannot create", path, err);
  }
}

function checkedRel(e: FileEntry, set: string): string {
  const rel = e.p;
  if (!isSafeRelPath(rel))
    throw new IoError(
      `set ${set}: its manifest names ${JSON.stringify(e.p)}, which is not a path inside a data directory (damaged or planted)`,
    );
  return rel;
}

async function writeFile(
  path: string,
  e: FileEntry,
  header: ManifestHeader,
  set: string,
  readBlock: ReturnType<typeof blockReader>,
): Promise<void> {
  const bs = header.blockSize;
  let fd: number;
  try {
    fd = openSync(path, "wx", 0o600);
  } catch (err) {
    throw ioError("cannot write", path, err);
  }
  try {
    const zeros = Buffer.alloc(bs);
    for (let k = 0; k * bs < e.s; k++) {
      const len = Math.min(bs, e.s - k * bs);
      let data: Buffer;
      try {
        data = (await readBlock(e, k, len)) ?? zeros.subarray(0, len);
      } catch (err) {
        throw new IoError(
          `set ${set}: ${e.p} at offset ${k * bs} ${(err as Error).message}: refusing to restore it`,
          "run `wal-ctl CONFIG verify` to see what else is damaged, and restore another set",
        );
      }
      await writeAt(fd, data, k * bs).catch((err: unknown) => Promise.reject(ioError("cannot write", path, err)));
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    chmodSync(path, e.m & 0o7777);
    utimesSync(path, e.t / 1000, e.t / 1000);
  } catch (err) {
    throw ioError("cannot write", path, err);
  }
}
