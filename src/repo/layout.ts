import { posix } from "node:path";

/**
 * Where the objects of a block repository live below its root (`SLAVE/repo`); see
 * docs/block-repository.md. Names only: nothing here touches storage.
 */
export class RepoLayout {
  constructor(readonly root: string) {}

  /** The repository's format record, written by the first backup. */
  get formatFile(): string {
    return posix.join(this.root, "format");
  }

  get packsDir(): string {
    return posix.join(this.root, "packs");
  }

  /** A pack's object: fanned out by the id's first two hex digits (256 folders at most). */
  packPath(id: string): string {
    return posix.join(this.packsDir, id.slice(0, 2), `${id}.pack`);
  }

  get setsDir(): string {
    return posix.join(this.root, "sets");
  }

  /** A set's manifest: the set exists exactly when this does. */
  manifestPath(set: string): string {
    return posix.join(this.setsDir, `${set}${MANIFEST_SUFFIX}`);
  }

  /** The progress record of a backup of `set` under way (or killed). */
  partialPath(set: string): string {
    return posix.join(this.setsDir, `${set}${PARTIAL_SUFFIX}`);
  }
}

export const MANIFEST_SUFFIX = ".manifest";
export const PARTIAL_SUFFIX = ".partial";

/** A pack id: 32 lowercase hex digits (128 random bits). */
export function isPackId(s: string): boolean {
  return /^[0-9a-f]{32}$/.test(s);
}
