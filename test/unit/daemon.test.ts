/** Pure parts of the sync daemon: backoff, periodic scheduling and outcome, page checks, pidfile. */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { backoffSeconds, MAX_BACKOFF_SEC } from "../../src/command/sync/daemon";
import { describeExit, periodicDue } from "../../src/command/sync/periodic";
import { checkPageAddresses, validPrefix, writtenPrefix } from "../../src/wal/page";
import { ExitCode, LockHeldError } from "../../src/errors";
import { acquirePidfile, readPidfile, releasePidfile } from "../../src/slavedir/pidfile";

async function waitUntil(check: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      if (check()) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("timed out");
}

describe("backoff", () => {
  test("no failure: loop_delay", () => {
    assert.equal(backoffSeconds(1, 0), 1);
    assert.equal(backoffSeconds(0.5, 0), 0.5);
  });
  test("doubles from loop_delay (at least 1 s) and is capped", () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6, 7, 50].map((n) => backoffSeconds(1, n)),
      [1, 2, 4, 8, 16, 30, 30, 30],
    );
    assert.equal(backoffSeconds(0.2, 1), 1, "never a busy loop, however small loop_delay is");
    assert.equal(backoffSeconds(10, 2), 20);
    assert.equal(backoffSeconds(100, 1), MAX_BACKOFF_SEC);
  });
});

describe("periodic", () => {
  const now = Date.parse("2026-01-01T00:01:00Z");
  test("due when never run, or when the interval has passed since the last start", () => {
    assert.equal(periodicDue(undefined, 60, now), true);
    assert.equal(periodicDue({ started: "2026-01-01T00:00:00Z" }, 60, now), true);
    assert.equal(periodicDue({ started: "2026-01-01T00:00:01Z" }, 60, now), false);
    assert.equal(periodicDue({ started: "garbage" }, 60, now), true);
  });
  test("interval 0: always due", () => {
    assert.equal(periodicDue({ started: "2026-01-01T00:01:00Z" }, 0, now), true);
  });
  test("a failed run is not retried before the interval (status recorded, not the start time)", () => {
    assert.equal(periodicDue({ started: "2026-01-01T00:00:30Z", status: 3 }, 60, now), false);
  });
  test("the real exit status, decoded once (walmgr decoded it twice and reported 0)", () => {
    const res = spawnSync("/bin/sh", ["-c", "exit 3"]);
    assert.equal(describeExit(res.status, res.signal), "exited with status 3");
    const killed = spawnSync("/bin/sh", ["-c", "kill -KILL $$"]);
    assert.equal(describeExit(killed.status, killed.signal), "was killed by SIGKILL");
  });
});

describe("WAL page checks", () => {
  const blk = 8192;
  function pages(segLsn: bigint, start: number, n: number, good: number): Buffer {
    const buf = Buffer.alloc(n * blk);
    for (let i = 0; i < good; i++) buf.writeBigUInt64LE(segLsn + BigInt(start + i * blk), i * blk + 8);
    return buf;
  }
  const seg = 0x3000000n;
  test("validPrefix stops at the first page that does not carry its own address", () => {
    assert.equal(validPrefix(pages(seg, 0, 4, 4), 0, seg, blk), 4 * blk);
    assert.equal(validPrefix(pages(seg, 0, 4, 2), 0, seg, blk), 2 * blk);
    assert.equal(validPrefix(pages(seg, blk * 3, 4, 1), blk * 3, seg, blk), blk);
    assert.equal(validPrefix(Buffer.alloc(4 * blk), 0, seg, blk), 0, "zeros are unwritten");
  });
  test("checkPageAddresses refuses a recycled page", () => {
    checkPageAddresses(pages(seg, 0, 2, 2), 0, seg, blk, "x");
    assert.throws(() => checkPageAddresses(pages(seg, 0, 2, 1), 0, seg, blk, "x"), /holds WAL for/);
  });
  test("writtenPrefix ends at the zero pages after a switch record, and still refuses a recycled page", () => {
    assert.equal(writtenPrefix(pages(seg, 0, 4, 4), 0, seg, blk, "x"), 4 * blk);
    assert.equal(writtenPrefix(pages(seg, 0, 4, 1), 0, seg, blk, "x"), blk, "zero pages hold no WAL");
    assert.equal(writtenPrefix(Buffer.alloc(2 * blk + 100), blk, seg, blk, "x"), 0);
    const recycled = pages(seg, 0, 3, 3);
    recycled.writeBigUInt64LE(seg - 0x1000000n + BigInt(blk), blk + 8);
    assert.throws(() => writtenPrefix(recycled, 0, seg, blk, "x"), /page at offset 8192 holds WAL for/);
  });
});

