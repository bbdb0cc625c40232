/** The ssh driver's command lines: quoting, refusals, options (no sshd needed here). */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { ConfigError, ExitCode, IoError, TransportError } from "../../src/errors";
import { HELPER_COMMAND, HELPER_VERBS } from "../../src/storage/ssh/verbs";
import { remoteCommand, SshDriver } from "../../src/storage/ssh/driver";

const opts = { host: "slave", remoteBin: "/opt/walmgr ts/bin/wal-ctl", timeout: 10, compression: false };

describe("remote command quoting", () => {
  const nasty = [
    "/plain/path",
    "/with space/and 'quote'",
    "$(touch /tmp/x)",
    "`id`",
    '"double" \\ back',
    "a;b|c&d>e<f",
    "-starts-with-dash",
    "*glob?[x]",
    "",
    "tab\there",
    "üñï",
  ];
  test("every word reaches the remote program exactly as given", () => {
    const line = remoteCommand(["printf", "%s\\0", ...nasty]);
    const res = spawnSync("/bin/sh", ["-c", line], { encoding: "utf8" });
    assert.equal(res.status, 0, res.stderr);
    assert.deepEqual(res.stdout.split("\0").slice(0, -1), nasty);
  });
  test("NUL and line breaks are refused, not passed", () => {
    assert.throws(() => remoteCommand(["a\nb"]), IoError);
    assert.throws(() => remoteCommand(["a\rb"]), IoError);
    assert.throws(() => remoteCommand(["a\0b"]), IoError);
  });
});

describe("SshDriver options", () => {
  test("host names that could pass for options or carry shell text are refused", () => {
    for (const host of ["-oProxyCommand=x", "a b", "h;id", "$(x)", ""]) {
      assert.throws(() => new SshDriver({ ...opts, host }), ConfigError, host);
    }
    for (const host of ["slave", "postgres@slave.example.com", "10.0.0.1", "slave-1_b.example"]) {
      assert.doesNotThrow(() => new SshDriver({ ...opts, host }));
    }
  });
  test("ssh is non-interactive with a connect timeout and keep-alives; -C only with compression", () => {
    const args = new SshDriver(opts).transport.sshArgs();
    assert.ok(args.includes("BatchMode=yes"));
    assert.ok(args.includes("ConnectTimeout=10"));
    assert.ok(args.some((a) => a.startsWith("ServerAliveInterval=")));
    assert.ok(!args.includes("-C"));
    assert.ok(new SshDriver({ ...opts, compression: true }).transport.sshArgs().includes("-C"));
    const withConfig = new SshDriver({ ...opts, sshConfig: "/etc/my ssh/config" });
    assert.deepEqual(withConfig.transport.sshArgs().slice(0, 2), ["-F", "/etc/my ssh/config"]);
    assert.match(withConfig.rsyncShell(), /^ssh -F "\/etc\/my ssh\/config" /);
  });
});

test("bin/wal-ctl routes the helper session command to the helper bundle", () => {
  const shim = readFileSync(join(__dirname, "..", "..", "..", "bin", "wal-ctl"), "utf8");
  // argv[3] (a[1] after CONFIG) is the command; a request for help goes to wal-ctl's pages.
  assert.match(shim, new RegExp(`a\\[1\\] === "${HELPER_COMMAND}"`));
});

test("wal-ctl --help lists every helper verb from the one list", () => {
  const help = spawnSync(process.execPath, [join(__dirname, "..", "..", "..", "bin", "wal-ctl"), "--help"], {
    encoding: "utf8",
  });
  assert.equal(help.status, 0, help.stderr);
  for (const v of Object.keys(HELPER_VERBS)) assert.match(help.stdout, new RegExp(`^ +${v}\\b`, "m"), v);
});

describe("answers of the helper are checked before any name is joined to a path", () => {
  /** A driver whose session answers every request with `r` (a crafted answer, as a hostile helper would give). */
  function answering(r: unknown): SshDriver {
    const d = new SshDriver(opts);
    const session = { alive: true, hopeless: false, request: () => Promise.resolve({ r }) };
    (d as unknown as { session: Promise<unknown> }).session = Promise.resolve(session);
    return d;
  }
  const refused = (err: unknown): boolean => err instanceof TransportError && err.exitCode === ExitCode.TRANSPORT;

  test("a listing holding '..', '.', '', a name with '/' or NUL, or a non-string is refused (exit 6)", async () => {
    for (const bad of ["..", ".", "", "../etc", "a/b", "/abs", "x\0y", 42]) {
      await assert.rejects(
        answering(["000000010000000000000001", bad]).list("/slave/logs.complete"),
        refused,
        String(bad),
      );
    }
    await assert.rejects(answering({ not: "a list" }).list("/slave"), refused);
  });

  test("a plain listing passes as it is (a backslash is an ordinary character in a name)", async () => {
    const names = ["000000010000000000000001", ".000000010000000000000001.sha256", "odd\\name", "..hidden"];
    assert.deepEqual(await answering(names).list("/slave/logs.complete"), names);
    assert.equal(await answering(null).list("/slave/none"), undefined);
  });

  test("a manifest naming a path outside its tree is refused (exit 6); a good one passes", async () => {
    const entry = { size: 1, sha256: "0".repeat(64) };
    for (const bad of ["../outside/x", "/etc/shadow", "a/../../x", "a//b", "./a", "a\\..\\x"]) {
      await assert.rejects(answering({ files: { [bad]: entry } }).manifest("/slave/set"), refused, bad);
    }
    await assert.rejects(answering({ files: { a: { size: "1" } } }).manifest("/slave/set"), refused);
    const good = { files: { PG_VERSION: entry, "base/1/112": entry } };
    assert.deepEqual(await answering(good).manifest("/slave/set"), good);
  });
});
