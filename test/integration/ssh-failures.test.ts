/**
 * The ssh transport when things go wrong: the slave host down or hung (exit 6 for wal-archive,
 * 1 for wal-restore, within the timeout, never a hang), ssh killed in the middle of a transfer
 * (nothing under the final name, the retry succeeds), a slave path built to inject a command if
 * anything spliced it into a shell line unquoted, a helper that stalls or trickles mid-answer
 * (exit 6 within the bound, nothing of the session left), and a helper of another build (exit 6
 * naming both versions, nothing run).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { binPath, packageRoot, run, RUN_AS, runBin, spawnBin, waitFor } from "../helpers/env";
import { SshSite } from "../helpers/remote";
import { runSlave, type TestSshd } from "../helpers/sshd";
import { killPlanted, pidsMatching, plantedLog, plantHelper } from "../helpers/fake-helper";
import { helloOf } from "../../src/storage/ssh/protocol";

let site: SshSite;
let sshd: TestSshd;
let masterBase: string;
let slaveBase: string;

before(async () => {
  site = await SshSite.start("sshfail", { timeout: 3 });
  ({ sshd, masterBase, slaveBase } = site);
});

after(() => site?.stop());

function packageRootDist(): string {
  return join(packageRoot(), "dist");
}

test("a dead host: wal-archive exits 6 naming it, wal-restore answers 1, both at once", () => {
  const ini = site.masterIni("dead", "deadhost", join(slaveBase, "dead"));
  const src = site.walFile("000000010000000000000001", 1024);
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
  const ini = site.masterIni("hung", "silenthost", join(slaveBase, "hung"));
  const src = site.walFile("000000010000000000000002", 1024);
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
  const ini = site.masterIni("nohelper", "walslave-test", dir, "slave_wal_ctl = /nonexistent/bin/wal-ctl");
  const src = site.walFile("000000010000000000000003", 1024);
  const res = runBin("wal-archive", [ini, src, "000000010000000000000003"]);
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /slave_wal_ctl/);
});

test("ssh killed mid-transfer: no file under the final name; the retry succeeds", async () => {
  const dir = join(slaveBase, "killed");
  const ini = site.masterIni("killed", "walslave-test", dir);
  site.makeLayout(dir);
  const completed = join(dir, "logs.complete");
  const name = "000000010000000000000004";
  const src = site.walFile(name, 256 * 1024 * 1024);
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
  const ini = site.masterIni("inject", "walslave-test", dir);
  site.makeLayout(dir);
  const name = "000000010000000000000005";
  const src = site.walFile(name, 4096);
  const res = runBin("wal-archive", [ini, src, name]);
  assert.equal(res.status, 0, res.stderr);
  assert.ok(existsSync(join(dir, "logs.complete", name)));
  const again = runBin("wal-archive", [ini, src, name]);
  assert.equal(again.status, 0, "identical content re-archived is success");
  const out = join(masterBase, "restored");
  const restore = runBin("wal-restore", [ini, name, out]);
  assert.equal(restore.status, 0, restore.stderr);
  assert.deepEqual(readFileSync(out), readFileSync(src));
  const other = site.walFile("other", 4096);
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
    const { SshDriver } = require(${JSON.stringify(join(packageRootDist(), "src/storage/ssh/driver.js"))});
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

/** Runs one of our executables, killed after `limitMs` (code null then): a hang fails, not blocks. */
async function runBounded(
  name: string,
  args: string[],
  env: Record<string, string>,
  limitMs: number,
): Promise<{ code: number | null; stderr: string }> {
  const s = spawnBin(name, args, { env });
  const timer = setTimeout(() => s.child.kill("SIGKILL"), limitMs);
  const { status } = await s.exited;
  clearTimeout(timer);
  return { code: status, stderr: s.output() };
}

/**
 * wal-archive against a planted helper that stalls (or trickles) mid-frame, ssh_timeout = 5:
 * exit 6 within 3 × ssh_timeout naming the host and what timed out, and no ssh process of the
 * run left. `sharing`: "plain" (no connection sharing), "own" (this run's ssh starts the shared
 * connection's master: it is stopped too, its socket removed), "shared" (a master an earlier
 * command started: it stays, for the other commands that share it).
 */