describe("pidfile", () => {
  let dir: string;
  let ini: string;
  const children: number[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "walmgr-pidfile-"));
    ini = join(dir, "master.ini");
    writeFileSync(ini, "[wal-master]\n");
  });
  afterEach(() => {
    for (const pid of children.splice(0)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  function deadPid(): number {
    const res = spawnSync("/bin/sh", ["-c", "echo $$"], { encoding: "utf8" });
    return Number(res.stdout.trim());
  }

  /** A live process whose command line is exactly a daemon's: node DIR/PROGRAM ARGS (it just sleeps). */
  async function fakeDaemon(program: string, args: string[], cwd = dir): Promise<number> {
    const script = join(dir, program);
    writeFileSync(script, "setTimeout(() => {}, 60000);\n");
    const child = spawn(process.execPath, [script, ...args], { stdio: "ignore", cwd });
    const pid = child.pid ?? 0;
    children.push(pid);
    await waitUntil(() => readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(program));
    return pid;
  }

  test("created exclusively with our pid, released only while it holds it", async () => {
    const path = join(dir, "sub", "d.pid");
    const release = await acquirePidfile(path, ini, () => assert.fail("not stale"));
    assert.equal(readFileSync(path, "utf8"), `${process.pid}\n`);
    release();
    assert.ok(!existsSync(path));
    writeFileSync(path, "12345\n");
    releasePidfile(path);
    assert.ok(existsSync(path), "someone else's pidfile is left alone");
  });

  test("a pid that is gone is stale and taken over", async () => {
    const path = join(dir, "d.pid");
    const pid = deadPid();
    writeFileSync(path, `${pid}`);
    assert.deepEqual(readPidfile(path, ini), { kind: "stale", pid, why: `process ${pid} is gone` });
    const msgs: string[] = [];
    await acquirePidfile(path, ini, (m) => msgs.push(m));
    assert.match(msgs[0] ?? "", new RegExp(`stale pidfile .*process ${pid} is gone`));
    assert.equal(readFileSync(path, "utf8"), `${process.pid}\n`);
  });

  test("a live process that is not a walmgr-ts daemon (pid reused after a reboot) is stale", () => {
    const path = join(dir, "d.pid");
    writeFileSync(path, `${process.pid}\n`); // the test runner: alive, but not wal-sync
    const st = readPidfile(path, ini);
    assert.equal(st.kind, "stale");
  });

  test("garbage is reported and replaced", async () => {
    const path = join(dir, "d.pid");
    writeFileSync(path, "hello\n");
    assert.equal(readPidfile(path, ini).kind, "invalid");
    const msgs: string[] = [];
    await acquirePidfile(path, ini, (m) => msgs.push(m));
    assert.match(msgs[0] ?? "", /not a pid/);
  });

  test("this config's live daemon is running: a second one is refused with exit 4, naming its pid", async () => {
    const path = join(dir, "d.pid");
    // Relative config path, as an operator types it: resolved from the daemon's working directory.
    const pid = await fakeDaemon("wal-sync", ["master.ini", "--daemon"]);
    writeFileSync(path, `${pid}\n`);
    assert.deepEqual(readPidfile(path, ini), { kind: "running", pid });
    await assert.rejects(
      acquirePidfile(path, ini, () => undefined),
      (err: unknown) =>
        err instanceof LockHeldError && err.exitCode === ExitCode.LOCK_HELD && err.message.includes(`pid ${pid}`),
    );
    assert.equal(readFileSync(path, "utf8"), `${pid}\n`);
  });

  test("only the daemon of this config, started before its pidfile, is running", async () => {
    const path = join(dir, "d.pid");
    const other = join(dir, "other.ini");
    writeFileSync(other, "[wal-master]\n");
    const cases: [string, string[], RegExp][] = [
      // A command line that merely contains the name (the old check took it for the daemon).
      ["tail-wal-sync", ["-f", join(dir, "wal-sync"), ini, "--daemon"], /not a walmgr-ts sync daemon/],
      // wal-sync, but the one-shot: not the daemon.
      ["wal-sync", [ini], /not a walmgr-ts sync daemon/],
      // The daemon of another config file.
      ["wal-ctl", [other, "syncdaemon"], /another config file/],
    ];
    for (const [program, args, why] of cases) {
      const pid = await fakeDaemon(program, args);
      writeFileSync(path, `${pid}\n`);
      const st = readPidfile(path, ini);
      assert.equal(st.kind, "stale", `${program} ${args.join(" ")}`);
      assert.match(st.kind === "stale" ? st.why : "", why);
    }
    // The real thing, but the pidfile was written long before it started: a reused pid.
    const pid = await fakeDaemon("wal-sync", [ini, "-d"]);
    writeFileSync(path, `${pid}\n`);
    assert.equal(readPidfile(path, ini).kind, "running");
    utimesSync(path, new Date(Date.now() - 3_600_000), new Date(Date.now() - 3_600_000));
    const st = readPidfile(path, ini);
    assert.equal(st.kind, "stale");
    assert.match(st.kind === "stale" ? st.why : "", /started after the pidfile was written/);
  });
});
