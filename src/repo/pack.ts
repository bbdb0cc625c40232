import { randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import type { Readable } from "node:stream";
import { IoError, ioError } from "../errors";
import type { StorageDriver, WriteHandle } from "../storage/driver";
import { chunks } from "../storage/files";
import { CODEC_IDS, codecById, type Codec } from "./codec";
import type { RepoLayout } from "./layout";

/** The last 8 bytes of every pack. */
const MAGIC = Buffer.from("WALMGRPK", "latin1");
/** Index length (8 bytes, little-endian) and MAGIC. */
const TRAILER = 16;

/** A block as written into a frame: its sha256 (hex) and bytes. */
export interface BlockData {
  id: string;
  data: Buffer;
}

/** Where a frame is: enough to read and decompress it without the pack's index. */
export interface FrameRef {
  pack: string;
  offset: number;
  length: number;
  codec: number;
  rawLength: number;
}

/** A frame in a pack's index: its place, and each block's id and length in order. */
export interface IndexedFrame extends Omit<FrameRef, "pack"> {
  blocks: { id: string; length: number }[];
}

/**
 * Writes one pack: frames (each a run of blocks compressed together) one after another, then
 * the pack's index and trailer. Nothing is visible until `finish`, which commits the pack under
 * its final name (exclusive: a random 128-bit id, never taken), durable when it resolves. A pack
 * no manifest references is an orphan: a backup's partial record or the next expire deals with it.
 * One writer per worker: `addFrame` calls must not overlap.
 */
export class PackWriter {
  readonly id = randomBytes(16).toString("hex");
  private handle: WriteHandle | undefined;
  private offset = 0;
  private readonly frames: IndexedFrame[] = [];

  constructor(
    private readonly driver: StorageDriver,
    private readonly layout: RepoLayout,
  ) {}

  /** Bytes written so far (frames only). */
  get size(): number {
    return this.offset;
  }

  get frameCount(): number {
    return this.frames.length;
  }

  /** Compresses `blocks` as one frame with `codec` and appends it; resolves once written. */
  async addFrame(blocks: BlockData[], codec: Codec): Promise<FrameRef> {
    const raw = blocks.length === 1 ? (blocks[0] as BlockData).data : Buffer.concat(blocks.map((b) => b.data));
    let data = await codec.compress(raw);
    let codecId = CODEC_IDS[codec.name];
    // Incompressible data is kept as it is: never larger than the blocks themselves.
    if (data.length >= raw.length) {
      data = raw;
      codecId = CODEC_IDS.none;
    }
    if (this.handle === undefined) {
      await this.driver.pathCreate(this.layout.packPath(this.id).slice(0, -`/${this.id}.pack`.length));
      // What a killed backup left half-written beside it goes first (its pid is gone).
      this.handle = await this.driver.newWrite(this.layout.packPath(this.id), {
        exclusive: true,
        sweepDeadWriters: true,
      });
      this.handle.on("error", () => undefined); // reported through the write callbacks
    }
    await write(this.handle, data, this.layout.packPath(this.id));
    const frame: IndexedFrame = {
      offset: this.offset,
      length: data.length,
      codec: codecId,
      rawLength: raw.length,
      blocks: blocks.map((b) => ({ id: b.id, length: b.data.length })),
    };
    this.frames.push(frame);
    this.offset += data.length;
    return {
      pack: this.id,
      offset: frame.offset,
      length: frame.length,
      codec: frame.codec,
      rawLength: frame.rawLength,
    };
  }

  /**
   * Writes the index and trailer and commits the pack; resolves to its id once durable, or to
   * undefined when no frame was added (nothing is written then).
   */
  async finish(): Promise<string | undefined> {
    const handle = this.handle;
    if (handle === undefined) return undefined;
    const index = gzipSync(Buffer.from(JSON.stringify({ v: 1, frames: this.frames })));
    const trailer = Buffer.alloc(TRAILER);
    trailer.writeBigUInt64LE(BigInt(index.length), 0);
    MAGIC.copy(trailer, 8);
    await write(handle, index, this.layout.packPath(this.id));
    await write(handle, trailer, this.layout.packPath(this.id));
    if (!(await handle.commit())) {
      throw new IoError(`pack ${this.layout.packPath(this.id)} already exists: two writers drew the same random id`);
    }
    return this.id;
  }

  /** Discards what was written (nothing becomes visible). */
  async abort(): Promise<void> {
    await this.handle?.abort();
  }
}

function write(w: WriteHandle, data: Buffer, path: string): Promise<void> {
  return new Promise((res, rej) => w.write(data, (err) => (err ? rej(ioError("cannot write", path, err)) : res())));
}

/**
 * The compressed bytes of the frame `ref`, through the driver's `range` feature where it has one,
 * else by reading the pack from its start (drivers without ranged reads). An IoError when the
 * pack is missing or shorter than the frame.
 */
export async function readFrameBytes(driver: StorageDriver, layout: RepoLayout, ref: FrameRef): Promise<Buffer> {
  const path = layout.packPath(ref.pack);
  const range = driver.features.range;
  if (range !== undefined) return range.readRange(path, ref.offset, ref.length);
  const stream = await driver.newRead(path);
  if (stream === undefined) throw new IoError(`pack ${path} is missing`);
  return skipTo(stream, path, ref.offset, ref.length);
}

async function skipTo(stream: Readable, path: string, offset: number, length: number): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let pos = 0;
  let got = 0;
  for await (const c of chunks(stream)) {
    const from = Math.max(0, offset - pos);
    const to = Math.min(c.length, offset + length - pos);
    if (to > from) {
      c.copy(out, got, from, to);
      got += to - from;
    }
    pos += c.length;
    if (got === length) {
      stream.destroy();
      return out;
    }
  }
  throw new IoError(`pack ${path} ends at ${pos} bytes, before its frame at ${offset} (${length} bytes)`);
}

