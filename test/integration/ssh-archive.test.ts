/**
 * wal-archive and wal-restore over ssh attacked like the local ones (archive-races.test.ts):
 * conflicting archivers, planted symbolic links, and the slave's own stale-temp cleanup
 * running while the master archives. Against the test sshd; no PostgreSQL server needed.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chownSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempDir, packageRoot, removeTempDir, runBin, spawnBin } from "../helpers/env";
import { makeSlaveDir, runSlave, slaveUser, TestSshd } from "../helpers/sshd";
import { hostTag } from "../../src/storage/durable";
import { writeFileAs } from "../helpers/walmgr";

let sshd: TestSshd;
let masterBase: string;
let slaveBase: string;
let slaveDir: string;
let completed: string;
let ini: string;

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function source(label: string, data: Buffer): string {
  const path = join(masterBase, `src-${label}`);
  writeFileAs(path, "");
  writeFileSync(path, data);
  return path;
}

function segName(i: number): string {
  return `000000010000002B${i.toString(16).toUpperCase().padStart(8, "0")}`;
}

before(async () => {
  sshd = await TestSshd.start();
  masterBase = makeTempDir("ssharch");
  slaveBase = makeSlaveDir("ssharch-slavehost");
  slaveDir = join(slaveBase, "walshipping");
  completed = join(slaveDir, "logs.complete");
  const mk = runSlave("mkdir", ["-p", "-m", "700", completed, join(slaveDir, "logs.partial")]);
  assert.equal(mk.status, 0, mk.stderr);
  ini = join(masterBase, "master.ini");
  writeFileAs(
    ini,
    `[wal-master]\njob_name = ssharch\nslave = walslave-test:${slaveDir}\nssh_config = ${sshd.clientConfig}\nssh_timeout = 5\n`,
  );
});

after(() => {
  sshd?.stop();
  if (masterBase) removeTempDir(masterBase);
  if (slaveBase) removeTempDir(slaveBase);
});

test("conflicting archivers over ssh: one exits 0, the other 8, the winner's bytes are served (8 tries)", async () => {
  const a = randomBytes(1 << 20);
  const b = randomBytes(1 << 20);
  const srcA = source("race-a", a);
  const srcB = source("race-b", b);
  const failures: string[] = [];
  for (let i = 0; i < 8; i++) {
    const name = segName(i);
    const runs = [spawnBin("wal-archive", [ini, srcA, name]), spawnBin("wal-archive", [ini, srcB, name])];
    const codes = (await Promise.all(runs.map((r) => r.exited))).map((e) => e.status);
    assert.deepEqual(
      [...codes].sort(),
      [0, 8],
      `try ${i}: exit codes ${JSON.stringify(codes)}\n${runs.map((r) => r.output()).join("\n")}`,
    );
    const winner = codes[0] === 0 ? a : b;
    // What wal-restore checks, read where it is stored (a wal-restore per try costs ssh calls).
    assert.equal(
      sha(readFileSync(join(completed, name))),
      sha(winner),
      `try ${i}: the stored file is not the winner's`,
    );
    const sum = readFileSync(join(completed, `.${name}.sha256`), "utf8");
    if (sum !== `${sha(winner)}  ${name}\n`) failures.push(`try ${i}: the checksum is not the winner's`);
  }
  // And wal-restore itself, through ssh, serves the last winner's bytes verified.
  const out = join(masterBase, "restored-race");
  const res = runBin("wal-restore", [ini, segName(7), out]);
  if (res.status !== 0) failures.push(`wal-restore exit ${String(res.status)}: ${res.stderr.trim()}`);
  else assert.doesNotMatch(res.stderr, /unverified/, "the winner's file must carry its checksum");
  assert.equal(
    failures.length,
    0,
    `the winner's segment was unrestorable in ${failures.length} of 8 tries:\n${failures.slice(0, 3).join("\n")}`,
  );
});

test("over ssh, wal-restore refuses a symlink planted in completed_wals; wal-archive refuses a dangling one", () => {
  const planted = segName(0x100);
  const target = join(slaveBase, "elsewhere");
  assert.equal(
    runSlave("sh", ["-c", 'head -c 8192 /dev/urandom > "$1" && ln -s "$1" "$2"', "-", target, join(completed, planted)])
      .status,
    0,
  );
  const out = join(masterBase, "restored-symlink");
  const res = runBin("wal-restore", [ini, planted, out]);
  assert.equal(res.status, 9, `exit ${String(res.status)}: ${res.stderr}`);
  assert.match(res.stderr, /symbolic link/);
  assert.ok(!existsSync(out), "nothing may be written at %p");

  const dangling = segName(0x101);
  assert.equal(runSlave("ln", ["-s", join(slaveBase, "nowhere"), join(completed, dangling)]).status, 0);
  const arch = runBin("wal-archive", [ini, source("dangling", randomBytes(8192)), dangling]);
  assert.equal(arch.status, 9, arch.stderr);
  assert.match(arch.stderr, /symbolic link/);
  assert.ok(arch.stderr.includes(join(completed, dangling)), arch.stderr);
  assert.ok(!existsSync(join(completed, `.${dangling}.sha256`)), "no orphan checksum may be left");
  assert.ok(!existsSync(join(slaveBase, "nowhere")), "nothing may be written through the link");
});

test("over ssh, wal-restore refuses a segment and its checksum planted by another user on the slave host", () => {
  const planted = segName(0x102);
  const data = randomBytes(8192);
  const file = join(completed, planted);
  const sum = join(completed, `.${planted}.sha256`);
  writeFileSync(file, data, { mode: 0o644 });
  writeFileSync(sum, `${sha(data)}  ${planted}\n`, { mode: 0o644 });
  const nobody = Number(spawnSync("id", ["-u", "nobody"], { encoding: "utf8" }).stdout.trim());
  for (const f of [file, sum]) chownSync(f, nobody, nobody);
  const out = join(masterBase, "restored-planted");
  const res = runBin("wal-restore", [ini, planted, out]);
  assert.equal(res.status, 9, `exit ${String(res.status)}: ${res.stderr}`);
  // Judged on the slave host, by the helper: its user is the one that must own the files.
  assert.match(
    res.stderr,
    new RegExp(`${planted}(\\.sha256)? could have been written by another user \\(owned by nobody`),
  );
  assert.match(res.stderr, new RegExp(`chown ${slaveUser()?.name ?? ""}`));
  assert.ok(!existsSync(out), "nothing may be written at %p");
});

test("over ssh a dead writer's temp goes on the way in; the slave's cleanup, run all the while, never takes a live one", async () => {
  // Litter of a killed writer on the slave host (its pid is gone): the next archive removes it.
  const deadPid = spawnSync("true").pid;
  const litter = join(completed, `.walmgr-tmp.${segName(0x2ff)}.${deadPid}-1@${hostTag()}`);
  assert.equal(runSlave("sh", ["-c", 'head -c 4096 /dev/zero > "$1"', "-", litter]).status, 0);
  const first = runBin("wal-archive", [ini, source("litter", randomBytes(8192)), segName(0x1ff)]);
  assert.equal(first.status, 0, first.stderr);
  assert.ok(!existsSync(litter), "the dead writer's temp on the slave must be gone");
  // A cleaner on the slave host, as its user, sweeping completed_wals as fast as it can (what a
  // slave-side setup or backup does once): it must only ever take dead writers' temps.
  const durable = join(packageRoot(), "dist", "src", "storage", "durable.js");
  const u = slaveUser();
  const cleaner: ChildProcess = spawn(
    process.execPath,
    [
      "-e",
      `const { removeStaleTemps } = require(${JSON.stringify(durable)});
       const dir = ${JSON.stringify(completed)};
       let sweeps = 0;
       process.on("SIGTERM", () => { process.stdout.write(String(sweeps)); process.exit(0); });
       (function loop() { removeStaleTemps(dir); sweeps++; setImmediate(loop); })();`,
    ],
    { stdio: ["ignore", "pipe", "inherit"], ...(u ? { uid: u.uid, gid: u.gid } : {}) },
  );
  let sweeps = "";
  cleaner.stdout?.on("data", (c: Buffer) => (sweeps += c.toString()));
  const cleanerDone = new Promise((r) => cleaner.once("close", r));
  const results: string[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const name = segName(0x200 + i);
      const data = randomBytes(4 << 20);
      const res = runBin("wal-archive", [ini, source(`clean-${i}`, data), name]);
      if (res.status !== 0) {
        results.push(`${name}: exit ${String(res.status)}: ${res.stderr.trim()}`);
        continue;
      }
      assert.equal(sha(readFileSync(join(completed, name))), sha(data));
    }
  } finally {
    cleaner.kill("SIGTERM");
    await cleanerDone;
  }
  assert.ok(Number(sweeps) > 10, `the cleaner ran (${sweeps} sweeps)`);
  assert.deepEqual(results, [], "archives failed because the slave's cleanup took their staged segment");
});
