import { sha256 } from "../storage/sha256";
import type { StorageDriver } from "../storage/driver";
import type { RepoLayout } from "./layout";
import { frameRef, openManifest } from "./manifest";
import { decodeFrame, readFrameBytes, type FrameRef } from "./pack";

/**
 * Re-reads every block of the set `set` from its packs, decompresses each frame and checks each
 * block's sha256 against the manifest: what `verify` does for a set of the block repository.
 * Each problem (a pack missing or damaged, a block that fails its checksum, named by file and
 * offset) goes to `problems`; a manifest that cannot be read is one problem. `files` is null when
 * the manifest could not be read at all.
 */
export async function checkRepoSet(
  driver: StorageDriver,
  layout: RepoLayout,
  set: string,
  problems: string[],
  onBytes?: (n: number) => void,
): Promise<{ files: number | null; bytes: number }> {
  let files = 0;
  let bytes = 0;
  // A frame is decoded once however many blocks of it are checked; one that cannot be is
  // remembered so that each of its blocks is not reported again.
  let cached: { key: string; raw?: Buffer; error?: string } | undefined;
  const frame = async (ref: FrameRef): Promise<{ raw?: Buffer; error?: string }> => {
    const key = `${ref.pack}:${ref.offset}`;
    if (cached?.key === key) return cached;
    try {
      cached = { key, raw: await decodeFrame(ref, await readFrameBytes(driver, layout, ref)) };
    } catch (err) {
      cached = { key, error: (err as Error).message };
    }
    return cached;
  };
  try {
    const m = await openManifest(driver, layout.manifestPath(set));
    if (m === undefined) {
      problems.push(`no manifest ${layout.manifestPath(set)}`);
      return { files: null, bytes: 0 };
    }
    const bs = m.header.blockSize;
    for await (const e of m.entries) {
      if (e.d === 1) continue;
      files++;
      let reported = 0;
      for (let k = 0; k * bs < e.s; k++) {
        const len = Math.min(bs, e.s - k * bs);
        const b = e.b[k];
        onBytes?.(len);
        bytes += len;
        if (b === 0) continue;
        const t = b === undefined ? undefined : e.f[b[0]];
        let problem: string | undefined;
        if (b === undefined || t === undefined) problem = "its manifest entry lacks the block";
        else {
          const got = await frame(frameRef(t));
          if (got.error !== undefined) problem = got.error;
          else {
            const data = (got.raw as Buffer).subarray(b[1], b[1] + len);
            if (data.length !== len || sha256(data) !== b[2]) problem = "fails its checksum (stored block damaged)";
          }
        }
        if (problem !== undefined) {
          // One line per file beyond the first few blocks: a lost pack would name every block.
          if (reported < 3) problems.push(`${e.p} at offset ${k * bs}: ${problem}`);
          else if (reported === 3) problems.push(`${e.p}: more blocks damaged after offset ${k * bs}`);
          reported++;
        }
      }
    }
  } catch (err) {
    problems.push((err as Error).message);
    return { files: files === 0 ? null : files, bytes };
  }
  return { files, bytes };
}
