/**
 * Restore prefetch and bin/wal-restore's shell front, against real data directories (initdb)
 * and a local archive filled by the real wal-archive. wal-restore runs as PostgreSQL runs it:
 * working directory the data directory, `CONFIG %f pg_wal/RECOVERYXLOG`.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Cluster } from "../helpers/cluster";
import {
  makeTempDir,
  mkdirAs,
  packageRoot,
  removeTempDir,
  run,
  runBin,
  sleep,
  spawnAs,
  spawnBin,
  waitFor,
} from "../helpers/env";
import { killPrefetcher, stopStartedPrefetcher } from "../helpers/prefetch";
import { writeFileAs } from "../helpers/walmgr";

const SEG_SIZE = 1 << 20;
const names = Array.from(
  { length: 40 },
  (_, i) => `0000000100000000000000${(i + 1).toString(16).toUpperCase().padStart(2, "0")}`,
);
const content = new Map<string, Buffer>();

let base: string;
let completed: string;
let ini: string;
let log: string;
let dataA: string;
let dataB: string;

before(async () => {
  base = makeTempDir("prefetch");
  const slave = join(base, "walshipping");
  completed = join(slave, "logs.complete");
  mkdirAs(completed);
  mkdirAs(join(slave, "logs.partial"));
  const masterIni = join(base, "master.ini");
  writeFileAs(masterIni, `[wal-master]\nmaster_data = ${base}/nodata\nslave = ${slave}\n`);
  for (const n of names) {
    const data = randomBytes(SEG_SIZE);
    content.set(n, data);
    const src = join(base, "src");
    writeFileAs(src, "");
    writeFileSync(src, data);
    assert.equal(runBin("wal-archive", [masterIni, src, n]).status, 0);
  }
  dataA = (await Cluster.create(base, "a")).dataDir;
  dataB = (await Cluster.create(base, "b")).dataDir;
  // The prefetcher works only while a server runs in the data directory: stand in for one.
  for (const d of [dataA, dataB]) {
    writeFileAs(join(d, "postmaster.pid"), "");
    writeFileAs(join(d, "standby.signal"), "");
  }
  ini = join(base, "slave.ini");
  log = join(base, "slave.log");
  writeFileAs(
    ini,
    `[wal-slave]\nlogfile = slave.log\nslave_data = ${dataA}\nslave = ${slave}\ncompleted_wals = %(slave)s/logs.complete\npartial_wals = %(slave)s/logs.partial\nrestore_prefetch = 6\n`,
  );
});

after(async () => {
  killPrefetcher(dataA);
  killPrefetcher(dataB);
  await sleep(200);
  removeTempDir(base);
});

function spoolOf(dataDir: string): string {
  return join(dataDir, "pg_wal", ".walmgr-prefetch");
}

function entries(dataDir: string): string[] {
  try {
    return readdirSync(spoolOf(dataDir))
      .filter((n) => /^[0-9A-F]{24}$/.test(n))
      .sort();
  } catch {
    return [];
  }
}

function restore(dataDir: string, name: string): { status: number | null; stderr: string; logged: string } {
  const before = existsSync(log) ? readFileSync(log, "utf8").length : 0;
  const res = runBin("wal-restore", [ini, name, "pg_wal/RECOVERYXLOG"], { cwd: dataDir });
  const logged = existsSync(log) ? readFileSync(log, "utf8").slice(before) : "";
  return { status: res.status, stderr: res.stderr, logged };
}

function assertServed(dataDir: string, name: string): void {
  const got = readFileSync(join(dataDir, "pg_wal", "RECOVERYXLOG"));
  assert.ok(got.equals(content.get(name) ?? Buffer.alloc(0)), `RECOVERYXLOG is not ${name}`);
  rmSync(join(dataDir, "pg_wal", "RECOVERYXLOG"));
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Every entry under a segment name is complete and byte-equal to the archived segment. */
function assertEntriesVerified(dataDir: string): void {
  for (const e of entries(dataDir)) {
    const data = readFileSync(join(spoolOf(dataDir), e));
    assert.equal(sha(data), sha(content.get(e) ?? Buffer.alloc(0)), `spool entry ${e} is not the archived segment`);
  }
}

test("a served segment starts the prefetcher; the next ones are served by the shell front without Node", async () => {
  const first = restore(dataA, names[0] ?? "");
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.logged, new RegExp(`restored ${names[0] ?? ""} from `));
  assertServed(dataA, names[0] ?? "");
  await waitFor("the prefetcher to spool 6 segments", () => entries(dataA).length === 6, 30_000, 50);
  assert.deepEqual(entries(dataA), names.slice(1, 7));
  assertEntriesVerified(dataA);
  for (const n of names.slice(1, 4)) {
    const r = restore(dataA, n);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.logged, "", `${n} should have been served by the shell front (Node logs every serve)`);
    assertServed(dataA, n);
  }
  // The prefetcher refills behind the front.
  await waitFor("the spool to be refilled", () => entries(dataA).includes(names[9] ?? ""), 30_000, 50);
});

