import { IoError } from "../errors";
import type { StorageDriver } from "../storage/driver";
import { sha256 } from "../storage/sha256";
import type { RepoLayout } from "./layout";
import { frameRef, type FileEntry } from "./manifest";
import { decodeFrame, readFrameBytes } from "./pack";

/**
 * Reads the blocks of a set's files, checked: `read(entry, k, length)` is block k of `entry`
 * (length bytes), its sha256 checked against the manifest; a block of zeros is `undefined` (it
 * was not stored). A block that cannot be given is an IoError whose message says why, worded to
 * follow "FILE at offset N" (restore and verify put that before it). Consecutive blocks of a file
 * are mostly in one frame: the last frame decoded is kept, and so is a frame that could not be
 * (each of its blocks fails with the same reason, without reading it again).
 */
export function blockReader(
  driver: StorageDriver,
  layout: RepoLayout,
): (e: FileEntry, k: number, length: number) => Promise<Buffer | undefined> {
  let cached: { key: string; raw?: Buffer; error?: string } | undefined;
  return async (e, k, length) => {
    const b = e.b[k];
    if (b === 0) return undefined;
    const t = b === undefined ? undefined : e.f[b[0]];
    if (b === undefined || t === undefined) throw new IoError("is missing from its manifest entry (damaged)");
    const ref = frameRef(t);
    const key = `${ref.pack}:${ref.offset}`;
    if (cached?.key !== key) {
      try {
        cached = { key, raw: await decodeFrame(ref, await readFrameBytes(driver, layout, ref)) };
      } catch (err) {
        cached = { key, error: (err as Error).message };
      }
    }
    if (cached.error !== undefined) throw new IoError(`is in a frame that cannot be read: ${cached.error}`);
    const data = (cached.raw as Buffer).subarray(b[1], b[1] + length);
    if (data.length !== length || sha256(data) !== b[2]) throw new IoError("fails its checksum (stored block damaged)");
    return data;
  };
}
