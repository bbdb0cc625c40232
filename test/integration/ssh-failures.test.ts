/**
 * The ssh transport when things go wrong: the slave host down or hung (exit 6 for wal-archive,
 * 1 for wal-restore, within the timeout, never a hang), ssh killed in the middle of a transfer
 * (nothing under the final name, the retry succeeds), and a slave path built to inject a
 * command if anything spliced it into a shell line unquoted.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { binPath, makeTempDir, packageRoot, removeTempDir, run, RUN_AS, runBin, waitFor } from "../helpers/env";
import { makeSlaveDir, runSlave, TestSshd } from "../helpers/sshd";
import { writeFileAs } from "../helpers/walmgr";

let sshd: TestSshd;
let masterBase: string;
let slaveBase: string;

before(async () => {
  sshd = await TestSshd.start();
  masterBase = makeTempDir("sshfail");
  slaveBase = makeSlaveDir("sshfail-slavehost");
});

after(() => {
  sshd?.stop();
  if (masterBase) removeTempDir(masterBase);
  if (slaveBase) removeTempDir(slaveBase);
});

/** A master config whose slave directory is `host:dir`; the slave layout is made there. */
function masterIni(name: string, host: string, dir: string, extra = ""): string {
  const file = join(masterBase, `${name}.ini`);
  writeFileAs(
    file,
    `[wal-master]
job_name = ${name}
slave = ${host}:${dir}
ssh_config = ${sshd.clientConfig}
ssh_timeout = 3
restore_timeout = 3
${extra}
`,
  );
  return file;
}

function packageRootDist(): string {
  return join(packageRoot(), "dist");
}

/** The slave layout, made on the slave host by its user (a slave-side `setup`). */
function makeLayout(dir: string): void {
  const res = runSlave("mkdir", ["-p", "-m", "700", join(dir, "logs.complete"), join(dir, "logs.partial")]);
  assert.equal(res.status, 0, res.stderr);
}

function walFile(name: string, bytes: number): string {
  const file = join(masterBase, name);
  writeFileAs(file, "");
  writeFileSync(file, bytes > 0 ? randomBytes(bytes) : Buffer.alloc(0));
  return file;
}

test("a dead host: wal-archive exits 6 naming it, wal-restore answers 1, both at once", () => {
  const ini = masterIni("dead", "deadhost", join(slaveBase, "dead"));
  const src = walFile("000000010000000000000001", 1024);
  const t0 = Date.now();
  const res = runBin("wal-archive", [ini, src, "000000010000000000000001"]);
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /deadhost/);
  assert.ok(Date.now() - t0 < 10_000);
  const restore = runBin("wal-restore", [ini, "000000010000000000000001", join(masterBase, "out")]);
  assert.equal(restore.status, 1, restore.stderr);
  assert.ok(!existsSync(join(masterBase, "out")));
});

test("a hung host (accepts, never answers): exit 6 / 1 within the timeout, not a hang", () => {
  const ini = masterIni("hung", "silenthost", join(slaveBase, "hung"));
  const src = walFile("000000010000000000000002", 1024);
  let t0 = Date.now();
  const res = runBin("wal-archive", [ini, src, "000000010000000000000002"], { timeout: 60_000 });
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /silenthost/);
  assert.ok(Date.now() - t0 < 20_000, `took ${Date.now() - t0} ms`);
  t0 = Date.now();
  const restore = runBin("wal-restore", [ini, "000000010000000000000002", join(masterBase, "out2")], {
    timeout: 60_000,
  });
  assert.equal(restore.status, 1, restore.stderr);
  assert.ok(Date.now() - t0 < 20_000, `took ${Date.now() - t0} ms`);
});

test("the helper missing on the slave is a transport error naming slave_wal_ctl", () => {
  const dir = join(slaveBase, "nohelper");
  const ini = masterIni("nohelper", "walslave-test", dir, "slave_wal_ctl = /nonexistent/bin/wal-ctl");
  const src = walFile("000000010000000000000003", 1024);
  const res = runBin("wal-archive", [ini, src, "000000010000000000000003"]);
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /slave_wal_ctl/);
});

