import type { StorageDriver } from "../storage/driver";
import { blockReader } from "./blocks";
import type { RepoLayout } from "./layout";
import { openManifest } from "./manifest";

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
  const readBlock = blockReader(driver, layout);
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
        onBytes?.(len);
        bytes += len;
        let problem: string | undefined;
        try {
          await readBlock(e, k, len);
        } catch (err) {
          problem = (err as Error).message;
        }
        if (problem !== undefined) {
          // One line per file beyond the first few blocks: a lost pack would name every block.
          if (reported < 3) problems.push(`${e.p} at offset ${k * bs} ${problem}`);
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
