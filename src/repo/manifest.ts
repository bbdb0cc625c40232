import { StringDecoder } from "node:string_decoder";
import { pipeline } from "node:stream";
import { createGunzip, createGzip, type Gzip } from "node:zlib";
import { IoError, ioError } from "../errors";
import type { StorageDriver, WriteHandle } from "../storage/driver";
import { isPackId } from "./layout";
import type { FrameRef } from "./pack";

/**
 * The info of the set at `path` (its end line), reading the manifest through: undefined when
 * there is no such manifest. An IoError when it is damaged or cut short.
 */
export async function readSetInfo(
  driver: StorageDriver,
  path: string,
): Promise<{ header: ManifestHeader; info: Record<string, unknown> } | undefined> {
  const m = await openManifest(driver, path);
  if (m === undefined) return undefined;
  for await (const _ of m.entries) {
    // only the end line is wanted
  }
  return { header: m.header, info: m.end?.info ?? {} };
}

/** Line 1 of a manifest: what reading its entries needs (known when the backup begins). */
export interface ManifestHeader {
  format: "walmgr-repo-manifest";
  v: 1;
  set: string;
  blockSize: number;
}

/**
 * The last line: what the backup learned only at its end (label, LSNs, WAL range, times,
 * statistics). A manifest without it was cut short and is refused.
 */
export interface ManifestEnd {
  end: 1;
  info: Record<string, unknown>;
}

/** A frame as a manifest line names it: [pack, offset, length, codec, rawLength]. */
export type FrameTuple = [string, number, number, number, number];

/** A block: 0 for a block of zeros (not stored), else [frame (index into `f`), offset in the frame, sha256]. */
export type BlockRef = 0 | [number, number, string];

/**
 * One file or folder of a set: a line of its manifest after the header, in path order. A folder
 * has `d: 1` and no frames or blocks (its size is 0).
 */
export interface FileEntry {
  /** Path relative to the data directory, `/`-separated. */
  p: string;
  /** 1 for a folder. */
  d?: 1;
  /** Size in bytes. */
  s: number;
  /** Mode bits (permissions only). */
  m: number;
  /** mtime, ms since the epoch. */
  t: number;
  /** The frames its blocks are in. */
  f: FrameTuple[];
  /** Its blocks in order: block k covers [k × blockSize, min(size, (k + 1) × blockSize)). */
  b: BlockRef[];
}

/** The frame a manifest names; an IoError when its pack is not a pack id (a manifest is read from storage: never a path). */
export function frameRef(t: FrameTuple): FrameRef {
  if (!isPackId(t[0]))
    throw new IoError(`a manifest names the pack ${JSON.stringify(t[0])}, which is not a pack id (damaged)`);
  return { pack: t[0], offset: t[1], length: t[2], codec: t[3], rawLength: t[4] };
}

export function frameTuple(r: FrameRef): FrameTuple {
  return [r.pack, r.offset, r.length, r.codec, r.rawLength];
}

/**
 * Writes a manifest as gzip-compressed lines of JSON (built into Node: any version reads a
 * manifest without a native module), streaming: memory does not grow with the set. Nothing is
 * visible until `commit`, which publishes it exclusively (false: the name was taken, nothing
 * changed) and durably.
 */
export class ManifestWriter {
  private readonly gzip: Gzip;
  private readonly done: Promise<void>;

  private constructor(
    private readonly handle: WriteHandle,
    readonly path: string,
  ) {
    this.gzip = createGzip();
    this.gzip.pipe(handle, { end: false });
    this.done = new Promise((res, rej) => {
      this.gzip.on("end", res);
      this.gzip.on("error", rej);
      handle.on("error", rej);
    });
    // Awaited by commit, and raced by every write that waits for room: never unhandled (an
    // unhandled rejection would end the process before the backup's cleanup and lock release).
    this.done.catch(() => undefined);
  }

  static async create(driver: StorageDriver, path: string, header: ManifestHeader): Promise<ManifestWriter> {
    const handle = await driver.newWrite(path, { exclusive: true, sweepDeadWriters: true });
    const w = new ManifestWriter(handle, path);
    await w.line(header);
    return w;
  }

