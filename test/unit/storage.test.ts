/** Durable writes, the local driver and the archive policy (checksums, no overwrites). */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  open as fsOpen,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ArchiveConflictError, ExitCode, IoError, ioError } from "../../src/errors";
import { processAlive, processStart } from "../../src/proc";
import {
  FOREIGN_TEMP_LEASE_MS,
  hostTag,
  removeDurable,
  removeStaleTemps,
  tempNameFor,
  TMP_PREFIX,
  writeAtDurable,
  writeFileDurable,
} from "../../src/storage/durable";
import { requireFeature, type StorageDriver, type WriteOptions } from "../../src/storage/driver";
import { LocalDriver } from "../../src/storage/local/driver";
import { checksumName, isChecksumName, WalArchive } from "../../src/storage/archive";
import { readBytes, writeBytes } from "../../src/storage/bytes";
import { storeFile } from "../../src/storage/files";
import { newSha256, sha256 } from "../../src/storage/sha256";
import { pipeline } from "node:stream/promises";
import { requireWalName } from "../../src/wal/names";

const SEG = "000000010000000000000001";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-unit-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function hashOf(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A local file written through LocalDriver.newWrite, not yet committed (the old stageFileCopy). */
async function stageFileCopy(dest: string, src: string, opts: { exclusive?: boolean } = {}) {
  // The source is opened (on the thread pool) before anything is awaited: a FIFO's writer may
  // block this thread in open() right after this call.
  const opening = new Promise<number>((res, rej) => fsOpen(src, "r", (err, fd) => (err ? rej(err) : res(fd))));
  opening.catch(() => undefined);
  const handle = await new LocalDriver().newWrite(dest, opts);
  let input;
  try {
    input = createReadStream("", { fd: await opening, highWaterMark: 1 << 20 });
  } catch (err) {
    await handle.abort();
    throw ioError("cannot read", src, err);
  }
  const hash = newSha256();
  let bytes = 0;
  try {
    // Hashed on the way through, so that a FIFO's bytes need no second read.
    const hashing = async function* (chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const chunk of chunks) {
        hash.update(chunk);
        bytes += chunk.length;
        yield chunk;
      }
    };
    await pipeline(input, hashing, handle);
  } catch (err) {
    await handle.abort();
    throw ioError("cannot read", src, err);
  }
  return { bytes, sha256: hash.digest("hex"), commit: () => handle.commit(), abort: () => handle.abort() };
}

/** What wal-restore gets for `name`: restored into a scratch file and read back. */
async function fetchArchived(arch: WalArchive, name: string) {
  const out = join(dir, "restored");
  const got = await arch.restoreTo(name, out);
  if (got === undefined) return undefined;
  const data = readFileSync(out);
  rmSync(out);
  return { data, verified: got.verified };
}

function temps(d: string): string[] {
  return readdirSync(d).filter((n) => n.startsWith(TMP_PREFIX));
}

function mode(path: string): number {
  return statSync(path).mode & 0o777;
}

/** A pid that belonged to a process which has exited and been reaped. */
function deadPid(): number {
  const res = spawnSync("true");
  assert.equal(typeof res.pid, "number");
  const pid = res.pid;
  assert.equal(processAlive(pid), false);
  return pid;
}

/** Writes a source file with `data` and returns its path. */
function source(data: Uint8Array, name = "src.bin"): string {
  const srcDir = join(dir, "src");
  mkdirSync(srcDir, { recursive: true });
  const path = join(srcDir, name);
  writeFileSync(path, data);
  return path;
}

