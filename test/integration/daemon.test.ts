/**
 * The sync daemon on real PostgreSQL: ships every loop_delay, across segment switches and a
 * master restart; refuses to run twice; reloads on SIGHUP; stops cleanly on SIGTERM (no torn
 * partial file) and on `wal-ctl stop`; detaches with -d; runs periodic_command and reports its
 * real exit status; `wal-ctl status` on both sides.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Status } from "../../src/monitor/status-report";
import { segmentNumber } from "../../src/wal/names";
import { alive, pidfileOf, pidIn, startDaemon, stopDaemon, syncState, waitShipped } from "../helpers/daemon";
import { ok, pgBin, removeTempDir, runBin, sleep, spawnAs, waitFor, type Spawned } from "../helpers/env";
import { readPrefix } from "../helpers/fs";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

const SEG = 16 * 1024 * 1024;
let p: Pair;
let d: Spawned | undefined;
let baseIni: string;

function logText(): string {
  try {
    return readFileSync(join(p.base, "master.log"), "utf8");
  } catch {
    return "";
  }
}

/** Log lines written after `mark` (a length of the log file). */
function logSince(mark: number): string {
  return logText().slice(mark);
}

function writeIni(extra: string): void {
  writeFileAs(p.masterIni, `${baseIni}${extra}`);
}

async function currentLsn(): Promise<string> {
  return p.master.value<string>("SELECT pg_current_wal_lsn()::text");
}

function statusJson(ini: string): Status {
  const res = ok(runBin("wal-ctl", [ini, "status", "--json"]), "status --json");
  return JSON.parse(res.stdout) as Status;
}

before(async () => {
  p = await createPair("daemon");
  const periodic = `echo ran >> ${join(p.base, "periodic.out")}; exit 3`;
  baseIni = `${readFileSync(p.masterIni, "utf8")}use_xlog_functions = 1
pidfile = daemon.pid
periodic_command = ${periodic}
command_interval = 2
`;
  writeIni("loop_delay = 1\n");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial PRIMARY KEY, note text)");
  p.master.pgbench(["-i", "-s", "1", "-q"]);
});

