import { IoError } from "../errors";
import { isSafeRelPath } from "./rel-path";
import { hashFile } from "./sha256";
import { walkTreeSync } from "./tree-walk";

/** Size and sha256 of every file of a backup set, written as .walmgr-manifest.json. */
export interface Manifest {
  files: Record<string, { size: number; sha256: string }>;
}

/** Our own metadata in a set (top-level `.walmgr-*` files): never listed in its manifest. */
export function isOwnMetadata(rel: string): boolean {
  return !rel.includes("/") && rel.startsWith(".walmgr-");
}

/**
 * Builds the manifest of a local tree (symbolic links followed, each file hashed in 1 MiB
 * chunks); top-level `.walmgr-*` files (our metadata) are left out. `onFile` hears of each file
 * hashed (the ssh helper's progress frames).
 */
export function buildManifest(dir: string, onFile?: () => void): Manifest {
  const files: Manifest["files"] = {};
  walkTreeSync(
    dir,
    ({ rel, path, st }) => {
      if (isOwnMetadata(rel)) return false;
      if (st.isFile()) {
        files[rel] = { size: st.size, sha256: hashFile(path).sha256 };
        onFile?.();
      }
      return true;
    },
    { skipVanished: false },
  );
  return { files };
}

/**
 * Parses a manifest read from `file`. Anything that is not one (bad JSON, wrong shape, a path
 * leaving the set) is an IoError naming the file, never an internal error.
 */
export function parseManifest(text: string, file: string): Manifest {
  const bad = (why: string): never => {
    throw new IoError(
      `backup manifest ${file} is damaged: ${why}`,
      "the set cannot be verified: take a new backup (or restore the manifest from a copy)",
    );
  };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    bad(`not valid JSON (${(err as Error).message})`);
  }
  const files = (value as { files?: unknown } | null)?.files;
  if (typeof files !== "object" || files === null || Array.isArray(files)) return bad("no 'files' object");
  for (const [rel, entry] of Object.entries(files as Record<string, unknown>)) {
    if (!isSafeRelPath(rel)) bad(`file name ${JSON.stringify(rel)} leaves the set`);
    const e = entry as { size?: unknown; sha256?: unknown } | null;
    if (typeof e?.size !== "number" || typeof e.sha256 !== "string") {
      bad(`entry ${JSON.stringify(rel)} lacks a size or a sha256`);
    }
  }
  return value as Manifest;
}