describe("writeFileDurable", () => {
  test("writes the content with mode 0600 and leaves no temp file", () => {
    const path = join(dir, "file");
    const data = Buffer.from("hello, wal\n");
    assert.equal(writeFileDurable(path, data), true);
    assert.deepEqual(readFileSync(path), data);
    assert.equal(mode(path), 0o600);
    assert.deepEqual(temps(dir), []);
  });

  test("replaces an existing file and makes it 0600", () => {
    const path = join(dir, "file");
    writeFileSync(path, "old content that is longer", { mode: 0o644 });
    assert.equal(writeFileDurable(path, Buffer.from("new")), true);
    assert.equal(readFileSync(path, "utf8"), "new");
    assert.equal(mode(path), 0o600);
    assert.deepEqual(temps(dir), []);
  });

  test("padTo zero-pads to the given size", () => {
    const path = join(dir, SEG);
    const data = randomBytes(1000);
    writeFileDurable(path, data, { padTo: 8192 });
    const back = readFileSync(path);
    assert.equal(back.length, 8192);
    assert.deepEqual(back.subarray(0, 1000), data);
    assert.ok(back.subarray(1000).every((b) => b === 0));
    assert.deepEqual(temps(dir), []);
  });

  test("padTo smaller than the data does not truncate", () => {
    const path = join(dir, "file");
    writeFileDurable(path, Buffer.from("0123456789"), { padTo: 4 });
    assert.equal(readFileSync(path, "utf8"), "0123456789");
  });

  test("an empty buffer makes an empty file, or a zero-filled one with padTo", () => {
    writeFileDurable(join(dir, "empty"), Buffer.alloc(0));
    assert.equal(statSync(join(dir, "empty")).size, 0);
    writeFileDurable(join(dir, "zeros"), Buffer.alloc(0), { padTo: 100 });
    assert.deepEqual(readFileSync(join(dir, "zeros")), Buffer.alloc(100));
  });

  test("exclusive creates a missing file", () => {
    const path = join(dir, "file");
    assert.equal(writeFileDurable(path, Buffer.from("first"), { exclusive: true }), true);
    assert.equal(readFileSync(path, "utf8"), "first");
    assert.equal(mode(path), 0o600);
    assert.deepEqual(temps(dir), []);
  });

  test("exclusive returns false when the target exists and leaves it unchanged", () => {
    const path = join(dir, "file");
    writeFileSync(path, "original", { mode: 0o644 });
    assert.equal(writeFileDurable(path, Buffer.from("intruder"), { exclusive: true }), false);
    assert.equal(readFileSync(path, "utf8"), "original");
    assert.equal(mode(path), 0o644);
    assert.deepEqual(temps(dir), []);
  });

  test("a missing folder is an IoError naming the path, and no temp is left", () => {
    const path = join(dir, "no", "such", "dir", "file");
    assert.throws(
      () => writeFileDurable(path, Buffer.from("x")),
      (err: unknown) => err instanceof IoError && err.exitCode === ExitCode.IO && err.message.includes(path),
    );
    assert.deepEqual(temps(dir), []);
  });

  test("temp names are hidden, beside the target and name their writer: pid, start time, host", () => {
    const t = tempNameFor(join(dir, SEG));
    const start = processStart(process.pid);
    assert.ok(start !== undefined && /^\d+$/.test(start), "Linux has /proc/PID/stat");
    assert.equal(t, join(dir, `${TMP_PREFIX}${SEG}.${process.pid}-${start}@${hostTag()}`));
    assert.ok(TMP_PREFIX.startsWith("."));
    assert.equal(hostTag("db1.example.com"), "db1-example-com");
  });
});

describe("writeAtDurable and removeDurable", () => {
  test("writeAtDurable overwrites bytes in place", () => {
    const path = join(dir, "file");
    writeFileDurable(path, Buffer.alloc(16));
    writeAtDurable(path, 4, Buffer.from("abcd"));
    const back = readFileSync(path);
    assert.equal(back.length, 16);
    assert.equal(back.subarray(4, 8).toString(), "abcd");
    assert.ok(back.subarray(0, 4).every((b) => b === 0));
    assert.ok(back.subarray(8).every((b) => b === 0));
  });

  test("removeDurable removes and reports a missing file as false", () => {
    const path = join(dir, "file");
    writeFileSync(path, "x");
    assert.equal(removeDurable(path), true);
    assert.equal(existsSync(path), false);
    assert.equal(removeDurable(path), false);
  });
});

