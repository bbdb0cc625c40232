import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { hashFile } from "./durable";

/** Size and sha256 of every file of a backup set, written as .walmgr-manifest.json. */
export interface Manifest {
  files: Record<string, { size: number; sha256: string }>;
}

/** Builds the manifest of a local tree; top-level `.walmgr-*` files (our metadata) are left out. */
export function buildManifest(dir: string): Manifest {
  const files: Manifest["files"] = {};
  const walk = (rel: string): void => {
    const abs = rel === "" ? dir : join(dir, rel);
    for (const name of readdirSync(abs)) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      if (rel === "" && name.startsWith(".walmgr-")) continue;
      const st = statSync(join(abs, name));
      if (st.isDirectory()) walk(childRel);
      else if (st.isFile()) files[childRel] = { size: st.size, sha256: hashFile(join(abs, name)).sha256 };
    }
  };
  walk("");
  return { files };
}