test("ssh killed mid-transfer: no file under the final name; the retry succeeds", async () => {
  const dir = join(slaveBase, "killed");
  const ini = masterIni("killed", "walslave-test", dir);
  makeLayout(dir);
  const completed = join(dir, "logs.complete");
  const name = "000000010000000000000004";
  const src = walFile(name, 256 * 1024 * 1024);
  const child = spawn(binPath("wal-archive"), [ini, src, name], {
    stdio: ["ignore", "ignore", "pipe"],
    ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  // Wait until the transfer is under way (the temp file exists on the slave), then kill ssh.
  await waitFor(
    "the transfer to start",
    () => readdirSync(completed).some((n) => n.startsWith(".walmgr-tmp.")),
    30_000,
    20,
  );
  const pg = spawnSync("pgrep", ["-P", String(child.pid), "-x", "ssh"], { encoding: "utf8" });
  const sshPid = Number(pg.stdout.trim().split("\n")[0]);
  assert.ok(sshPid > 0, `no ssh child of wal-archive: ${pg.stdout} ${pg.stderr}`);
  process.kill(sshPid, "SIGKILL");
  const code = await exited;
  assert.equal(code, 6, stderr);
  assert.match(stderr, /walslave-test/);
  assert.ok(!existsSync(join(completed, name)), "a cut transfer must not appear under its final name");
  assert.ok(!existsSync(join(completed, `.${name}.sha256`)));
  await waitFor(
    "the slave to drop the cut temp file",
    () => !readdirSync(completed).some((n) => n.startsWith(".walmgr-tmp.")),
    30_000,
  );
  const retry = runBin("wal-archive", [ini, src, name]);
  assert.equal(retry.status, 0, retry.stderr);
  const want = createHash("sha256").update(readFileSync(src)).digest("hex");
  const got = createHash("sha256")
    .update(readFileSync(join(completed, name)))
    .digest("hex");
  assert.equal(got, want);
});

test("no command injection through the slave path; archive and restore work through it", () => {
  const marker = join(slaveBase, "pwned");
  const dir = join(slaveBase, `x'; touch ${marker}; echo '$(touch ${marker})\`touch ${marker}\` "q"`);
  const ini = masterIni("inject", "walslave-test", dir);
  makeLayout(dir);
  const name = "000000010000000000000005";
  const src = walFile(name, 4096);
  const res = runBin("wal-archive", [ini, src, name]);
  assert.equal(res.status, 0, res.stderr);
  assert.ok(existsSync(join(dir, "logs.complete", name)));
  const again = runBin("wal-archive", [ini, src, name]);
  assert.equal(again.status, 0, "identical content re-archived is success");
  const out = join(masterBase, "restored");
  const restore = runBin("wal-restore", [ini, name, out]);
  assert.equal(restore.status, 0, restore.stderr);
  assert.deepEqual(readFileSync(out), readFileSync(src));
  const other = walFile("other", 4096);
  const conflict = runBin("wal-archive", [ini, other, name]);
  assert.equal(conflict.status, 8, "other content under an archived name is a conflict, passed through from the slave");
  assert.ok(!existsSync(marker), "a shell ran something from the slave path");
  assert.equal(runSlave("true", []).status, 0);
});

test("without rsync a tree goes through the helper as a stream, fsynced, private", () => {
  const src = join(masterBase, "tree");
  const dest = join(slaveBase, "tree copy 'x'");
  const script = `
    const fs = require("fs");
    fs.mkdirSync(${JSON.stringify(src)} + "/sub/deep", { recursive: true });
    fs.writeFileSync(${JSON.stringify(src)} + "/a", "alpha");
    fs.writeFileSync(${JSON.stringify(src)} + "/skip.me", "no");
    fs.writeFileSync(${JSON.stringify(src)} + "/sub/deep/b", Buffer.alloc(3 << 20, 7));
    const { SshDriver } = require(${JSON.stringify(join(packageRootDist(), "src/storage/ssh.js"))});
    const d = new SshDriver({ host: "walslave-test", remoteBin: ${JSON.stringify(binPath("wal-ctl"))}, timeout: 5,
      compression: true, sshConfig: ${JSON.stringify(sshd.clientConfig)} });
    d.putTree(${JSON.stringify(src)}, ${JSON.stringify(dest)}, (rel) => rel !== "skip.me").then(
      (s) => { process.stdout.write(JSON.stringify(s)); },
      (e) => { console.error(e); process.exit(9); });
  `;
  const res = run(process.execPath, ["-e", script], { env: { WALMGR_NO_RSYNC: "1" } });
  assert.equal(res.status, 0, res.stderr);
  const stats = JSON.parse(res.stdout) as { files: number; bytes: number; sent: number };
  assert.equal(stats.files, 2);
  assert.equal(stats.bytes, 5 + (3 << 20));
  assert.equal(readFileSync(join(dest, "a"), "utf8"), "alpha");
  assert.equal(readFileSync(join(dest, "sub/deep/b")).length, 3 << 20);
  assert.ok(!existsSync(join(dest, "skip.me")));
  assert.equal(statSync(join(dest, "a")).mode & 0o777, 0o600);
});