describe("stageFileCopy", () => {
  test("hashes what it copies; commit makes it visible; no temp left", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const src = source(data);
    const dest = join(dir, SEG);
    const staged = await stageFileCopy(dest, src);
    assert.equal(staged.sha256, hashOf(data));
    assert.equal(staged.bytes, data.length);
    assert.equal(existsSync(dest), false, "nothing visible before commit");
    assert.equal(temps(dir).length, 1);
    assert.equal(await staged.commit(), true);
    assert.deepEqual(readFileSync(dest), data);
    assert.equal(mode(dest), 0o600);
    assert.deepEqual(temps(dir), []);
  });

  test("the copy is 0600 whatever the source's mode, also while staged", async () => {
    const src = source(Buffer.from("wal bytes"));
    chmodSync(src, 0o644);
    const dest = join(dir, SEG);
    const staged = await stageFileCopy(dest, src);
    const [tmp] = temps(dir);
    assert.ok(tmp !== undefined);
    assert.equal(mode(join(dir, tmp)), 0o600);
    await staged.commit();
    assert.equal(mode(dest), 0o600);
  });

  test("the temp file is 0600 while the copy is under way (a FIFO holds it open)", async () => {
    const fifo = join(dir, "fifo");
    assert.equal(spawnSync("mkfifo", ["-m", "0644", fifo]).status, 0);
    const dest = join(dir, SEG);
    const staging = stageFileCopy(dest, fifo);
    const w = openSync(fifo, "w"); // the staging side opens it on the thread pool
    writeSync(w, Buffer.alloc(65536, 1));
    let seen: number | undefined;
    for (let i = 0; i < 500 && seen === undefined; i++) {
      const [t] = temps(dir);
      if (t !== undefined && statSync(join(dir, t)).size > 0) seen = mode(join(dir, t));
      else await new Promise((r) => setTimeout(r, 10));
    }
    writeSync(w, Buffer.alloc(1000, 2));
    closeSync(w);
    const staged = await staging;
    assert.equal(seen, 0o600);
    assert.equal(staged.bytes, 65536 + 1000);
    assert.equal(staged.sha256, hashOf(Buffer.concat([Buffer.alloc(65536, 1), Buffer.alloc(1000, 2)])));
    await staged.abort();
    assert.deepEqual(temps(dir), []);
  });

  test("an empty source is copied", async () => {
    const src = source(Buffer.alloc(0));
    const dest = join(dir, SEG);
    const staged = await stageFileCopy(dest, src);
    assert.equal(staged.bytes, 0);
    assert.equal(staged.sha256, hashOf(Buffer.alloc(0)));
    assert.equal(await staged.commit(), true);
    assert.equal(statSync(dest).size, 0);
  });

  test("exclusive commit refuses an existing target and leaves it unchanged", async () => {
    const src = source(Buffer.from("new"));
    const dest = join(dir, SEG);
    writeFileSync(dest, "old");
    const staged = await stageFileCopy(dest, src, { exclusive: true });
    assert.equal(await staged.commit(), false);
    assert.equal(readFileSync(dest, "utf8"), "old");
    assert.deepEqual(temps(dir), []);
  });

  test("exclusive commit creates a missing target", async () => {
    const src = source(Buffer.from("new"));
    const dest = join(dir, SEG);
    const staged = await stageFileCopy(dest, src, { exclusive: true });
    assert.equal(await staged.commit(), true);
    assert.equal(readFileSync(dest, "utf8"), "new");
    assert.deepEqual(temps(dir), []);
  });

  test("abort leaves nothing behind", async () => {
    const src = source(Buffer.from("data"));
    const dest = join(dir, SEG);
    const staged = await stageFileCopy(dest, src);
    await staged.abort();
    assert.equal(existsSync(dest), false);
    assert.deepEqual(temps(dir), []);
  });

  test("a missing source is an IoError naming it, and no temp is left", async () => {
    const src = join(dir, "missing-source");
    await assert.rejects(
      async () => stageFileCopy(join(dir, SEG), src),
      (err: unknown) => err instanceof IoError && err.message.includes(src),
    );
    assert.deepEqual(temps(dir), []);
  });
});

