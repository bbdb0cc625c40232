/**
 * The block repository's core (src/repo/): a tree stored into packs and a manifest, and
 * materialized back byte for byte; a second store against the first set's manifest stores only
 * the changed blocks, and both sets stay whole; a damaged block is refused, naming set, file and
 * offset.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, test } from "node:test";
import { IoError } from "../../src/errors";
import { codecFor } from "../../src/repo/codec";
import { RepoLayout } from "../../src/repo/layout";
import { ManifestWriter, openManifest, type FileEntry } from "../../src/repo/manifest";
import { materializeSet } from "../../src/repo/materialize";
import { readPackIndex } from "../../src/repo/pack";
import { setsToKeep } from "../../src/repo/expire";
import { storeTree, type StoreShape } from "../../src/repo/store";
import { LocalDriver } from "../../src/storage/local/driver";

let dir: string;
const driver = new LocalDriver();

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-repo-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const shape: StoreShape = {
  blockSize: 4096,
  frameSize: 16384,
  packSize: 64 * 1024,
  codec: codecFor("gzip", 1),
  parallel: 3,
};

/** A data directory's shape: compressible and random files, zeros, an empty file and folder. */
function makeSource(): string {
  const src = join(dir, "data");
  mkdirSync(join(src, "base", "1"), { recursive: true });
  mkdirSync(join(src, "pg_wal", "archive_status"), { recursive: true });
  const text = Buffer.from("row ".repeat(20000));
  writeFileSync(join(src, "base", "1", "1259"), text);
  writeFileSync(join(src, "base", "1", "2608"), randomBytes(50000));
  const zeros = Buffer.alloc(3 * 4096 + 100);
  zeros[5000] = 1;
  writeFileSync(join(src, "base", "1", "sparse"), zeros);
  writeFileSync(join(src, "PG_VERSION"), "15\n");
  writeFileSync(join(src, "empty"), "");
  for (let i = 0; i < 12; i++) writeFileSync(join(src, "base", "1", `f${i}`), randomBytes(9000 + i * 777));
  chmodSync(join(src, "PG_VERSION"), 0o640);
  return src;
}

async function store(
  src: string,
  set: string,
  reference?: string,
  codec: StoreShape["codec"] = shape.codec,
): Promise<{ packs: string[]; newBytes: number; reusedBytes: number; storedBytes: number }> {
  const layout = new RepoLayout(join(dir, "repo"));
  await driver.pathCreate(layout.setsDir);
  const ref = reference === undefined ? undefined : await openManifest(driver, layout.manifestPath(reference));
  const w = await ManifestWriter.create(driver, layout.manifestPath(set), {
    format: "walmgr-repo-manifest",
    v: 1,
    set,
    blockSize: shape.blockSize,
  });
  const stats = await storeTree(
    driver,
    layout,
    src,
    () => true,
    { ...shape, codec },
    ref?.entries,
    (e) => w.add(e),
    // As wal-backup reads pg_control: last, listed at the manifest's end.
    { last: ["PG_VERSION"] },
  );
  assert.equal(await w.commit({ label: set }), true);
  return stats;
}

/** Every file and folder below `root`: path → content (folders: "dir") and mode. */
function snapshot(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string, rel: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const r = rel === "" ? n : `${rel}/${n}`;
      const st = statSync(p);
      if (st.isDirectory()) {
        out.set(r, `dir ${(st.mode & 0o777).toString(8)}`);
        walk(p, r);
      } else out.set(r, `${(st.mode & 0o777).toString(8)} ${readFileSync(p).toString("base64")}`);
    }
  };
  walk(root, "");
  return out;
}

test("a tree stored and materialized comes back byte for byte, modes included", async () => {
  const src = makeSource();
  const stats = await store(src, "s1");
  assert.ok(stats.packs.length >= 2, `several packs (workers and packSize): ${stats.packs.length}`);
  assert.ok(stats.storedBytes < stats.newBytes, "compressed");
  const layout = new RepoLayout(join(dir, "repo"));
  const out = join(dir, "out1");
  const got = await materializeSet(driver, layout, "s1", out);
  assert.equal(got?.header.set, "s1");
  assert.deepEqual(got?.info, { label: "s1" });
  assert.deepEqual(snapshot(out), snapshot(src));
  // Every block of every pack is listed in the pack's own index with its id.
  for (const id of stats.packs) assert.ok((await readPackIndex(driver, layout, id)).length > 0);
  assert.equal(await materializeSet(driver, layout, "nosuchset", join(dir, "none")), undefined);
});