test("a truncated spool entry is never served: Node serves the archived segment instead", () => {
  const n = names[4] ?? "";
  assert.ok(entries(dataA).includes(n));
  truncateSync(join(spoolOf(dataA), n), SEG_SIZE / 2);
  const r = restore(dataA, n);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.logged, new RegExp(`restored ${n} from ${completed}`));
  assertServed(dataA, n);
});

test("PAUSE stops the fast path; under STOP the spool is served through Node in order", () => {
  const n = names[5] ?? "";
  assert.ok(entries(dataA).includes(n));
  writeFileAs(join(completed, "PAUSE"), "");
  try {
    const r = restore(dataA, n);
    assert.equal(r.status, 1, "nothing is served while PAUSE exists");
    assert.ok(!existsSync(join(dataA, "pg_wal", "RECOVERYXLOG")));
    assert.ok(entries(dataA).includes(n), "the entry stays for later");
  } finally {
    rmSync(join(completed, "PAUSE"));
  }
  writeFileAs(join(completed, "STOP"), "");
  try {
    const r = restore(dataA, n);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.logged, /from the prefetch spool/);
    assertServed(dataA, n);
  } finally {
    rmSync(join(completed, "STOP"));
  }
});

test("a spool copied from another cluster's data directory is discarded, never served", () => {
  const n = names[6] ?? "";
  assert.ok(entries(dataA).includes(n));
  // A's prefetcher stops first: a copy of a spool it is writing to (a temp renamed away under
  // cp) fails now and then on a busy machine.
  killPrefetcher(dataA);
  // Copied as the server user would (cp -a keeps the links as they are).
  const cp = run("cp", ["-a", spoolOf(dataA), spoolOf(dataB)]);
  assert.equal(cp.status, 0, cp.stderr);
  // A wrong file under the name, to be sure nothing from the copy is served.
  writeFileSync(join(spoolOf(dataB), n), randomBytes(SEG_SIZE));
  const r = restore(dataB, n);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.logged, /discarded: made for another data directory/);
  assert.match(r.logged, new RegExp(`restored ${n} from ${completed}`));
  assertServed(dataB, n);
  const meta = JSON.parse(readFileSync(join(spoolOf(dataB), "meta"), "utf8")) as { sysid: string };
  const metaA = JSON.parse(readFileSync(join(spoolOf(dataA), "meta"), "utf8")) as { sysid: string };
  assert.notEqual(meta.sysid, metaA.sysid, "B's new spool is bound to B's cluster");
});

test("a spool made before the machine last booted is never served (its entries are not fsynced)", async () => {
  await waitFor("an entry in A's spool", () => entries(dataA).length > 0, 30_000, 50);
  killPrefetcher(dataA);
  await sleep(100);
  const n = entries(dataA)[0] ?? "";
  // What a reboot changes: the kernel's boot id. Stand in for it by binding the spool to another.
  const other = "00000000-0000-4000-8000-000000000000";
  const metaPath = join(spoolOf(dataA), "meta");
  const meta = JSON.parse(readFileSync(metaPath, "utf8")) as { boot: string };
  assert.match(meta.boot, /^[0-9a-f-]{36}$/, "the spool is bound to this boot");
  writeFileSync(metaPath, JSON.stringify({ ...meta, boot: other }));
  const fast = readFileSync(join(spoolOf(dataA), "fast"), "utf8").split("\n");
  assert.equal(fast[2], meta.boot, "the shell front's copy of the boot id");
  writeFileSync(join(spoolOf(dataA), "fast"), [fast[0], fast[1], other, ""].join("\n"));
  // Content the front would serve, were it to trust the old boot's entries.
  writeFileSync(join(spoolOf(dataA), n), randomBytes(SEG_SIZE));
  const r = restore(dataA, n);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.logged, /discarded: made before the machine last booted/);
  assert.match(r.logged, new RegExp(`restored ${n} from ${completed}`));
  assertServed(dataA, n);
});

test("the front waits for an entry the prefetcher is copying; a copy that never ends goes to Node", async () => {
  await waitFor("entries in A's spool", () => entries(dataA).length >= 2, 30_000, 50);
  killPrefetcher(dataA);
  await sleep(100);
  const [n, m] = entries(dataA) as [string, string];
  // n: its copy "finishes" 300 ms after the call (the temp is renamed to the entry).
  const held = join(base, "held");
  renameSync(join(spoolOf(dataA), n), held);
  const tmp = join(spoolOf(dataA), `.walmgr-tmp.${n}.test`);
  writeFileAs(tmp, "");
  const logBefore = readFileSync(log, "utf8").length;
  const t0 = Date.now();
  const call = spawnBin("wal-restore", [ini, n, "pg_wal/RECOVERYXLOG"], { cwd: dataA });
  await sleep(300);
  renameSync(held, join(spoolOf(dataA), n));
  rmSync(tmp);
  const e = await call.exited;
  assert.equal(e.status, 0, call.output());
  assert.ok(Date.now() - t0 >= 300, "the front waited for the copy");
  assert.equal(readFileSync(log, "utf8").slice(logBefore), "", "served by the front (Node logs every serve)");
  assertServed(dataA, n);
  // m: a temp that stays (a prefetcher that died mid-copy) and no entry: after its wait the front
  // hands the call to Node, which serves the archived segment.
  renameSync(join(spoolOf(dataA), m), held);
  writeFileAs(join(spoolOf(dataA), `.walmgr-tmp.${m}.test`), "");
  const r = restore(dataA, m);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.logged, new RegExp(`restored ${m} from ${completed}`));
  assertServed(dataA, m);
  rmSync(held);
  // That call started a prefetcher: stop it once it runs, so the next test starts from none.
  await stopStartedPrefetcher(dataA);
});