describe("LocalDriver", () => {
  const driver = new LocalDriver();

  test("storeFile copies, returns the sha256 of the source and stores it 0600", async () => {
    const data = randomBytes(100_000);
    const src = source(data);
    const dest = join(dir, SEG);
    const res = await storeFile(driver, dest, src);
    assert.deepEqual(res, { sha256: hashOf(data), bytes: data.length, stored: true });
    assert.deepEqual(readFileSync(dest), data);
    assert.equal(mode(dest), 0o600);
    assert.deepEqual(temps(dir), []);
  });

  test("storeFile with exclusive refuses an existing target", async () => {
    const src = source(Buffer.from("new"));
    const dest = join(dir, SEG);
    writeFileSync(dest, "old");
    const res = await storeFile(driver, dest, src, { exclusive: true });
    assert.equal(res.stored, false);
    assert.equal(readFileSync(dest, "utf8"), "old");
    assert.deepEqual(temps(dir), []);
  });

  test("newWrite asked to sweep removes dead writers' temps beside the target, never a live writer's", async () => {
    const dead = `${TMP_PREFIX}000000010000000000000009.${deadPid()}`;
    const alive = `${TMP_PREFIX}00000001000000000000000A.${process.ppid}-${processStart(process.ppid) ?? "0"}@${hostTag()}`;
    writeFileSync(join(dir, dead), "litter");
    writeFileSync(join(dir, alive), "work in progress");
    await storeFile(driver, join(dir, SEG), source(Buffer.from("wal")), { exclusive: true, sweepDeadWriters: true });
    assert.deepEqual(temps(dir), [alive]);
  });

  test("read and stat see symbolic links for what they are", async () => {
    const target = join(dir, "target");
    writeFileSync(target, "not wal");
    const link = join(dir, SEG);
    symlinkSync(target, link);
    await assert.rejects(readBytes(driver, link), (err: unknown) => {
      assert.ok(err instanceof IoError, String(err));
      assert.match(err.message, /symbolic link, not a regular file/);
      assert.ok(err.message.includes(link));
      return true;
    });
    assert.deepEqual(await driver.info(link), {
      size: 7,
      mtimeMs: statSync(target).mtimeMs,
      isDirectory: false,
      isFile: false,
      isSymlink: true,
    });
    const dangling = join(dir, "dangling");
    symlinkSync(join(dir, "nowhere"), dangling);
    assert.equal((await driver.info(dangling))?.isSymlink, true);
    await assert.rejects(readBytes(driver, dangling), /symbolic link/);
    assert.equal((await driver.info(target))?.isFile, true);
    assert.equal((await driver.info(dir))?.isDirectory, true);
    await assert.rejects(readBytes(driver, dir), /is a folder, not a regular file/);
  });

  test("read refuses a FIFO without hanging", async () => {
    const fifo = join(dir, "fifo");
    assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
    await assert.rejects(readBytes(driver, fifo), /special file, not a regular file/);
  });
  test("publish, read, stat, list, remove", async () => {
    const path = join(dir, "f");
    assert.equal(await writeBytes(driver, path, Buffer.from("abc"), { padTo: 5 }), true);
    assert.deepEqual(await readBytes(driver, path), Buffer.from([0x61, 0x62, 0x63, 0, 0]));
    assert.equal(await writeBytes(driver, path, Buffer.from("x"), { exclusive: true }), false);
    const st = await driver.info(path);
    assert.equal(st?.size, 5);
    assert.equal(st?.isDirectory, false);
    assert.deepEqual(await driver.list(dir), ["f"]);
    assert.equal(await driver.list(join(dir, "nope")), undefined);
    assert.equal(await readBytes(driver, join(dir, "nope")), undefined);
    assert.equal(await driver.info(join(dir, "nope")), undefined);
    assert.equal(await driver.remove(path), true);
    assert.equal(await driver.remove(path), false);
  });

  test("mkdirp makes private folders; rename refuses an existing target", async () => {
    const deep = join(dir, "a", "b", "c");
    await driver.pathCreate(deep);
    assert.equal(statSync(deep).isDirectory(), true);
    assert.equal(mode(deep), 0o700);
    assert.equal(mode(join(dir, "a")), 0o700);
    await driver.pathCreate(deep); // again: no error
    writeFileSync(join(dir, "x"), "x");
    writeFileSync(join(dir, "y"), "y");
    await assert.rejects(async () => requireFeature(driver, "tree").renameDir(join(dir, "x"), join(dir, "y")));
    assert.equal(readFileSync(join(dir, "y"), "utf8"), "y");
    await requireFeature(driver, "tree").renameDir(join(dir, "x"), join(dir, "z"));
    assert.equal(readFileSync(join(dir, "z"), "utf8"), "x");
    assert.equal(existsSync(join(dir, "x")), false);
  });
});