/** Decompresses the frame `ref` whose bytes are `data`. */
export async function decodeFrame(ref: FrameRef, data: Buffer): Promise<Buffer> {
  return codecById(ref.codec).decompress(data, ref.rawLength);
}

/**
 * A pack's own index (its frames and their blocks), read from its trailer: what a backup reuses
 * from a killed backup's packs, and what verify checks a manifest against. An IoError when the
 * trailer is not a pack's.
 */
export async function readPackIndex(driver: StorageDriver, layout: RepoLayout, id: string): Promise<IndexedFrame[]> {
  const path = layout.packPath(id);
  const info = await driver.info(path);
  if (info === undefined || !info.isFile) throw new IoError(`pack ${path} is missing or not a regular file`);
  if (info.size < TRAILER) throw new IoError(`pack ${path} is too short to be a pack (${info.size} bytes)`);
  const read = (offset: number, length: number): Promise<Buffer> =>
    driver.features.range !== undefined
      ? driver.features.range.readRange(path, offset, length)
      : readFrameBytes(driver, layout, { pack: id, offset, length, codec: 0, rawLength: length });
  const trailer = await read(info.size - TRAILER, TRAILER);
  if (!trailer.subarray(8).equals(MAGIC)) throw new IoError(`pack ${path} has no pack trailer (damaged or not a pack)`);
  const len = Number(trailer.readBigUInt64LE(0));
  if (len <= 0 || len > info.size - TRAILER)
    throw new IoError(`pack ${path}: its trailer names an index of ${len} bytes`);
  try {
    const parsed = JSON.parse(gunzipSync(await read(info.size - TRAILER - len, len)).toString("utf8")) as {
      v: number;
      frames: IndexedFrame[];
    };
    if (parsed.v !== 1 || !Array.isArray(parsed.frames)) throw new Error(`index version ${String(parsed.v)}`);
    return parsed.frames;
  } catch (err) {
    throw new IoError(`pack ${path}: its index cannot be read: ${(err as Error).message}`);
  }
}
