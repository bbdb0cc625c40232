/**
 * The ssh session and connection sharing against a real sshd (test/helpers/sshd.ts): one
 * helper session per command, the helper killed mid-session, a login script that prints junk,
 * a host key mismatch, and ControlMaster/ControlPersist: a folder that cannot be used or a stale
 * socket falls back with one warning, and a shared master never holds the caller's pipes (so a
 * caller waiting for our exit, like PostgreSQL's archiver, does not hang).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { binPath, packageRoot, run, RUN_AS, runBin, waitFor } from "../helpers/env";
import { SshSite } from "../helpers/remote";
import { runSlave, type TestSshd } from "../helpers/sshd";
import { writeFileAs } from "../helpers/walmgr";

let site: SshSite;
let sshd: TestSshd;
let masterBase: string;
let slaveBase: string;

before(async () => {
  site = await SshSite.start("sshsess");
  ({ sshd, masterBase, slaveBase } = site);
});

after(() => site?.stop());

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** The control socket path the driver uses for `host` (computed by the driver's own code). */
function controlPathFor(host: string, dir: string): string {
  const script = `
    const { SshTransport } = require(${JSON.stringify(join(packageRoot(), "dist/src/storage/ssh/transport.js"))});
    const t = new SshTransport({ host: ${JSON.stringify(host)}, remoteBin: "x", timeout: 5, compression: false,
      sshConfig: ${JSON.stringify(sshd.clientConfig)} });
    process.stdout.write(t.controlPath(${JSON.stringify(dir)}));`;
  const r = run(process.execPath, ["-e", script]);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

function warnings(stderr: string): string[] {
  return stderr.split("\n").filter((l) => /WARNING/.test(l) && /connection sharing/.test(l));
}

test("a login script that prints junk: exit 6 naming the cause and the junk, nothing stored", () => {
  const dir = join(slaveBase, "junk");
  const completed = site.makeLayout(dir);
  const ini = site.masterIni("junk", "junkhost", dir, "ssh_control_persist = 0");
  const name = "000000010000000000000001";
  const src = site.walFile(name, 4096);
  const res = runBin("wal-archive", [ini, src, name]);
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /Welcome to the slave host/);
  assert.match(res.stderr, /login script/);
  assert.match(res.stderr, /junkhost/);
  assert.doesNotMatch(res.stderr, /internal error/);
  assert.deepEqual(readdirSync(completed), []);
  const restore = runBin("wal-restore", [ini, name, join(masterBase, "junk-out")]);
  assert.equal(restore.status, 1, "wal-restore answers not available (the standby retries)");
  assert.match(restore.stderr, /login script/);
});

test("a host key mismatch: exit 6 naming the host", () => {
  const dir = join(slaveBase, "wrongkey");
  site.makeLayout(dir);
  const ini = site.masterIni("wrongkey", "wrongkeyhost", dir);
  const name = "000000010000000000000002";
  const src = site.walFile(name, 4096);
  const res = runBin("wal-archive", [ini, src, name], { env: { XDG_RUNTIME_DIR: site.runtimeDir("wrongkey") } });
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /wrongkeyhost/);
  assert.match(res.stderr, /[Hh]ost key/);
  assert.ok(!existsSync(join(dir, "logs.complete", name)));
});