describe("WalArchive", () => {
  function archive(): { arch: WalArchive; completed: string } {
    const completed = join(dir, "logs.complete");
    mkdirSync(completed);
    return { arch: new WalArchive(new LocalDriver(), completed), completed };
  }

  test("checksum file names are hidden and recognisable", () => {
    assert.equal(checksumName(SEG), `.${SEG}.sha256`);
    assert.equal(isChecksumName(checksumName(SEG)), true);
    assert.equal(isChecksumName(SEG), false);
    assert.equal(sha256(Buffer.from("")), hashOf(Buffer.from("")));
  });

  test("pushFile stores the file and .NAME.sha256 in sha256sum format", async () => {
    const { arch, completed } = archive();
    const data = randomBytes(65536);
    const res = await arch.pushFile(requireWalName(SEG), source(data));
    assert.deepEqual(res, { result: "stored", bytes: data.length });
    assert.deepEqual(readFileSync(join(completed, SEG)), data);
    assert.equal(readFileSync(join(completed, `.${SEG}.sha256`), "utf8"), `${hashOf(data)}  ${SEG}\n`);
    assert.equal(mode(join(completed, SEG)), 0o600);
    assert.equal(mode(join(completed, `.${SEG}.sha256`)), 0o600);
    assert.deepEqual(readdirSync(completed).sort(), [`.${SEG}.sha256`, SEG]);
  });

  test("pushFile stores blocks of zeros as holes: the same bytes, a fraction of the space", async () => {
    const { arch, completed } = archive();
    // A switched segment's shape: WAL, zeros to the end; plus a lone page inside the zeros, a
    // block only partly zero, and a run across the copy's 1 MiB chunks.
    const data = Buffer.alloc(16 << 20);
    randomBytes(157 * 8192).copy(data, 0);
    randomBytes(8192).copy(data, 5 << 20);
    data[(9 << 20) + 100] = 7;
    randomBytes(3 * 4096).copy(data, (2 << 20) - 4096);
    // Private, as PostgreSQL's segments are: the copy the kernel would make is not taken for it.
    const src = source(data);
    chmodSync(src, 0o600);
    const res = await arch.pushFile(requireWalName(SEG), src);
    assert.deepEqual(res, { result: "stored", bytes: data.length });
    const stored = join(completed, SEG);
    assert.ok(readFileSync(stored).equals(data), "byte for byte the source");
    assert.equal(statSync(stored).size, 16 << 20);
    // 512-byte units: what holds data, and not the zeros (file systems without holes still pass
    // the content check above; this machine's ext4 has them).
    const allocated = statSync(stored).blocks * 512;
    assert.ok(allocated < 2 << 20, `${allocated} bytes allocated for ${data.length} with 1.3 MiB of data`);
    assert.equal(readFileSync(join(completed, `.${SEG}.sha256`), "utf8"), `${hashOf(data)}  ${SEG}\n`);
    // A restore writes every byte: PostgreSQL writes into recycled segments in place and must
    // not meet a hole (no space left there would be a PANIC).
    const back = join(dir, "restored");
    const got = await arch.restoreTo(SEG, back);
    assert.equal(got?.verified, true);
    assert.ok(readFileSync(back).equals(data));
    assert.ok(statSync(back).blocks * 512 >= data.length, "the restored segment is not sparse");
    // Trailing zeros, and an all-zero file, keep their size.
    const zeros = Buffer.alloc(3 * 4096 + 10);
    const z = await arch.pushFile(requireWalName("000000010000000000000002"), source(zeros, "z.bin"));
    assert.equal(z.bytes, zeros.length);
    assert.ok(readFileSync(join(completed, "000000010000000000000002")).equals(zeros));
    // A file that does not end in zeros (a segment full of WAL) is copied whole, whatever its mode.
    for (const m of [0o600, 0o644]) {
      const full = randomBytes(1 << 20);
      full.fill(0, 4096, 256 * 1024);
      const f = source(full, `full-${m}.bin`);
      chmodSync(f, m);
      const name = m === 0o600 ? "000000010000000000000003" : "000000010000000000000004";
      assert.equal((await arch.pushFile(requireWalName(name), f)).bytes, full.length);
      assert.ok(readFileSync(join(completed, name)).equals(full));
      assert.equal(mode(join(completed, name)), 0o600);
    }
  });

  test("re-pushing identical content is 'identical'", async () => {
    const { arch, completed } = archive();
    const data = randomBytes(4096);
    await arch.pushFile(requireWalName(SEG), source(data));
    const again = await arch.pushFile(requireWalName(SEG), source(data, "copy.bin"));
    assert.deepEqual(again, { result: "identical", bytes: data.length });
    assert.deepEqual(readFileSync(join(completed, SEG)), data);
    assert.deepEqual(readdirSync(completed).sort(), [`.${SEG}.sha256`, SEG]);
  });

  test("re-pushing identical content adds a missing checksum (walmgr.py archives have none)", async () => {
    const { arch, completed } = archive();
    const data = randomBytes(4096);
    writeFileSync(join(completed, SEG), data);
    const again = await arch.pushFile(requireWalName(SEG), source(data));
    assert.equal(again.result, "identical");
    assert.equal(readFileSync(join(completed, `.${SEG}.sha256`), "utf8"), `${hashOf(data)}  ${SEG}\n`);
  });

  test("different content under an archived name is an ArchiveConflictError (exit 8); the archive is unchanged", async () => {
    const { arch, completed } = archive();
    const data = randomBytes(4096);
    await arch.pushFile(requireWalName(SEG), source(data));
    const sumBefore = readFileSync(join(completed, `.${SEG}.sha256`));
    const other = Buffer.from(data);
    other[100] = (other[100] ?? 0) ^ 0xff;
    await assert.rejects(arch.pushFile(requireWalName(SEG), source(other, "other.bin")), (err: unknown) => {
      assert.ok(err instanceof ArchiveConflictError, String(err));
      assert.equal(err.exitCode, ExitCode.ARCHIVE_CONFLICT);
      assert.equal(err.exitCode, 8);
      assert.ok(err.message.includes(SEG), err.message);
      return true;
    });
    assert.deepEqual(readFileSync(join(completed, SEG)), data);
    assert.deepEqual(readFileSync(join(completed, `.${SEG}.sha256`)), sumBefore);
    assert.deepEqual(temps(completed), []);
  });

  test(".history files are never overwritten with other content", async () => {
    const { arch, completed } = archive();
    const name = "00000002.history";
    await arch.pushFile(requireWalName(name), source(Buffer.from("1\t0/3000000\tno recovery target specified\n")));
    await assert.rejects(
      arch.pushFile(requireWalName(name), source(Buffer.from("1\t0/4000000\tother\n"), "h2")),
      ArchiveConflictError,
    );
    assert.equal(readFileSync(join(completed, name), "utf8"), "1\t0/3000000\tno recovery target specified\n");
  });

  test("a missing source is an IoError and nothing is archived", async () => {
    const { arch, completed } = archive();
    await assert.rejects(arch.pushFile(requireWalName(SEG), join(dir, "missing")), IoError);
    assert.deepEqual(readdirSync(completed), []);
  });

  test("fetch returns verified data", async () => {
    const { arch } = archive();
    const data = randomBytes(8192);
    await arch.pushFile(requireWalName(SEG), source(data));
    const got = await fetchArchived(arch, SEG);
    assert.ok(got);
    assert.deepEqual(got.data, data);
    assert.equal(got.verified, true);
  });

  test("fetch of a corrupted file throws IoError (exit 9)", async () => {
    const { arch, completed } = archive();
    const data = randomBytes(8192);
    await arch.pushFile(requireWalName(SEG), source(data));
    const bad = Buffer.from(data);
    bad[0] = (bad[0] ?? 0) ^ 1;
    writeFileSync(join(completed, SEG), bad);
    await assert.rejects(fetchArchived(arch, SEG), (err: unknown) => {
      assert.ok(err instanceof IoError, String(err));
      assert.equal(err.exitCode, ExitCode.IO);
      assert.equal(err.exitCode, 9);
      assert.ok(err.message.includes(SEG), err.message);
      return true;
    });
  });

  test("fetch of a truncated file throws IoError", async () => {
    const { arch, completed } = archive();
    const data = randomBytes(8192);
    await arch.pushFile(requireWalName(SEG), source(data));
    writeFileSync(join(completed, SEG), data.subarray(0, 4096));
    await assert.rejects(fetchArchived(arch, SEG), IoError);
  });

  test("fetch of a missing name is undefined", async () => {
    const { arch } = archive();
    assert.equal(await fetchArchived(arch, SEG), undefined);
  });

  test("fetch of a file without checksum is served unverified", async () => {
    const { arch, completed } = archive();
    writeFileSync(join(completed, SEG), "from walmgr.py");
    const got = await fetchArchived(arch, SEG);
    assert.equal(got?.verified, false);
    assert.equal(got?.data.toString(), "from walmgr.py");
  });

  test("a writer that loses the race to another's file never writes its checksum", async () => {
    // A driver on which another archiver's file and checksum land after this archiver saw the
    // name free and before its exclusive publish: it loses and must leave the winner's checksum.
    const completed = join(dir, "logs.complete");
    mkdirSync(completed);
    const winner = randomBytes(4096);
    const local = new LocalDriver();
    const racing: StorageDriver = Object.assign(Object.create(local) as LocalDriver, {
      newWrite: async (path: string, opts?: WriteOptions) => {
        if (path === join(completed, SEG)) {
          writeFileSync(path, winner);
          writeFileSync(join(completed, `.${SEG}.sha256`), `${hashOf(winner)}  ${SEG}\n`);
        }
        return local.newWrite(path, opts);
      },
    });
    const arch = new WalArchive(racing, completed);
    await assert.rejects(arch.pushFile(requireWalName(SEG), source(randomBytes(4096))), ArchiveConflictError);
    assert.equal(readFileSync(join(completed, `.${SEG}.sha256`), "utf8"), `${hashOf(winner)}  ${SEG}\n`);
    const got = await fetchArchived(new WalArchive(local, completed), SEG);
    assert.deepEqual(got, { data: winner, verified: true });
  });

  test("the checksum is written after the file is in place, by the writer that stored it", async () => {
    const completed = join(dir, "logs.complete");
    mkdirSync(completed);
    const local = new LocalDriver();
    const order: string[] = [];
    const tracing: StorageDriver = Object.assign(Object.create(local) as LocalDriver, {
      newWrite: async (path: string, opts?: WriteOptions) => {
        const handle = await local.newWrite(path, opts);
        if (path !== join(completed, SEG)) {
          order.push(
            `publish ${path.slice(completed.length + 1)} (file visible: ${String(existsSync(join(completed, SEG)))})`,
          );
          return handle;
        }
        const commit = handle.commit.bind(handle);
        handle.commit = async () => {
          const stored = await commit();
          order.push(`file ${String(stored)}`);
          return stored;
        };
        return handle;
      },
    });
    const data = randomBytes(4096);
    await new WalArchive(tracing, completed).pushFile(requireWalName(SEG), source(data));
    assert.deepEqual(order, ["file true", `publish .${SEG}.sha256 (file visible: true)`]);
  });

  test("identical content repairs a wrong checksum; other content leaves it alone", async () => {
    const { arch, completed } = archive();
    const data = randomBytes(4096);
    writeFileSync(join(completed, SEG), data);
    const wrong = `${"0".repeat(64)}  ${SEG}\n`;
    writeFileSync(join(completed, `.${SEG}.sha256`), wrong);
    await assert.rejects(arch.pushFile(requireWalName(SEG), source(randomBytes(4096), "o")), ArchiveConflictError);
    assert.equal(readFileSync(join(completed, `.${SEG}.sha256`), "utf8"), wrong);
    assert.equal((await arch.pushFile(requireWalName(SEG), source(data))).result, "identical");
    assert.equal(readFileSync(join(completed, `.${SEG}.sha256`), "utf8"), `${hashOf(data)}  ${SEG}\n`);
  });

  test("a symbolic link under the name is refused before anything is written", async () => {
    const { arch, completed } = archive();
    symlinkSync(join(dir, "nowhere"), join(completed, SEG));
    await assert.rejects(arch.pushFile(requireWalName(SEG), source(Buffer.from("x"))), (err: unknown) => {
      assert.ok(err instanceof IoError, String(err));
      assert.match(err.message, /is a symbolic link, not an archived WAL file/);
      return true;
    });
    assert.deepEqual(readdirSync(completed), [SEG]);
    assert.equal(existsSync(join(dir, "nowhere")), false);
  });

  test("remove deletes the file and its checksum", async () => {
    const { arch, completed } = archive();
    await arch.pushFile(requireWalName(SEG), source(Buffer.from("x")));
    assert.equal(await arch.remove(SEG), true);
    assert.deepEqual(readdirSync(completed), []);
    assert.equal(await arch.remove(SEG), false);
  });
});

