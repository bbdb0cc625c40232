import type { Readable, Writable } from "node:stream";
import { ConfigError } from "../errors";
import type { Manifest } from "./manifest";

/**
 * The transport seam, in the mould of pgBackRest's storage interface: how bytes reach the
 * slave directory and come back. Drivers (local directory, ssh, and later an object store)
 * implement the few verbs of `StorageDriver`; they only move bytes and keep the one promise an
 * object store can keep too: an object appears under its name complete and durable, or not at
 * all. Policy (checksums, never replacing other content, verify-while-read, private modes of
 * local copies) lives above them: `archive.ts`, `bytes.ts`, `files.ts`.
 *
 * Things only some storage can do (update part of a file in place, folders that can be renamed
 * and trees copied into them) are features (`StorageFeatures`): a caller that needs one asks for
 * it with `requireFeature`, and gets a clear error on storage that lacks it.
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
  /**
   * Why another user than the one running walmgr could have written this file or folder (its
   * owner or mode: storage/owners.ts), where the storage has owners (locally, and over ssh as
   * the helper sees it); absent when nobody else could, or the storage has none (S3).
   */
  foreign?: string;
}

/** Options of `StorageDriver.newWrite`. */
export interface WriteOptions {
  /**
   * Never replace: `commit` resolves false and changes nothing when the name exists. Of
   * concurrent exclusive writers of one name exactly one commits.
   */
  exclusive?: boolean;
  /** Zero-extend the stored object to this many bytes (partial segments are stored full-size). */
  padTo?: number;
  /**
   * Before writing, remove what dead writers left beside `path` (temporaries of a kill -9):
   * callers that write often into one folder (the archiver) ask for it so litter cannot pile up.
   */
  sweepDeadWriters?: boolean;
}

/**
 * A new object being written: a Writable taking its bytes; the callback of `write` fires once
 * the driver is done with the chunk (the caller may then reuse its buffer). Nothing is visible under the name
 * until `commit`, which ends the stream if the caller has not, and resolves once the object is
 * under its name complete and durable (true), or, with `exclusive`, resolves false when the name
 * was taken (nothing changed). `abort` (also what destroying the stream does) discards what was
 * written; after either, the handle is finished.
 */
export interface WriteHandle extends Writable {
  commit(): Promise<boolean>;
  abort(): Promise<void>;
  /**
   * Optional, and only before any write: fills the object with the whole local file `src`
   * (open as `srcFd`) faster than writes could (the local driver has the kernel copy it) and
   * returns the sha256 and size of the source as read; undefined when it will not for this
   * source (the caller then writes it). `commit` and `abort` work as after writes.
   */
  copyFile?(src: string, srcFd: number): Promise<{ sha256: string; bytes: number } | undefined>;
}

/**
 * What `newRead` returns: a Readable of the content. A driver may also offer `readInto`, which
 * fills the caller's buffer (pgBackRest's `ioRead(buffer)`): a caller that reuses its buffers
 * then allocates nothing per chunk, which keeps a 1 GiB read inside a few MB of RSS (garbage
 * chunks would pile up to V8's external-memory GC threshold, tens of MB). Use one way or the
 * other on one stream, never both; `chunks()` in files.ts picks the right one.
 */
export interface ReadStream extends Readable {
  /** Reads the next bytes into `buf`; 0 at the end. Errors name the file. */
  readInto?(buf: Buffer): Promise<number>;
}

/** Counts of a tree copy. */
export interface TreeStats {
  files: number;
  bytes: number;
  /** Bytes that went over the wire, when the driver knows (remote drivers). */
  sent?: number;
}

/**
 * Called as a tree copy goes with the bytes and files done since the last call (a progress
 * display's `add`, progress.ts): after each file, or per chunk where the copy streams.
 */
export type TreeProgress = (bytes: number, files: number) => void;

/** Feature `writeAt`: in-place durable update of part of an existing file (local, ssh). */
export interface WriteAtFeature {
  /** Durably overwrites bytes of the existing file `path` at `offset` (in-progress segments). */
  writeAt(path: string, offset: number, data: Uint8Array): Promise<void>;
}