  async add(entry: FileEntry): Promise<void> {
    await this.line(entry);
  }

  private line(obj: unknown): Promise<void> {
    const text = `${JSON.stringify(obj)}\n`;
    if (this.gzip.write(text)) return Promise.resolve();
    // A failed write unpipes: 'drain' would never come, the failure settles `done` instead.
    return Promise.race([
      new Promise<void>((res) => this.gzip.once("drain", res)),
      this.done.then(
        () => undefined,
        (err: unknown) => Promise.reject(ioError("cannot write", this.path, err)),
      ),
    ]);
  }

  /** Writes the end line with `info`, then publishes the manifest (see the class). */
  async commit(info: Record<string, unknown>): Promise<boolean> {
    const end: ManifestEnd = { end: 1, info };
    await this.line(end);
    this.gzip.end();
    try {
      await this.done;
    } catch (err) {
      await this.handle.abort();
      throw ioError("cannot write", this.path, err);
    }
    return this.handle.commit();
  }

  async abort(): Promise<void> {
    this.gzip.destroy();
    await this.handle.abort();
  }
}

/** An open manifest: its header, its entries (a stream, read once), and `end` once they are read. */
export interface OpenManifest {
  header: ManifestHeader;
  entries: AsyncGenerator<FileEntry>;
  /** The end line's info: set when `entries` has been read to its end. */
  end?: ManifestEnd;
}

/**
 * Reads the manifest at `path` as a stream: its header, then its file entries in order, then
 * (in `end`) its end line. Undefined when there is no such manifest; an IoError when it does
 * not decompress or parse (naming the line), lacks its header, or ends without its end line.
 */
export async function openManifest(driver: StorageDriver, path: string): Promise<OpenManifest | undefined> {
  const stream = await driver.newRead(path);
  if (stream === undefined) return undefined;
  // pipeline: an error of the source (EIO, a dropped connection) reaches the reader, and both
  // streams are destroyed when the reader stops early (a bad header, a reference left unread).
  const gunzip = createGunzip();
  pipeline(stream, gunzip, () => undefined);
  const lines = readLines(gunzip, path);
  const first = await lines.next();
  if (first.done === true) throw new IoError(`manifest ${path} is empty`);
  const header = first.value as ManifestHeader;
  if (header.format !== "walmgr-repo-manifest" || header.v !== 1) {
    gunzip.destroy();
    throw new IoError(
      `${path} is not a manifest this version reads (format ${String(header.format)} ${String(header.v)})`,
    );
  }
  const open: OpenManifest = { header, entries: (async function* () {})() };
  async function* entries(): AsyncGenerator<FileEntry> {
    for await (const e of lines) {
      if ((e as Partial<ManifestEnd>).end === 1) {
        open.end = e as ManifestEnd;
        if ((await lines.next()).done !== true)
          throw new IoError(`manifest ${path} has lines after its end line (damaged)`);
        return;
      }
      yield e as FileEntry;
    }
    throw new IoError(`manifest ${path} has no end line: it was cut short`);
  }
  open.entries = entries();
  return open;
}

async function* readLines(src: NodeJS.ReadableStream, path: string): AsyncGenerator<unknown> {
  let rest = "";
  let n = 0;
  // A chunk may end inside a character (paths are UTF-8): the decoder holds its first bytes.
  const utf8 = new StringDecoder("utf8");
  try {
    for await (const chunk of src) {
      rest += utf8.write(chunk);
      let nl: number;
      while ((nl = rest.indexOf("\n")) >= 0) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        n++;
        yield parse(line, path, n);
      }
    }
  } catch (err) {
    if (err instanceof IoError) throw err;
    throw ioError("cannot read", path, err);
  }
  if (rest !== "") throw new IoError(`manifest ${path} ends in the middle of line ${n + 1} (truncated)`);
}

function parse(line: string, path: string, n: number): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    throw new IoError(`manifest ${path}, line ${n}: not JSON (damaged)`);
  }
}
