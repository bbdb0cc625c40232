/**
 * Constant memory on big segments (`initdb --wal-segsize=1024`): wal-archive and wal-restore
 * move a 1 GiB segment through a local slave directory with a peak RSS under 64 MB, both ways,
 * in every path that reads the segment: first archive, re-archive of identical content (the
 * streaming hash comparison), re-archive of other content (conflict, exit 8), restore, and a
 * restore of a corrupted copy (exit 9, nothing at %p).
 *
 * Peak RSS is the kernel's own figure for the child: GNU time's %M (ru_maxrss from wait4),
 * written with -o to a file so the executable's stderr cannot mix in. It covers the whole life
 * of the process, so no peak between two samples can be missed (polling VmHWM could miss one
 * just before exit). wal-archive does not look inside a segment (it checks the name only), so
 * the 1 GiB segment is a synthetic file under a valid name: no server is needed.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { hashFile } from "../../src/storage/sha256";
import { binPath, makeTempDir, mkdirAs, removeTempDir, run, type RunResult } from "../helpers/env";
import { makeSlaveDir, runSlave, TestSshd } from "../helpers/sshd";
import { writeFileAs } from "../helpers/walmgr";

const GIB = 1 << 30;
const LIMIT_KB = 64 * 1000; // 64 MB
const SEG = "000000010000000000000001";
const TIME = "/usr/bin/time";

let base: string;
let completed: string;
let ini: string;
let slaveIni: string;
let src: string;
let srcSha: string;
let sshd: TestSshd | undefined;
let slaveBase: string | undefined;

/** Runs an executable under GNU time; its result and its peak RSS in kB. */
function measured(name: string, args: string[]): RunResult & { rssKb: number } {
  const out = join(base, `rss-${name}`);
  const res = run(TIME, ["-f", "%M", "-o", out, binPath(name), ...args]);
  const rssKb = Number(readFileSync(out, "utf8").trim().split("\n").pop());
  assert.ok(Number.isFinite(rssKb) && rssKb > 0, `no RSS figure from ${TIME}: ${readFileSync(out, "utf8")}`);
  return { ...res, rssKb };
}

/** 1 GiB of incompressible bytes at `src`, every MiB different, written in 1 MiB steps. */
function makeSource(): void {
  src = join(base, SEG);
  writeFileAs(src, "");
  const chunk = randomBytes(1 << 20);
  const hash = createHash("sha256");
  const fd = openSync(src, "w");
  for (let i = 0; i < GIB / chunk.length; i++) {
    chunk.writeUInt32BE(i, 0);
    writeSync(fd, chunk);
    hash.update(chunk);
  }
  closeSync(fd);
  srcSha = hash.digest("hex");
}

function flipByte(path: string, offset: number): void {
  const fd = openSync(path, "r+");
  const b = Buffer.alloc(1);
  readSync(fd, b, 0, 1, offset);
  b[0] = (b[0] ?? 0) ^ 0xff;
  writeSync(fd, b, 0, 1, offset);
  closeSync(fd);
}

before(() => {
  assert.ok(existsSync(TIME), `${TIME} missing: apt-get install time (.ci/run does)`);
  base = makeTempDir("bigseg");
  const slave = join(base, "slave");
  mkdirAs(slave);
  completed = join(slave, "logs.complete");
  mkdirAs(completed);
  mkdirAs(join(slave, "logs.partial"));
  mkdirAs(join(base, "pg_wal"));
  ini = join(base, "master.ini");
  writeFileAs(ini, `[wal-master]\nmaster_db = dbname=postgres\nmaster_data = ${base}/nodata\nslave = ${slave}\n`);
  slaveIni = join(base, "slave.ini");
  writeFileAs(slaveIni, `[wal-slave]\nslave_data = ${base}/sdata\nslave = ${slave}\n`);
  makeSource();
});

after(() => {
  sshd?.stop();
  removeTempDir(base);
  if (slaveBase) removeTempDir(slaveBase);
});