test("every compression round-trips, and frames record theirs (a repository may hold several)", async () => {
  const src = makeSource();
  const layout = new RepoLayout(join(dir, "repo"));
  for (const [i, c] of (["zstd", "lz4", "none", "gzip"] as const).entries()) {
    const set = `c${i}`;
    await store(src, set, undefined, codecFor(c));
    await materializeSet(driver, layout, set, join(dir, `out-${c}`));
    assert.deepEqual(snapshot(join(dir, `out-${c}`)), snapshot(src), c);
  }
});

test("the second store keeps only changed blocks; both sets stay whole", async () => {
  const src = makeSource();
  const first = await store(src, "s1");
  const before = snapshot(src);
  // One block of one file changes, a file grows, one is removed, one is new.
  const f = join(src, "base", "1", "2608");
  const data = readFileSync(f);
  data.writeUInt8(data.readUInt8(4096 * 3 + 7) ^ 0xff, 4096 * 3 + 7);
  writeFileSync(f, data);
  writeFileSync(
    join(src, "base", "1", "f0"),
    Buffer.concat([readFileSync(join(src, "base", "1", "f0")), randomBytes(5000)]),
  );
  rmSync(join(src, "base", "1", "f1"));
  writeFileSync(join(src, "base", "1", "new"), randomBytes(7000));
  const second = await store(src, "s2", "s1");
  assert.ok(
    second.newBytes <= 4096 + 8192 + 7000,
    `stored ${second.newBytes} raw bytes (one changed block, f0's last block and its growth, the new file)`,
  );
  assert.ok(second.reusedBytes > first.newBytes / 2, `reused ${second.reusedBytes}`);
  const layout = new RepoLayout(join(dir, "repo"));
  await materializeSet(driver, layout, "s2", join(dir, "out2"));
  assert.deepEqual(snapshot(join(dir, "out2")), snapshot(src));
  await materializeSet(driver, layout, "s1", join(dir, "out1"));
  assert.deepEqual(snapshot(join(dir, "out1")), before);
});

test("a damaged stored block is refused, naming the set, the file and the offset", async () => {
  const src = makeSource();
  const stats = await store(src, "s1");
  const layout = new RepoLayout(join(dir, "repo"));
  // Find the frame holding 2608's block 2 (random: stored as it is) and flip a byte in it.
  const m = await openManifest(driver, layout.manifestPath("s1"));
  let entry: FileEntry | undefined;
  for await (const e of m?.entries ?? []) if (e.p === "base/1/2608") entry = e;
  const b = entry?.b[2];
  assert.ok(b !== undefined && b !== 0);
  const frame = entry?.f[b[0]];
  assert.ok(frame !== undefined && stats.packs.includes(frame[0]));
  const packFile = layout.packPath(frame[0]);
  const bytes = readFileSync(packFile);
  assert.equal(frame[3], 0, "random data is kept uncompressed");
  const at = frame[1] + b[1] + 10;
  bytes.writeUInt8(bytes.readUInt8(at) ^ 0x01, at);
  writeFileSync(packFile, bytes);
  await assert.rejects(materializeSet(driver, layout, "s1", join(dir, "out")), (err: unknown) => {
    assert.ok(err instanceof IoError, String(err));
    assert.match(err.message, /set s1: base\/1\/2608 at offset 8192 fails its checksum/);
    return true;
  });
});

test("retention keeps the newest keep_backups sets and, with keep_days, the window and the set before it", () => {
  const day = 86_400_000;
  const now = Date.parse("2026-12-08T00:00:00Z");
  const sets = [10, 8, 6, 4, 2, 1].map((d, i) => ({ name: `s${i}`, stopTime: now - d * day }));
  const keep = (keepBackups: number, keepDays: number): string[] =>
    [...setsToKeep(sets, { keepBackups, keepDays, now })].sort();
  assert.deepEqual(keep(0, 0), ["s5"], "0: the newest only");
  assert.deepEqual(keep(2, 0), ["s4", "s5"]);
  // 5 days: s3 (4 days), s4, s5 inside; s2 (6 days ago) is where recovery to 5 days ago starts.
  assert.deepEqual(keep(1, 5), ["s2", "s3", "s4", "s5"]);
  assert.deepEqual(keep(1, 100), ["s0", "s1", "s2", "s3", "s4", "s5"]);
  // A set whose time is unknown is never dropped on a guess.
  assert.deepEqual(
    [...setsToKeep([{ name: "x", stopTime: Number.NaN }, ...sets], { keepBackups: 1, keepDays: 0, now })].sort(),
    ["s5", "x"],
  );
});
