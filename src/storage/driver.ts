import type { Manifest } from "./manifest";
/**
 * The transport seam: how files reach the slave directory. Drivers (local directory, ssh, and
 * later an object store) implement these few verbs; policy (checksums, never overwriting other
 * content, naming) lives above them in `archive.ts`. Nothing here promises POSIX semantics
 * beyond what each method's comment says.
 */
export interface FileInfo {
  size: number;
  mtimeMs: number;
  /** A folder (a symbolic link to one counts: slave folders are often links to other disks). */
  isDirectory: boolean;
  /** A regular file under its own name (not reached through a symbolic link). */
  isFile?: boolean;
  /** The name is a symbolic link (size and times are its target's, zero when it dangles). */
  isSymlink?: boolean;
}

export interface TreeStats {
  files: number;
  bytes: number;
  /** Bytes that went over the wire, when the driver knows (remote drivers). */
  sent?: number;
}

export interface StorageDriver {
  /** Size and sha256 of every file under the directory `dir`, computed where it is stored. */
  manifest(dir: string): Promise<Manifest>;
  /** For messages: "local" or "ssh host". */
  readonly description: string;
  /**
   * Publishes `data` at `path` atomically (readers see all of it or none) and durably (it
   * survives a crash of either side once this resolves). Replaces an existing file unless
   * `exclusive`, in which case it resolves false and changes nothing when `path` exists.
   * `padTo` zero-extends the stored file to that many bytes.
   */
  publish(path: string, data: Uint8Array, opts?: { exclusive?: boolean; padTo?: number }): Promise<boolean>;
  /**
   * Copies the local file `src` to `path` with the same guarantees as `publish`, streaming (a
   * 1 GiB segment is never held in memory), and returns the sha256 of what it copied. With
   * `exclusive`, an existing file at `path` is never replaced: `stored` is then false and
   * nothing changed; exactly one of several concurrent exclusive calls stores. Temporaries that
   * dead writers left beside `path` are removed on the way in; a live writer's never are.
   */
  publishFile(
    path: string,
    src: string,
    opts?: { exclusive?: boolean },
  ): Promise<{ sha256: string; bytes: number; stored: boolean }>;
  /** Durably overwrites bytes of an existing file at `offset` (in-progress WAL segments). */
  writeAt(path: string, offset: number, data: Uint8Array): Promise<void>;
  /**
   * The whole file; undefined when it does not exist. Only a regular file is read: anything
   * else under the name (a symbolic link, a FIFO, a folder) is an IoError naming it.
   */
  read(path: string): Promise<Buffer | undefined>;
  /** undefined when it does not exist. */
  stat(path: string): Promise<FileInfo | undefined>;
  /** Entry names in a directory; undefined when the directory does not exist. */
  list(dir: string): Promise<string[] | undefined>;
  /** Durably removes a file; false when it was not there. */
  remove(path: string): Promise<boolean>;
  /** Removes a directory tree (no error when absent). */
  removeTree(path: string): Promise<void>;
  /** Creates a directory and its parents, private to the owner (0700). */
  mkdirp(path: string): Promise<void>;
  /** Durably renames within the slave directory; fails when `to` exists. */
  rename(from: string, to: string): Promise<void>;
  /**
   * Copies the local tree `src` to `dest` on the slave, keeping only what `keep(rel, isDir)`
   * accepts. Files that vanish while being copied are skipped (a running database removes
   * files; WAL replay repairs that). Everything copied is fsynced before this resolves.
   * `basis` names an earlier copy on the slave (the previous backup set) that a remote driver
   * may send differences against; it is never modified. A file may be taken from the basis
   * without reading its content only when its mtime is older than `trustMtimeBefore` (ms since
   * the epoch) and its size and mtime match the basis copy; every other file is compared by
   * content (without `trustMtimeBefore`: every file).
   */
  putTree(
    src: string,
    dest: string,
    keep: (rel: string, isDir: boolean) => boolean,
    opts?: { basis?: string; trustMtimeBefore?: number | undefined },
  ): Promise<TreeStats>;
}