test("the helper killed mid-transfer: exit 6 naming the host, nothing under the final name; the retry succeeds", async () => {
  const dir = join(slaveBase, "helperkill");
  const completed = site.makeLayout(dir);
  const ini = site.masterIni("helperkill", "walslave-test", dir, "ssh_control_persist = 0");
  const name = "000000010000000000000003";
  const src = site.walFile(name, 256 * 1024 * 1024);
  const child = spawn(binPath("wal-archive"), [ini, src, name], {
    stdio: ["ignore", "ignore", "pipe"],
    ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  // The temp file is named after the helper that writes it: .walmgr-tmp.NAME.PID-START@HOST.
  const tmp: string = await waitFor<string>(
    "the transfer to start",
    () => readdirSync(completed).find((n) => n.startsWith(".walmgr-tmp.")) as string,
    30_000,
    20,
  );
  const pid = Number(/\.(\d+)(?:-[^.@]*)?@/.exec(tmp)?.[1]);
  assert.ok(pid > 0, `no helper pid in ${tmp}`);
  process.kill(pid, "SIGKILL");
  const code = await exited;
  assert.equal(code, 6, stderr);
  assert.match(stderr, /walslave-test/);
  assert.doesNotMatch(stderr, /internal error/);
  assert.ok(!existsSync(join(completed, name)), "a cut transfer must not appear under its final name");
  const retry = runBin("wal-archive", [ini, src, name]);
  assert.equal(retry.status, 0, retry.stderr);
  assert.equal(sha(join(completed, name)), sha(src));
  assert.deepEqual(
    readdirSync(completed).filter((n) => n.startsWith(".walmgr-tmp.")),
    [],
    "the dead helper's temp is removed by the retry",
  );
});

test("the helper killed between requests of a session: that request fails (exit 6), a new session works", async () => {
  const dir = join(slaveBase, "midsession");
  site.makeLayout(dir);
  const script = `
    const { SshDriver } = require(${JSON.stringify(join(packageRoot(), "dist/src/storage/ssh/driver.js"))});
    const d = new SshDriver({ host: "walslave-test", remoteBin: ${JSON.stringify(binPath("wal-ctl"))}, timeout: 5,
      compression: false, sshConfig: ${JSON.stringify(sshd.clientConfig)}, controlPersist: 0 });
    const line = () => new Promise((r) => process.stdin.once("data", r));
    (async () => {
      const out = {};
      out.first = await d.info(${JSON.stringify(dir)});
      out.pid = (await d.result("probe", [])).pid;
      process.stderr.write("PID " + out.pid + "\\n");
      await line(); // the test kills the helper now
      try { await d.info(${JSON.stringify(dir)}); out.second = "ok"; } catch (e) { out.second = { code: e.exitCode, message: e.message }; }
      out.third = await d.info(${JSON.stringify(dir)});
      out.pid2 = (await d.result("probe", [])).pid;
      process.stdout.write(JSON.stringify(out));
      process.exit(0);
    })().catch((e) => { console.error(e); process.exit(9); });`;
  const child = spawn(process.execPath, ["-e", script], {
    stdio: ["pipe", "pipe", "pipe"],
    ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid, env: { ...process.env, HOME: "/tmp" } } : {}),
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const pid = await waitFor<number>("the session to start", () => Number(/PID (\d+)/.exec(stderr)?.[1] ?? 0), 30_000);
  process.kill(pid, "SIGKILL");
  await waitFor("the helper to be gone", () => !existsSync(`/proc/${pid}`), 10_000);
  child.stdin.end("go\n");
  assert.equal(await exited, 0, stderr);
  const out = JSON.parse(stdout) as {
    first: { isDirectory: boolean };
    second: { code: number; message: string } | string;
    third: { isDirectory: boolean };
    pid: number;
    pid2: number;
  };
  assert.equal(out.first.isDirectory, true);
  assert.equal(typeof out.second, "object", "a request to a killed helper cannot succeed");
  assert.equal((out.second as { code: number }).code, 6);
  assert.match((out.second as { message: string }).message, /walslave-test/);
  assert.equal(out.third.isDirectory, true, "the next request starts a new session");
  assert.notEqual(out.pid2, out.pid);
});

test("one session per command: wal-archive starts one ssh and one helper", () => {
  const dir = join(slaveBase, "onesession");
  site.makeLayout(dir);
  const log = join(masterBase, "ssh-calls.log");
  const wrapDir = join(masterBase, "wrapbin");
  mkdirSync(wrapDir, { recursive: true, mode: 0o755 });
  const wrapper = join(wrapDir, "ssh");
  writeFileSync(wrapper, `#!/bin/sh\necho call >> ${log}\nexec /usr/bin/ssh "$@"\n`, { mode: 0o755 });
  writeFileAs(log, "");
  const ini = site.masterIni("onesession", "walslave-test", dir, "ssh_control_persist = 0");
  const name = "000000010000000000000004";
  const src = site.walFile(name, 1 << 20);
  const env = { PATH: `${wrapDir}:${process.env.PATH ?? "/usr/bin:/bin"}` };
  const res = runBin("wal-archive", [ini, src, name], { env });
  assert.equal(res.status, 0, res.stderr);
  const restore = runBin("wal-restore", [ini, name, join(masterBase, "onesession-out")], { env });
  assert.equal(restore.status, 0, restore.stderr);
  assert.equal(sha(join(masterBase, "onesession-out")), sha(src));
  assert.equal(readFileSync(log, "utf8").trim().split("\n").length, 2, "one ssh for wal-archive, one for wal-restore");
});

test("connection sharing: the master never holds the caller's pipes or process group; reused by the next call", () => {
  const dir = join(slaveBase, "share");
  const completed = site.makeLayout(dir);
  const ini = site.masterIni("share", "walslave-test", dir); // ssh_control_persist: default 60
  const xdg = site.runtimeDir("share");
  const src = site.walFile("000000010000000000000005", 1 << 20);
  const t0 = Date.now();
  // spawnSync waits for stdout/stderr to close: a master holding them would block it for 60 s.
  const res = runBin("wal-archive", [ini, src, "000000010000000000000005"], {
    env: { XDG_RUNTIME_DIR: xdg },
    timeout: 40_000,
  });
  const took = Date.now() - t0;
  assert.equal(res.status, 0, `${res.stderr} (signal ${String(res.signal)})`);
  assert.ok(took < 20_000, `wal-archive took ${took} ms: something held its pipes`);
  assert.deepEqual(warnings(res.stderr), []);
  const sock = controlPathFor("walslave-test", join(xdg, "walmgr-ssh"));
  assert.ok(lstatSync(sock).isSocket(), "the control socket is in the private runtime folder");
  assert.equal(lstatSync(join(xdg, "walmgr-ssh")).mode & 0o777, 0o700);
  const check = run("ssh", ["-F", sshd.clientConfig, "-o", `ControlPath=${sock}`, "-O", "check", "walslave-test"]);
  const pid = Number(/pid=(\d+)/.exec(check.stderr + check.stdout)?.[1]);
  assert.ok(pid > 0, `no master: ${check.stderr}`);
  try {
    for (const fd of [0, 1, 2]) {
      assert.equal(readlinkSync(`/proc/${pid}/fd/${fd}`), "/dev/null", `the master's fd ${fd}`);
    }
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const [pgrp, sid] = [Number(fields[2]), Number(fields[3])];
    assert.equal(sid, pid, "the master leads its own session (not the caller's process group)");
    assert.equal(pgrp, pid);
    // The next call goes through the master: no new ssh connection is authenticated.
    const again = runBin("wal-archive", [ini, src, "000000010000000000000006"], { env: { XDG_RUNTIME_DIR: xdg } });
    assert.equal(again.status, 0, again.stderr);
    assert.equal(sha(join(completed, "000000010000000000000006")), sha(src));
  } finally {
    run("ssh", ["-F", sshd.clientConfig, "-o", `ControlPath=${sock}`, "-O", "exit", "walslave-test"]);
  }
});

test("a ControlPath folder that is not writable: one warning, a plain connection, archived", () => {
  const dir = join(slaveBase, "nowrite");
  const completed = site.makeLayout(dir);
  const ini = site.masterIni("nowrite", "walslave-test", dir);
  const xdg = site.runtimeDir("nowrite");
  const ctl = join(xdg, "walmgr-ssh");
  mkdirSync(ctl, { mode: 0o500 });
  chmodSync(ctl, 0o500);
  if (RUN_AS) chownSync(ctl, RUN_AS.uid, RUN_AS.gid);
  const name = "000000010000000000000007";
  const src = site.walFile(name, 1 << 20);
  const res = runBin("wal-archive", [ini, src, name], { env: { XDG_RUNTIME_DIR: xdg } });
  assert.equal(res.status, 0, res.stderr);
  assert.equal(warnings(res.stderr).length, 1, res.stderr);
  assert.match(res.stderr, new RegExp(ctl.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  assert.equal(sha(join(completed, name)), sha(src));
  assert.deepEqual(readdirSync(ctl), []);
});

test("a stale control socket: one warning, a plain connection, the socket removed; the next call shares again", () => {
  const dir = join(slaveBase, "stale");
  const completed = site.makeLayout(dir);
  const ini = site.masterIni("stale", "walslave-test", dir);
  const xdg = site.runtimeDir("stale");
  const ctl = join(xdg, "walmgr-ssh");
  mkdirSync(ctl, { mode: 0o700 });
  if (RUN_AS) chownSync(ctl, RUN_AS.uid, RUN_AS.gid);
  const sock = controlPathFor("walslave-test", ctl);
  // A socket nobody listens on: what an ssh master killed with -9 leaves.
  const mk = run("python3", ["-c", "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])", sock]);
  assert.equal(mk.status, 0, mk.stderr);
  assert.ok(lstatSync(sock).isSocket());
  const name = "000000010000000000000008";
  const src = site.walFile(name, 1 << 20);
  const res = runBin("wal-archive", [ini, src, name], { env: { XDG_RUNTIME_DIR: xdg } });
  assert.equal(res.status, 0, res.stderr);
  assert.equal(warnings(res.stderr).length, 1, res.stderr);
  assert.match(res.stderr, /stale/);
  assert.equal(sha(join(completed, name)), sha(src));
  assert.ok(!existsSync(sock), "the stale socket is removed");
  const next = runBin("wal-archive", [ini, src, "000000010000000000000009"], { env: { XDG_RUNTIME_DIR: xdg } });
  assert.equal(next.status, 0, next.stderr);
  assert.deepEqual(warnings(next.stderr), []);
  try {
    assert.ok(lstatSync(sock).isSocket(), "a new master shares the connection again");
  } finally {
    run("ssh", ["-F", sshd.clientConfig, "-o", `ControlPath=${sock}`, "-O", "exit", "walslave-test"]);
  }
});

test("a request longer than ssh_timeout (a manifest of a big tree) lives on the helper's progress frames", () => {
  const dir = join(slaveBase, "bigtree");
  // 48 sparse files of 64 MiB: hashing them takes several seconds (3 GiB; about 7 s on an idle
  // 2-core machine), each one well under ssh_timeout.
  const mk = runSlave("sh", [
    "-c",
    `mkdir -p '${dir}/sub' && for i in $(seq 1 48); do truncate -s 64M '${dir}/sub/f'$i; done`,
  ]);
  assert.equal(mk.status, 0, mk.stderr);
  const script = `
    const { SshDriver } = require(${JSON.stringify(join(packageRoot(), "dist/src/storage/ssh/driver.js"))});
    const d = new SshDriver({ host: "walslave-test", remoteBin: ${JSON.stringify(binPath("wal-ctl"))}, timeout: 2,
      compression: false, sshConfig: ${JSON.stringify(sshd.clientConfig)}, controlPersist: 0 });
    (async () => {
      await d.info(${JSON.stringify(dir)}); // the session is up: what follows is the manifest alone
      const t0 = Date.now();
      const m = await d.manifest(${JSON.stringify(dir)});
      process.stdout.write(JSON.stringify({ files: Object.keys(m.files).length, ms: Date.now() - t0 }));
      process.exit(0);
    })().catch((e) => { console.error(e.message); process.exit(e.exitCode ?? 9); });`;
  const r = run(process.execPath, ["-e", script]);
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { files: number; ms: number };
  assert.equal(out.files, 48);
  assert.ok(out.ms > 2000, `the manifest took ${out.ms} ms, not longer than ssh_timeout: make the tree bigger`);
});
