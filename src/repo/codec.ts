import { gunzip, gzip, constants as zlibConstants } from "node:zlib";
import { ConfigError, IoError } from "../errors";

/** The compressions a frame may have; recorded per frame, so a repository may hold several. */
export const CODECS = ["none", "gzip"] as const;
export type CodecName = (typeof CODECS)[number];

/** One byte per frame in a pack's index names its codec: never renumber. */
export const CODEC_IDS: Record<CodecName, number> = { none: 0, gzip: 1 };

/**
 * Compresses and decompresses whole frames (a run of blocks, at most a few MiB: bounded by the
 * repository's frame size, never a file). Both run on libuv's thread pool, so parallel backup
 * workers compress on every core while the event loop reads and hashes.
 */
export interface Codec {
  readonly name: CodecName;
  compress(raw: Buffer): Promise<Buffer>;
  /** Throws an IoError when `data` does not decompress to exactly `rawLength` bytes. */
  decompress(data: Buffer, rawLength: number): Promise<Buffer>;
}

const none: Codec = {
  name: "none",
  compress: (raw) => Promise.resolve(raw),
  decompress: (data, rawLength) => {
    if (data.length !== rawLength)
      return Promise.reject(new IoError(`a stored frame holds ${data.length} bytes, its index says ${rawLength}`));
    return Promise.resolve(data);
  },
};

function gzipCodec(level: number): Codec {
  return {
    name: "gzip",
    compress: (raw) => new Promise((res, rej) => gzip(raw, { level }, (err, out) => (err ? rej(err) : res(out)))),
    decompress: (data, rawLength) =>
      new Promise((res, rej) =>
        // maxOutputLength bounds what a damaged or hostile frame can make us allocate.
        gunzip(data, { maxOutputLength: Math.max(1, rawLength) }, (err, out) => {
          if (err || out.length !== rawLength) {
            rej(
              new IoError(
                `a stored frame does not decompress (gzip) to the ${rawLength} bytes its index says${err ? `: ${err.message}` : `: ${out.length} bytes`}`,
              ),
            );
          } else res(out);
        }),
      ),
  };
}

/** The codec `name` at `level` (undefined: the codec's default); a ConfigError for others. */
export function codecFor(name: string, level?: number): Codec {
  switch (name) {
    case "none":
      return none;
    case "gzip":
      return gzipCodec(level ?? zlibConstants.Z_DEFAULT_COMPRESSION);
    default:
      throw new ConfigError(`compress_type ${name} is not one of ${CODECS.join(", ")}`);
  }
}

/** The codec of a frame whose index byte is `id`; an IoError for an id this version does not know. */
export function codecById(id: number): Codec {
  const name = (Object.keys(CODEC_IDS) as CodecName[]).find((n) => CODEC_IDS[n] === id);
  if (name === undefined) throw new IoError(`a stored frame has codec ${id}, which this version does not know`);
  return codecFor(name);
}
