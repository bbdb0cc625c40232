/**
 * The frame codecs of compress_type (src/codec.ts): each writes its tool's standard frame, honours
 * its level, round-trips, and turns a damaged frame into an IoError (exit 9) instead of wrong data
 * of the wrong size.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { COMPRESS_TYPES, LEVELS, makeCodec } from "../../src/codec";
import { ConfigError, ExitCode, IoError } from "../../src/errors";

/** 1 MiB shaped like heap pages: a repeated tuple layout with varying numbers and some noise. */
function pages(): Buffer {
  const out = Buffer.alloc(1 << 20);
  let seed = 7;
  for (let off = 0; off < out.length; off += 128) {
    out.write(`row ${off / 128} balance ${(off * 31) % 977} filler`.padEnd(96, " "), off);
    for (let i = 96; i < 128; i += 4) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      out.writeUInt32LE(seed % 1000, off + i);
    }
  }
  return out;
}

const MAGIC: Record<string, string> = { zstd: "28b52ffd", lz4: "04224d18", gzip: "1f8b" };
const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

describe("codec", () => {
  const raw = pages();
  for (const type of COMPRESS_TYPES) {
    test(`${type}: round trip, sync and async, in its standard frame format`, async () => {
      const c = makeCodec(type);
      assert.equal(c.level, LEVELS[type].default);
      const a = await c.compress(raw);
      const s = c.compressSync(raw);
      if (type === "none") assert.equal(a.length, raw.length);
      else {
        assert.ok(a.length < raw.length / 2, `${type} compressed 1 MiB to ${a.length} bytes`);
        assert.equal(a.subarray(0, MAGIC[type]!.length / 2).toString("hex"), MAGIC[type]);
      }
      assert.equal(sha(await c.decompress(a, raw.length)), sha(raw));
      assert.equal(sha(c.decompressSync(s, raw.length)), sha(raw));
    });

    if (type === "none") continue;

    test(`${type}: a truncated frame, a foreign buffer or a wrong size is an IoError (exit 9)`, async () => {
      const c = makeCodec(type);
      const packed = c.compressSync(raw);
      const truncated = packed.subarray(0, Math.floor(packed.length / 2));
      const foreign = Buffer.from("not a compressed frame at all, just text".repeat(20));
      for (const [what, frame, size] of [
        ["truncated", truncated, raw.length],
        ["foreign", foreign, raw.length],
        ["wrong size", packed, raw.length - 8192],
      ] as const) {
        assert.throws(
          () => c.decompressSync(frame, size),
          (e: unknown) => e instanceof IoError && e.exitCode === ExitCode.IO && /damaged/.test(e.message),
          `${type} ${what} (sync)`,
        );
        await assert.rejects(
          c.decompress(frame, size),
          (e: unknown) => e instanceof IoError && e.exitCode === ExitCode.IO,
          `${type} ${what} (async)`,
        );
      }
    });
  }

  test("zstd and gzip honour the level (a package that ignored it would give equal sizes)", () => {
    for (const type of ["zstd", "gzip"] as const) {
      const low = makeCodec(type, LEVELS[type].min).compressSync(raw).length;
      const high = makeCodec(type, LEVELS[type].max).compressSync(raw).length;
      assert.ok(high < low, `${type}: level ${LEVELS[type].max} gave ${high} bytes, level ${LEVELS[type].min} ${low}`);
    }
  });

  test("a level out of range is a ConfigError that names the range", () => {
    for (const [type, level] of [
      ["zstd", 0],
      ["zstd", 22],
      ["gzip", 10],
      ["lz4", 3],
      ["none", 1],
      ["zstd", 1.5],
    ] as const) {
      assert.throws(
        () => makeCodec(type, level),
        (e: unknown) =>
          e instanceof ConfigError && e.exitCode === ExitCode.CONFIG && e.message.includes(`compress_level = ${level}`),
        `${type} ${level}`,
      );
    }
  });
});