async function stalledArchive(mode: "stall" | "trickle", sharing: "plain" | "own" | "shared"): Promise<void> {
  const dir = join(slaveBase, `${mode}-${sharing}`);
  site.makeLayout(dir);
  const fake = plantHelper(slaveBase, mode);
  const xdg = site.runtimeDir(`${mode}-${sharing}`);
  const persist = `ssh_control_persist = ${sharing === "plain" ? 0 : 60}`;
  const ini = site.masterIni(`${mode}${sharing}`, "walslave-test", dir, `slave_wal_ctl = ${fake.path}\n${persist}`, 5);
  const name = "00000001000000000000003A";
  const src = site.walFile(`${mode}-${sharing}-${name}`, 4096);
  const socketDir = join(xdg, "walmgr-ssh");
  const masterOf = (): number | undefined => {
    const [sock] = existsSync(socketDir) ? readdirSync(socketDir) : [];
    if (sock === undefined) return undefined;
    const c = run("ssh", [
      "-F",
      sshd.clientConfig,
      "-o",
      `ControlPath=${join(socketDir, sock)}`,
      "-O",
      "check",
      "walslave-test",
    ]);
    const pid = Number(/pid=(\d+)/.exec(c.stderr + c.stdout)?.[1]);
    return pid > 0 ? pid : undefined;
  };
  // Every ssh of the run names the planted helper in its command line (the remote command); a
  // master forked off for connection sharing retitles itself "ssh: CONTROL_PATH [mux]", and the
  // control path is in this test's runtime folder.
  const sshPids = (): number[] =>
    [...pidsMatching(fake.path), ...pidsMatching(xdg)].filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "ssh";
      } catch {
        return false;
      }
    });
  let before: number | undefined;
  try {
    if (sharing === "shared") {
      // An earlier command (with the real helper) leaves a master for the next ones.
      const real = site.masterIni(`${mode}${sharing}-real`, "walslave-test", dir, persist, 5);
      const first = runBin("wal-archive", [real, site.walFile(`${mode}-first`, 4096), "000000010000000000000039"], {
        env: { XDG_RUNTIME_DIR: xdg },
      });
      assert.equal(first.status, 0, first.stderr);
      before = masterOf();
      assert.ok(before !== undefined, "a shared master is running");
    }
    const ours = (): number[] => sshPids().filter((pid) => pid !== before);
    const t0 = Date.now();
    const res = await runBounded("wal-archive", [ini, src, name], { XDG_RUNTIME_DIR: xdg }, 60_000);
    const took = Date.now() - t0;
    assert.equal(res.code, 6, `exit ${String(res.code)} after ${took} ms: ${res.stderr}`);
    assert.ok(took < 15_000, `took ${took} ms, more than 3 × ssh_timeout`);
    assert.match(res.stderr, /walslave-test/);
    assert.match(res.stderr, /the request `stat [^`]*logs\.complete` got no complete answer/, "names what timed out");
    assert.match(res.stderr, /ssh_timeout = 5/);
    assert.deepEqual(
      plantedLog(fake.log).filter((v) => v !== "hello"),
      ["stat"],
    );
    // Nothing of the run stays: neither our ssh nor a master it started.
    await waitFor("the run's ssh processes to be gone", () => ours().length === 0, 3_000, 100).catch(() => {
      throw new Error(`ssh processes of the run still alive: ${ours().join(", ")}`);
    });
    if (sharing === "own") assert.deepEqual(readdirSync(socketDir), [], "the master removed its socket");
    if (sharing === "shared") assert.equal(masterOf(), before, "the master of the earlier command stays");
  } finally {
    for (const pid of sshPids()) process.kill(pid, "SIGKILL");
    killPlanted(fake.path);
  }
}

test("a helper that announces a longer answer than it sends, then stalls: exit 6 within the bound, its master stopped", async () => {
  await stalledArchive("stall", "own");
});

test("the same through a master an earlier command started: exit 6 within the bound, that master stays", async () => {
  await stalledArchive("stall", "shared");
});

test("a helper that trickles an answer one byte at a time (plain connection): exit 6 within the bound", async () => {
  await stalledArchive("trickle", "plain");
});

/** wal-archive through a planted helper `mode`: its exit, stderr, and the verbs the helper got. */
function archiveThrough(mode: "other" | "old" | "usage"): { code: number | null; stderr: string; got: string[] } {
  const dir = join(slaveBase, `version-${mode}`);
  const completed = join(dir, "logs.complete");
  site.makeLayout(dir);
  const fake = plantHelper(slaveBase, mode);
  const ini = site.masterIni(`version${mode}`, "walslave-test", dir, `slave_wal_ctl = ${fake.path}`);
  const name = "00000001000000000000004B";
  const res = runBin("wal-archive", [ini, site.walFile(`${mode}-${name}`, 4096), name], { timeout: 60_000 });
  assert.ok(!existsSync(join(completed, name)), "nothing archived");
  return { code: res.status, stderr: res.stderr, got: plantedLog(fake.log) };
}

test("a slave-side helper of another build: exit 6 naming both versions, before any request runs", () => {
  const own = helloOf();
  const r = archiveThrough("other");
  assert.equal(r.code, 6, r.stderr);
  assert.match(
    r.stderr,
    /version mismatch: slave host walslave-test runs walmgr-ts helper protocol 3 \(version 9\.9\.9/,
  );
  assert.match(
    r.stderr,
    new RegExp(`this master speaks protocol ${own.protocol} \\(version ${own.version.replace(/\./g, "\\.")}`),
  );
  assert.match(r.stderr, /install the same walmgr-ts version on both hosts/);
  assert.deepEqual(r.got, ["hello"], "only the hello reached it");
});

test("a slave-side helper from before the hello: exit 6 saying it is older, before any request runs", () => {
  const r = archiveThrough("old");
  assert.equal(r.code, 6, r.stderr);
  assert.match(
    r.stderr,
    /version mismatch: slave host walslave-test runs walmgr-ts helper protocol 1 \(an older version/,
  );
  assert.match(r.stderr, /install the same walmgr-ts version on both hosts/);
  assert.deepEqual(r.got, ["hello"], "only the hello reached it");
});

test("a helper answer that is a usage error (a request of another build): exit 6 with a version hint, never 2", () => {
  const r = archiveThrough("usage");
  assert.equal(r.code, 6, r.stderr);
  assert.match(
    r.stderr,
    /walslave-test: helper: put takes 2 string arguments \(path, exclusive\) \(version mismatch\?\)/,
  );
  assert.match(r.stderr, /install the same walmgr-ts version on both hosts/);
  assert.ok(r.got.includes("put"), r.got.join(","));
});