test("a 1 GiB segment is archived and restored with peak RSS < 64 MB in every path", () => {
  const figures: string[] = [];
  const check = (what: string, res: RunResult & { rssKb: number }, status: number): void => {
    figures.push(`${what}: ${(res.rssKb / 1000).toFixed(1)} MB`);
    assert.equal(res.status, status, `${what}: exit ${String(res.status)}\n${res.stderr}`);
    assert.ok(res.rssKb < LIMIT_KB, `${what}: peak RSS ${res.rssKb} kB >= 64 MB`);
  };

  check("wal-archive", measured("wal-archive", [ini, src, SEG]), 0);
  assert.equal(hashFile(join(completed, SEG)).sha256, srcSha);

  check("wal-archive again (identical)", measured("wal-archive", [ini, src, SEG]), 0);

  flipByte(src, GIB / 2);
  check("wal-archive of other content (conflict)", measured("wal-archive", [ini, src, SEG]), 8);
  flipByte(src, GIB / 2);
  rmSync(src);

  const dest = join(base, "pg_wal", "RECOVERYXLOG");
  check("wal-restore", measured("wal-restore", [slaveIni, SEG, dest]), 0);
  assert.equal(hashFile(dest).sha256, srcSha);
  rmSync(dest);

  flipByte(join(completed, SEG), GIB - 1);
  const bad = measured("wal-restore", [slaveIni, SEG, dest]);
  check("wal-restore of a corrupted copy", bad, 9);
  assert.match(bad.stderr, /fails its checksum/);
  assert.deepEqual(readdirSync(join(base, "pg_wal")), [], "nothing at %p, no temp beside it");
  process.stdout.write(`# peak RSS: ${figures.join("; ")}\n`);
});

test("over ssh: a 1 GiB segment is archived and restored with peak RSS < 64 MB", async () => {
  // The local test above consumed the source and the archived copy: fresh ones, local space freed.
  rmSync(join(completed, SEG), { force: true });
  makeSource();
  sshd = await TestSshd.start();
  slaveBase = makeSlaveDir("bigseg-slavehost");
  const slaveDir = join(slaveBase, "walshipping");
  const remoteCompleted = join(slaveDir, "logs.complete");
  const mk = runSlave("mkdir", ["-p", "-m", "700", remoteCompleted, join(slaveDir, "logs.partial")]);
  assert.equal(mk.status, 0, mk.stderr);
  const remoteIni = join(base, "remote.ini");
  writeFileAs(
    remoteIni,
    `[wal-master]\nslave = walslave-test:${slaveDir}\nssh_config = ${sshd.clientConfig}\nssh_timeout = 10\n`,
  );
  const figures: string[] = [];
  const check = (what: string, res: RunResult & { rssKb: number }, status: number): void => {
    figures.push(`${what}: ${(res.rssKb / 1000).toFixed(1)} MB`);
    assert.equal(res.status, status, `${what}: exit ${String(res.status)}\n${res.stderr}`);
    assert.ok(res.rssKb < LIMIT_KB, `${what}: peak RSS ${res.rssKb} kB >= 64 MB`);
  };
  check("wal-archive over ssh", measured("wal-archive", [remoteIni, src, SEG]), 0);
  const remoteSha = runSlave("sha256sum", [join(remoteCompleted, SEG)]);
  assert.equal(remoteSha.stdout.split(" ")[0], srcSha, "the slave holds the segment's exact bytes");
  check("wal-archive over ssh again (identical)", measured("wal-archive", [remoteIni, src, SEG]), 0);
  rmSync(src);
  const dest = join(base, "pg_wal", "RECOVERYXLOG");
  check("wal-restore over ssh", measured("wal-restore", [remoteIni, SEG, dest]), 0);
  assert.equal(hashFile(dest).sha256, srcSha);
  rmSync(dest);
  process.stdout.write(`# peak RSS over ssh: ${figures.join("; ")}\n`);
});
