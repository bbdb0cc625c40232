import { IoError } from "../errors";
import { COMPRESS_TYPES, makeCodec, type CompressType } from "../codec";

/** The compressions a frame may have; recorded per frame, so a repository may hold several. */
export const CODECS = COMPRESS_TYPES;
export type CodecName = CompressType;

/** One byte per frame in a pack's index names its codec: never renumber. */
export const CODEC_IDS: Record<CodecName, number> = { none: 0, gzip: 1, zstd: 2, lz4: 3 };

/**
 * Compresses and decompresses whole frames (a run of blocks, at most a few MiB: bounded by the
 * repository's frame size, never a file), on libuv's thread pool, so parallel backup workers
 * compress on every core while the event loop reads and hashes (src/codec.ts does the work).
 */
export interface Codec {
  readonly name: CodecName;
  compress(raw: Buffer): Promise<Buffer>;
  /** Throws an IoError when `data` does not decompress to exactly `rawLength` bytes. */
  decompress(data: Buffer, rawLength: number): Promise<Buffer>;
}

/** The codec `name` at `level` (undefined: the codec's default); a ConfigError for others. */
export function codecFor(name: string, level?: number): Codec {
  if (!(CODECS as readonly string[]).includes(name)) {
    // The config loader refuses other words first; this guards the callers that pass their own.
    throw new IoError(`compress_type ${name} is not one of ${CODECS.join(", ")}`);
  }
  const c = makeCodec(name as CodecName, level);
  return { name: c.type, compress: (raw) => c.compress(raw), decompress: (data, n) => c.decompress(data, n) };
}

/** The codec of a frame whose index byte is `id`; an IoError for an id this version does not know. */
export function codecById(id: number): Codec {
  const name = (Object.keys(CODEC_IDS) as CodecName[]).find((n) => CODEC_IDS[n] === id);
  if (name === undefined) throw new IoError(`a stored frame has codec ${id}, which this version does not know`);
  return codecFor(name);
}