/** Feature `tree`: folders of files, as backup sets need them (local, ssh). */
export interface TreeFeature {
  /** Size and sha256 of every file under the folder `dir`, computed where it is stored. */
  manifest(dir: string): Promise<Manifest>;
  /** Removes a folder tree (no error when absent). */
  removeTree(path: string): Promise<void>;
  /** Durably renames a folder within the storage; fails when `to` exists. */
  renameDir(from: string, to: string): Promise<void>;
  /**
   * Copies the local tree `src` to `dest` in the storage, keeping only what `keep(rel, isDir)`
   * accepts. Files that vanish while being copied are skipped (a running database removes
   * files; WAL replay repairs that). Everything copied is durable before this resolves.
   * `basis` names an earlier copy in the storage (the previous backup set) that a remote driver
   * may send differences against; it is never modified. A file may be taken from the basis
   * without reading its content only when its mtime is older than `trustMtimeBefore` (ms since
   * the epoch) and its size and mtime match the basis copy; every other file is compared by
   * content (without `trustMtimeBefore`: every file). `onProgress` hears of the files as they
   * are done (a file taken unchanged from the basis counts as done, with its size).
   */
  putTree(
    src: string,
    dest: string,
    keep: (rel: string, isDir: boolean) => boolean,
    opts?: { basis?: string; trustMtimeBefore?: number | undefined; onProgress?: TreeProgress },
  ): Promise<TreeStats>;
  /**
   * Copies the stored tree `src` into the new local folder `dest` (folders 0700, files 0600,
   * everything fsynced before this resolves). Offered by storage a restore cannot reach as a
   * local folder (an object store); undefined elsewhere. With `expect`, a file it lists must
   * match its sha256 (else an IoError, and that file is not put in place). `onProgress` hears
   * of each file fetched.
   */
  getTree?(src: string, dest: string, expect?: Manifest, opts?: { onProgress?: TreeProgress }): Promise<TreeStats>;
}

/**
 * Feature `releaseNow`: synchronous cleanup for a signal handler (which cannot wait for a
 * promise), on storage whose files are not this machine's (ssh: through the slave's helper; S3:
 * through a child process). Local storage has none: its files are removed directly.
 */
export interface ReleaseNowFeature {
  /** Removes the lock file `lockPath` only while it names `pid` on `host` (never another holder's). */
  releaseLockSync(lockPath: string, pid: number, host: string): void;
  /** Removes a folder tree (no error when absent). */
  removeTreeSync(path: string): void;
}

/** Feature `range`: a part of a stored file, without reading what comes before it (local). */
export interface RangeFeature {
  /**
   * `length` bytes of the file `path` from `offset`: an IoError naming the file when it is
   * missing, not a regular file, or shorter (a reader of a pack's frame never wants less).
   */
  readRange(path: string, offset: number, length: number): Promise<Buffer>;
}

/** The capabilities beyond the common verbs; absent means the storage cannot do it. */
export interface StorageFeatures {
  writeAt?: WriteAtFeature;
  range?: RangeFeature;
  tree?: TreeFeature;
  releaseNow?: ReleaseNowFeature;
}

export interface StorageDriver {
  /** For messages: "local" or "ssh host". */
  readonly description: string;
  /** Capabilities a caller must ask for explicitly (`requireFeature`). */
  readonly features: StorageFeatures;
  /**
   * How `exclusive` writes are kept exclusive: "atomic" (absent: the default) by the storage
   * itself (link/rename without replace); "checked" by the driver's own protocol (object stores
   * without conditional create: claims, which need read-after-write consistent listings), so a
   * lock built on it re-checks after a pause as a second guard.
   */
  readonly exclusiveCreate?: "atomic" | "checked";
  /** What is under `path`; undefined when nothing is. */
  info(path: string): Promise<FileInfo | undefined>;
  /** Entry names in the folder `dir`; undefined when there is no such folder. */
  list(dir: string): Promise<string[] | undefined>;
  /** Durably removes a file; false when it was not there. */
  remove(path: string): Promise<boolean>;
  /** Creates the folder `dir` and its parents, private to the owner (0700); no error when there. */
  pathCreate(dir: string): Promise<void>;
  /**
   * The content of the file `path` as a stream, or undefined when nothing is under the name.
   * Only a regular file is read: anything else (a symbolic link, a FIFO, a folder) is an IoError
   * naming it. The stream errors (never just ends early) when the bytes cannot all be delivered.
   */
  newRead(path: string): Promise<ReadStream | undefined>;
  /** A new object at `path` (see `WriteHandle`, `WriteOptions`). */
  newWrite(path: string, opts?: WriteOptions): Promise<WriteHandle>;
}

const FEATURE_WHAT: Record<keyof StorageFeatures, string> = {
  writeAt: "update part of a file in place",
  range: "read part of a file",
  tree: "hold folders of files (backup sets)",
  releaseNow: "release a lock from a signal handler",
};

/** The feature `name` of `driver`, or a ConfigError naming the storage and what it cannot do. */
export function requireFeature<K extends keyof StorageFeatures>(
  driver: StorageDriver,
  name: K,
): NonNullable<StorageFeatures[K]> {
  const f = driver.features[name];
  if (f === undefined) {
    throw new ConfigError(
      `the ${driver.description} storage cannot ${FEATURE_WHAT[name]}`,
      "use a slave directory (local or over ssh) for this command",
    );
  }
  return f;
}