after(async () => {
  if (d) await stopDaemon(d);
  const pid = p ? pidIn(pidfileOf(p)) : undefined;
  if (pid !== undefined && alive(pid)) process.kill(pid, "SIGTERM");
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("the sync daemon", async (t) => {
  const partialDir = join(p.slaveDir, "logs.partial");

  await t.test("ships the new bytes every loop_delay; status shows it on both sides", async () => {
    d = await startDaemon(p);
    await p.master.query("INSERT INTO t (note) SELECT 'first' FROM generate_series(1, 100)");
    const lsn = await currentLsn();
    await waitShipped(p, lsn, 20_000);
    const st = syncState(p);
    assert.ok(st);
    assert.equal(statSync(join(partialDir, st.name)).size, SEG, "the partial segment is full-size");
    const m = statusJson(p.masterIni);
    assert.equal(m.daemon.state, "running");
    assert.equal(m.daemon.pid, d.child.pid);
    assert.equal(m.lastSync?.name, st.name);
    assert.equal(typeof m.lastSync?.secondsAgo, "number");
    assert.equal(typeof m.master?.bytesBehind, "number");
    assert.ok((m.master?.bytesBehind ?? -1) >= 0);
    await waitFor("the daemon's heartbeat", () => existsSync(join(partialDir, ".walmgr-daemon-state")), 15_000);
    const s = statusJson(p.slaveIni);
    assert.equal(s.role, "slave");
    assert.equal(s.daemon.state, "running");
    assert.equal(s.daemon.pid, d.child.pid);
    assert.equal(s.lastSync?.name, st.name);
    const text = ok(runBin("wal-ctl", [p.masterIni, "status"]), "status").stdout;
    assert.match(text, /sync daemon: +running \(pid \d+\)/);
    assert.match(text, /last sync: +0000000\w+ up to \w+\/\w+ at .*s ago/);
    assert.match(text, /bytes not shipped yet/);
  });

  await t.test("a second daemon refuses (exit 4) and names the running one", async () => {
    const pid = d?.child.pid;
    for (const args of [
      ["wal-sync", [p.masterIni, "--daemon"]],
      ["wal-ctl", [p.masterIni, "syncdaemon"]],
    ] as const) {
      const res = runBin(args[0], [...args[1]]);
      assert.equal(res.status, 4, `${args[0]}: ${res.stderr}`);
      assert.match(res.stderr, new RegExp(`already running \\(pid ${pid}`));
    }
    assert.ok(d && d.child.exitCode === null, "the first daemon keeps running");
    assert.equal(pidIn(pidfileOf(p)), pid, "the pidfile is untouched");
  });

  await t.test("keeps shipping across a segment switch; the partial goes once the segment is archived", async () => {
    const first = syncState(p)?.name;
    assert.ok(first);
    await p.master.query("INSERT INTO t (note) SELECT 'before switch' FROM generate_series(1, 100)");
    await p.master.query("SELECT pg_switch_wal()");
    await p.master.query("INSERT INTO t (note) SELECT 'after switch' FROM generate_series(1, 100)");
    const lsn = await currentLsn();
    await waitShipped(p, lsn, 20_000);
    const now = syncState(p)?.name;
    assert.ok(now && now !== first, "the daemon moved to the new segment");
    assert.equal(statSync(join(partialDir, now)).size, SEG);
    await waitFor(`${first} to be archived`, () => existsSync(join(p.slaveDir, "logs.complete", first)), 30_000);
    // A bound, not a pace: on a busy machine the daemon's next loops can take a while.
    await waitFor(`the partial ${first} to be removed`, () => !existsSync(join(partialDir, first)), 60_000);
  });

  await t.test("SIGHUP re-reads the config; a broken file keeps the old settings", async () => {
    const pid = d?.child.pid;
    assert.ok(pid);
    let mark = logText().length;
    writeIni("loop_delay = 2\n");
    process.kill(pid, "SIGHUP");
    await waitFor("the reload to be logged", () => /SIGHUP: reloaded .*loop_delay 2 s/.test(logSince(mark)), 15_000);
    mark = logText().length;
    writeIni("loop_delay = soon\n");
    process.kill(pid, "SIGHUP");
    await waitFor(
      "the failed reload to be logged",
      () => /SIGHUP: cannot reload .*keeping the old settings.*loop_delay/.test(logSince(mark)),
      15_000,
    );
    mark = logText().length;
    writeIni("loop_delay = 1\n");
    process.kill(pid, "SIGHUP");
    await waitFor("the second reload", () => /SIGHUP: reloaded .*loop_delay 1 s/.test(logSince(mark)), 15_000);
    assert.ok(d && d.child.exitCode === null, "the daemon survives SIGHUP");
    await p.master.query("INSERT INTO t (note) SELECT 'after reload' FROM generate_series(1, 10)");
    await waitShipped(p, await currentLsn(), 20_000);
  });

  await t.test("survives a master restart: logs each failed attempt with backoff, reconnects", async () => {
    const mark = logText().length;
    p.master.stop("fast");
    await sleep(8_000);
    const failures = logSince(mark).match(/sync failed \(attempt \d+\)/g) ?? [];
    assert.ok(failures.length >= 2, `expected failed attempts to be logged:\n${logSince(mark)}`);
    assert.ok(failures.length <= 6, `backoff: ${failures.length} attempts in 8 s is a busy loop`);
    assert.match(logSince(mark), /cannot connect to the master.*retrying in \d+ s/);
    assert.ok(d && d.child.exitCode === null, "the daemon keeps running while the master is down");
    p.master.start();
    await p.master.query("INSERT INTO t (note) SELECT 'after restart' FROM generate_series(1, 50)");
    const lsn = await currentLsn();
    await waitFor("the daemon to reconnect", () => /sync works again after \d+ failed/.test(logSince(mark)), 40_000);
    await waitShipped(p, lsn, 20_000);
  });

  await t.test("periodic_command runs every command_interval; its failure names its real exit status", async () => {
    const out = join(p.base, "periodic.out");
    await waitFor("periodic_command to have run twice", () => {
      try {
        return readFileSync(out, "utf8").split("\n").filter(Boolean).length >= 2;
      } catch {
        return false;
      }
    });
    assert.match(logText(), /periodic_command \(echo ran .*\) exited with status 3; it runs again in 2 s/);
    const res = runBin("wal-ctl", [p.masterIni, "periodic", "--force"]);
    assert.equal(res.status, 9, res.stderr);
    assert.match(res.stderr, /periodic_command \(echo ran .*\) exited with status 3/);
    writeIni(`loop_delay = 1\nperiodic_command = kill -KILL $$\n`);
    const killed = runBin("wal-ctl", [p.masterIni, "periodic", "--force"]);
    assert.equal(killed.status, 9);
    assert.match(killed.stderr, /was killed by SIGKILL/);
    writeIni("loop_delay = 1\n");
    assert.ok(d && d.child.exitCode === null, "a failing periodic_command does not stop the daemon");
  });

  await t.test("a slave-directory hiccup is retried with backoff, then shipping resumes", async () => {
    const mark = logText().length;
    const aside = `${partialDir}.aside`;
    renameSync(partialDir, aside);
    try {
      await p.master.query("INSERT INTO t (note) SELECT 'hiccup' FROM generate_series(1, 10)");
      await waitFor("a failed attempt", () => /sync failed \(attempt 1\)/.test(logSince(mark)), 15_000);
    } finally {
      renameSync(aside, partialDir);
    }
    const lsn = await currentLsn();
    await waitFor("shipping to resume", () => /sync works again/.test(logSince(mark)), 30_000);
    await waitShipped(p, lsn, 20_000);
  });

  await t.test("SIGTERM mid-ship: exit 0, pidfile removed, no torn or short partial file", async () => {
    // Steady WAL traffic, so that the daemon is shipping when the signal comes.
    const bench = spawnPgbench(p, 20);
    try {
      for (let round = 0; round < 3; round++) {
        if (!d) d = await startDaemon(p);
        await sleep(700 + round * 450);
        const res = await stopDaemon(d);
        const out = d.output();
        d = undefined;
        assert.equal(res.status, 0, `the daemon exited ${String(res.status)}/${String(res.signal)}:\n${out}`);
        assert.ok(!existsSync(pidfileOf(p)), "the pidfile is removed");
        checkPartials(p, partialDir, true);
      }
      // SIGKILL at any moment: the partial files are still whole; the pidfile is left behind,
      // and the next daemon reports it stale, takes it over and clears the temporary files.
      for (let round = 0; round < 2; round++) {
        d = await startDaemon(p);
        await sleep(900 + round * 300);
        d.child.kill("SIGKILL");
        await d.exited;
        d = undefined;
        checkPartials(p, partialDir, false);
      }
      assert.ok(existsSync(pidfileOf(p)), "SIGKILL leaves the pidfile");
      d = await startDaemon(p);
      await waitFor(
        "the stale pidfile to be reported",
        () => /stale pidfile .*is gone/.test(d?.output() ?? ""),
        10_000,
      );
      const res = await stopDaemon(d);
      d = undefined;
      assert.equal(res.status, 0);
      checkPartials(p, partialDir, true);
    } finally {
      bench.child.kill("SIGTERM");
      await bench.exited;
    }
  });

  await t.test("-d detaches; wal-ctl stop ends the daemon and reports it", async () => {
    // A stale pidfile (a pid that is gone) is taken over.
    writeFileSync(pidfileOf(p), "999999\n");
    const started = Date.now();
    const res = ok(runBin("wal-sync", [p.masterIni, "-d"]), "wal-sync -d");
    assert.ok(Date.now() - started < 20_000, "-d returns once the daemon runs");
    assert.match(res.stderr, /stale pidfile .*999999/);
    assert.match(res.stderr, /started in the background \(pid \d+/);
    const pid = pidIn(pidfileOf(p));
    assert.ok(pid !== undefined && alive(pid), "the detached daemon runs");
    await p.master.query("INSERT INTO t (note) SELECT 'detached' FROM generate_series(1, 10)");
    await waitShipped(p, await currentLsn(), 20_000);
    const stop = ok(runBin("wal-ctl", [p.masterIni, "stop"]), "wal-ctl stop");
    assert.match(stop.stderr, new RegExp(`the sync daemon \\(pid ${pid}\\) has stopped`));
    assert.ok(!alive(pid), "the daemon is gone when stop returns");
    assert.ok(!existsSync(pidfileOf(p)), "the pidfile is removed");
    const s = statusJson(p.slaveIni);
    assert.equal(s.daemon.state, "stopped");
    const m = statusJson(p.masterIni);
    assert.equal(m.daemon.state, "not running");
  });
});

/** pgbench in the background for `seconds`, as the server user. */
function spawnPgbench(pair: Pair, seconds: number): Spawned {
  return spawnAs(pgBin("pgbench"), [
    "-h",
    pair.master.socketDir,
    "-p",
    String(pair.master.port),
    "-U",
    "postgres",
    "-n",
    "-c",
    "2",
    "-T",
    String(seconds),
    "postgres",
  ]);
}

/**
 * Every partial segment is full-size, no temporary file is left, and the bytes the state file
 * says were shipped equal the master's own segment file (while the master still has it).
 */
function checkPartials(pair: Pair, dir: string, noTemps: boolean): void {
  const names = readdirSync(dir);
  if (noTemps) {
    assert.deepEqual(
      names.filter((n) => n.startsWith(".walmgr-tmp")),
      [],
      "no temporary file is left in partial_wals",
    );
  }
  for (const n of names.filter((x) => /^[0-9A-F]{24}$/.test(x))) {
    assert.equal(statSync(join(dir, n)).size, SEG, `${n} is full-size`);
  }
  const st = syncState(pair);
  assert.ok(st);
  const src = join(pair.master.dataDir, "pg_wal", st.name);
  const mine = readPrefix(join(dir, st.name), st.offset);
  let theirs: Buffer;
  try {
    theirs = readPrefix(src, st.offset);
  } catch {
    return; // recycled already
  }
  const expected = segmentNumber(st.name, SEG) * BigInt(SEG);
  if (theirs.length < 16 || theirs.readBigUInt64LE(8) !== expected) return; // recycled
  assert.ok(mine.equals(theirs), `${st.name}: the shipped ${st.offset} bytes differ from the master's`);
}