describe("removeStaleTemps", () => {
  test("judges this host's writers by pid and start time: a reused pid does not keep litter", () => {
    const parent = process.ppid;
    const start = processStart(parent);
    assert.ok(start !== undefined);
    const live = `${TMP_PREFIX}${SEG}.${parent}-${start}@${hostTag()}`;
    const reused = `${TMP_PREFIX}000000010000000000000002.${parent}-${Number(start) + 1}@${hostTag()}`;
    const dead = `${TMP_PREFIX}000000010000000000000003.${deadPid()}-${start}@${hostTag()}`;
    const mine = tempNameFor(join(dir, "000000010000000000000004")).slice(dir.length + 1);
    for (const n of [live, reused, dead, mine]) writeFileSync(join(dir, n), "x");
    removeStaleTemps(dir);
    assert.deepEqual(temps(dir).sort(), [live, mine].sort());
  });

  test("another host's temps are kept while fresh, removed once older than the lease", () => {
    const fresh = `${TMP_PREFIX}${SEG}.${process.pid}-1@other-host`;
    const old = `${TMP_PREFIX}000000010000000000000002.${process.pid}-1@other-host`;
    writeFileSync(join(dir, fresh), "x");
    writeFileSync(join(dir, old), "x");
    const past = (Date.now() - FOREIGN_TEMP_LEASE_MS - 60_000) / 1000;
    utimesSync(join(dir, old), past, past);
    removeStaleTemps(dir);
    assert.deepEqual(temps(dir), [fresh]);
  });

  test("a zombie (exited, not yet reaped by its parent) is not alive", async () => {
    // `sleep 3` inherits the backgrounded child and never reaps it: a zombie until sleep ends.
    const parent = spawn("sh", ["-c", "sleep 0.1 & echo $!; exec sleep 3"], { stdio: ["ignore", "pipe", "ignore"] });
    try {
      const pid = await new Promise<number>((res) =>
        parent.stdout.once("data", (b: Buffer) => res(Number(String(b).trim()))),
      );
      assert.equal(processAlive(pid), true, "running");
      await new Promise((r) => setTimeout(r, 400));
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      assert.equal(stat[stat.lastIndexOf(")") + 2], "Z", "the child is a zombie now");
      assert.equal(processAlive(pid), false);
    } finally {
      parent.kill("SIGKILL");
    }
  });

  test("removes temps of dead pids only", () => {
    const dead = deadPid();
    const alive = process.ppid;
    assert.equal(processAlive(alive), true);
    const deadTemp = `${TMP_PREFIX}${SEG}.${dead}`;
    const aliveTemp = `${TMP_PREFIX}000000010000000000000002.${alive}`;
    const names = [deadTemp, aliveTemp, SEG, `.${SEG}.sha256`, "BACKUPLOCK"];
    for (const n of names) writeFileSync(join(dir, n), "x");
    removeStaleTemps(dir);
    assert.deepEqual(readdirSync(dir).sort(), [aliveTemp, SEG, `.${SEG}.sha256`, "BACKUPLOCK"].sort());
  });

  test("with a name, only that name's temps are considered", () => {
    const dead = deadPid();
    const mine = `${TMP_PREFIX}${SEG}.${dead}`;
    const other = `${TMP_PREFIX}000000010000000000000002.${dead}`;
    writeFileSync(join(dir, mine), "x");
    writeFileSync(join(dir, other), "x");
    removeStaleTemps(dir, SEG);
    assert.deepEqual(readdirSync(dir), [other]);
  });

  test("a missing folder is not an error", () => {
    assert.doesNotThrow(() => removeStaleTemps(join(dir, "nope")));
  });
});
