/**
 * Compression of one frame (a run of blocks, or a single block) for `compress_type = none | lz4 |
 * zstd | gzip` and `compress_level`. Every codec writes its tool's standard frame format, so a
 * stored frame can also be read by the `zstd`, `lz4` or `gzip` command line tools, and the
 * package behind a codec can be swapped without changing what is stored.
 *
 * Node 20 has gzip (node:zlib) but neither zstd nor lz4. Chosen packages (see
 * docs/block-repository-measurements.md for the measurements and the others tried):
 * - zstd: @toondepauw/node-zstd (napi-rs, libzstd 1.5.7): its binary ships inside a registry
 *   package (no install script, no compiler, nothing fetched at install), Node 20 to 24, honours
 *   the level, compresses on libuv's thread pool (`compress`) or in the caller (`compressSync`).
 * - lz4: lz4-napi (napi-rs, lz4_flex), same kind of packaging; lz4 frame format; one level.
 * The native packages load on first use, so executables that never compress do not pay for them.
 *
 * One frame is compressed or decompressed as a whole buffer: memory is bounded by the frame size
 * the caller picks (about 1 MiB), not by file size. napi-rs frees the buffers it returns only after
 * control goes back to the event loop: a caller that compresses many frames in one synchronous loop
 * grows its memory until it yields; the async forms yield by themselves.
 */
import { promisify } from "node:util";
import type * as Zlib from "node:zlib";
import { ConfigError, IoError } from "./errors";

/* eslint-disable @typescript-eslint/no-require-imports -- the codecs' modules load on first use */

/** The values of `compress_type`. */
export const COMPRESS_TYPES = ["none", "lz4", "zstd", "gzip"] as const;
export type CompressType = (typeof COMPRESS_TYPES)[number];

/** Accepted `compress_level` values per type, and the level used when none is set. */
export const LEVELS: Readonly<Record<CompressType, { min: number; max: number; default: number }>> = {
  none: { min: 0, max: 0, default: 0 },
  // lz4_flex has one level (lz4's default, "fast").
  lz4: { min: 1, max: 1, default: 1 },
  // 20 to 22 ("ultra") need windows of 32 MiB and more per worker: not for a bounded-memory backup.
  zstd: { min: 1, max: 19, default: 1 },
  gzip: { min: 1, max: 9, default: 6 },
};

/** Compresses and decompresses whole frames with one type and level. */
export interface Codec {
  readonly type: CompressType;
  readonly level: number;
  /** `raw` compressed, on libuv's thread pool (several at once use several cores). */
  compress(raw: Buffer): Promise<Buffer>;
  /** `raw` compressed in this thread. */
  compressSync(raw: Buffer): Buffer;
  /**
   * The frame `packed` decompressed, on the thread pool. `rawSize` is the size it was made from:
   * anything else (a damaged frame) throws an IoError, as does a frame the codec cannot read.
   */
  decompress(packed: Buffer, rawSize: number): Promise<Buffer>;
  /** decompress in this thread. */
  decompressSync(packed: Buffer, rawSize: number): Buffer;
}

interface ZstdModule {
  Encoder: new (level: number) => { encode(b: Buffer): Promise<Buffer>; encodeSync(b: Buffer): Buffer };
  Decoder: new () => { decode(b: Buffer): Promise<Buffer>; decodeSync(b: Buffer): Buffer };
}

interface Lz4Module {
  compressFrame(b: Buffer): Promise<Buffer>;
  compressFrameSync(b: Buffer): Buffer;
  decompressFrame(b: Buffer): Promise<Buffer>;
  decompressFrameSync(b: Buffer): Buffer;
}

/** A native codec package, loaded once; a failure to load names the package and what to do. */
function load<T>(type: CompressType, name: string): T {
  try {
    return require(name) as T;
  } catch (err) {
    throw new ConfigError(
      `compress_type = ${type} needs the package ${name}, which did not load: ${err instanceof Error ? err.message : String(err)}`,
      `reinstall walmgr-ts with npm on this machine (its prebuilt binary is per platform), or set compress_type = gzip`,
    );
  }
}