test("the prefetcher killed at random moments (20 rounds) leaves nothing the front would serve", async () => {
  const prefetch = join(packageRoot(), "dist", "bin", "wal-prefetch.js");
  killPrefetcher(dataA);
  await sleep(100);
  for (let round = 0; round < 20; round++) {
    for (const e of entries(dataA)) rmSync(join(spoolOf(dataA), e));
    const p = spawnAs(process.execPath, [prefetch, ini, spoolOf(dataA)], { cwd: dataA });
    await sleep(Math.floor(Math.random() * 150));
    p.child.kill("SIGKILL");
    await p.exited;
    assertEntriesVerified(dataA);
    for (const e of entries(dataA)) assert.equal(readFileSync(join(spoolOf(dataA), e)).length, SEG_SIZE);
  }
  // The next prefetcher clears the temps killed ones left, and the front serves what it spools.
  const p = spawnAs(process.execPath, [prefetch, ini, spoolOf(dataA)], { cwd: dataA });
  await waitFor("a full spool", () => entries(dataA).length === 6, 30_000, 50).catch((e: unknown) => {
    throw new Error(
      `${String(e)}: exit ${String(p.child.exitCode)} ${p.output()} ${readdirSync(spoolOf(dataA)).join(",")}`,
    );
  });
  assert.deepEqual(
    readdirSync(spoolOf(dataA)).filter((n) => n.startsWith(".walmgr-tmp.")),
    [],
    "temps of killed prefetchers are removed",
  );
  const next = entries(dataA)[0] ?? "";
  const r = restore(dataA, next);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.logged, "");
  assertServed(dataA, next);
  p.child.kill("SIGKILL");
  await p.exited;
});

test("entries altered after they were verified (one flipped byte, same size) never reach %p", async () => {
  const prefetch = join(packageRoot(), "dist", "bin", "wal-prefetch.js");
  killPrefetcher(dataA);
  await sleep(100);
  for (const e of entries(dataA)) rmSync(join(spoolOf(dataA), e));
  const p = spawnAs(process.execPath, [prefetch, ini, spoolOf(dataA)], { cwd: dataA });
  await waitFor("a full spool", () => entries(dataA).length === 6, 30_000, 50);
  // Stopped, so that nothing refills or tidies the spool behind the calls below.
  p.child.kill("SIGKILL");
  await p.exited;
  const spooled = entries(dataA);
  const altered = spooled.slice(0, 4);
  for (const [i, e] of altered.entries()) {
    const path = join(spoolOf(dataA), e);
    const data = readFileSync(path);
    const at = [0, 8191, SEG_SIZE / 2, SEG_SIZE - 1][i] ?? 0;
    data[at] = (data[at] ?? 0) ^ 0x01;
    writeFileSync(path, data); // in place: same inode, owner and size
    assert.equal(readFileSync(path).length, SEG_SIZE);
  }
  for (const e of altered) {
    const r = restore(dataA, e);
    assert.equal(r.status, 0, r.stderr);
    assertServed(dataA, e); // the archived bytes, never the altered ones
    // Not from the spool: Node found the entry altered, said so, and served the archived copy.
    assert.match(r.logged, new RegExp(`spool entry \\S*${e} not served: altered since it was verified`));
    assert.match(r.logged, new RegExp(`restored ${e} from ${completed}`));
    assert.ok(!entries(dataA).includes(e), `the altered entry ${e} is removed`);
  }
  // The entries left unaltered: each check record is what `cksum <entry` prints, and the
  // archived segment's sha256; the front still serves them.
  for (const e of spooled.slice(4)) {
    const [line, digest] = readFileSync(join(spoolOf(dataA), `.${e}.cksum`), "utf8").split("\n");
    const cksum = run("sh", ["-c", 'cksum <"$1"', "sh", join(spoolOf(dataA), e)]);
    assert.equal(line, cksum.stdout.trim(), `the check record of ${e} holds its POSIX cksum`);
    assert.equal(digest, sha(content.get(e) ?? Buffer.alloc(0)));
  }
  const intact = spooled[4] ?? "";
  const r = restore(dataA, intact);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.logged, "", "served by the shell front");
  assertServed(dataA, intact);
  await stopStartedPrefetcher(dataA).catch(() => undefined);
  killPrefetcher(dataA);
});