/** The decompressed frame if it has the size it was made from, else an IoError saying so. */
function checked(type: CompressType, out: Buffer, rawSize: number): Buffer {
  if (out.length !== rawSize)
    throw new IoError(`${type} frame decompressed to ${out.length} bytes, expected ${rawSize}: the frame is damaged`);
  return out;
}

/** A codec's own failure (not a frame of its format, truncated) as an IoError. */
function unreadable(type: CompressType, err: unknown): IoError {
  if (err instanceof IoError) return err;
  return new IoError(
    `${type} frame cannot be decompressed (${err instanceof Error ? err.message : String(err)}): the frame is damaged`,
  );
}

/**
 * The codec for `type` at `level` (LEVELS[type].default when undefined). A level out of
 * LEVELS[type]'s range is a ConfigError naming the range.
 */
export function makeCodec(type: CompressType, level?: number): Codec {
  const range = LEVELS[type];
  const lvl = level ?? range.default;
  if (!Number.isInteger(lvl) || lvl < range.min || lvl > range.max)
    throw new ConfigError(
      `compress_level = ${lvl} is out of range for compress_type = ${type}`,
      range.min === range.max ? `${type} has one level: ${range.min}` : `use ${range.min} to ${range.max}`,
    );
  switch (type) {
    case "none":
      return {
        type,
        level: lvl,
        compress: (raw) => Promise.resolve(raw),
        compressSync: (raw) => raw,
        decompress: (packed, rawSize) => Promise.resolve(checked(type, packed, rawSize)),
        decompressSync: (packed, rawSize) => checked(type, packed, rawSize),
      };
    case "gzip": {
      const zlib = require("node:zlib") as typeof Zlib;
      const gzip = promisify(zlib.gzip);
      const gunzip = promisify(zlib.gunzip);
      // One byte over the expected size is enough to tell a frame that inflates too far.
      const limit = (rawSize: number): Zlib.ZlibOptions => ({ maxOutputLength: Math.max(1, rawSize + 1) });
      return {
        type,
        level: lvl,
        compress: (raw) => gzip(raw, { level: lvl }),
        compressSync: (raw) => zlib.gzipSync(raw, { level: lvl }),
        decompress: (packed, rawSize) =>
          gunzip(packed, limit(rawSize)).then(
            (out) => checked(type, out, rawSize),
            (err: unknown) => Promise.reject(unreadable(type, err)),
          ),
        decompressSync: (packed, rawSize) => {
          try {
            return checked(type, zlib.gunzipSync(packed, limit(rawSize)), rawSize);
          } catch (err) {
            throw unreadable(type, err);
          }
        },
      };
    }
    case "zstd": {
      const zstd = load<ZstdModule>(type, "@toondepauw/node-zstd");
      const encoder = new zstd.Encoder(lvl);
      const decoder = new zstd.Decoder();
      return {
        type,
        level: lvl,
        compress: (raw) => encoder.encode(raw),
        compressSync: (raw) => encoder.encodeSync(raw),
        decompress: (packed, rawSize) =>
          decoder.decode(packed).then(
            (out) => checked(type, out, rawSize),
            (err: unknown) => Promise.reject(unreadable(type, err)),
          ),
        decompressSync: (packed, rawSize) => {
          try {
            return checked(type, decoder.decodeSync(packed), rawSize);
          } catch (err) {
            throw unreadable(type, err);
          }
        },
      };
    }
    case "lz4": {
      const lz4 = load<Lz4Module>(type, "lz4-napi");
      return {
        type,
        level: lvl,
        compress: (raw) => lz4.compressFrame(raw),
        compressSync: (raw) => lz4.compressFrameSync(raw),
        decompress: (packed, rawSize) =>
          lz4.decompressFrame(packed).then(
            (out) => checked(type, out, rawSize),
            (err: unknown) => Promise.reject(unreadable(type, err)),
          ),
        decompressSync: (packed, rawSize) => {
          try {
            return checked(type, lz4.decompressFrameSync(packed), rawSize);
          } catch (err) {
            throw unreadable(type, err);
          }
        },
      };
    }
  }
}
