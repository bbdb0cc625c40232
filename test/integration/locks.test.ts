/**
 * Locks on real PostgreSQL, as an unlucky operator or an attacker meets them:
 * - a one-shot `wal-sync` beside the running daemon (loop_delay 0.1) under inserts never tears
 *   the partial segment (the old code republished it whole while the daemon wrote in place
 *   into the replaced file: zero pages inside the shipped range); two one-shots at once are
 *   serialised; a daemon killed with -9 does not wedge later syncs;
 * - BACKUPLOCK naming a live process that is no backup is reported stale and cleared by
 *   --clear-stale-lock (it used to block backups forever);
 * - `wal-ctl stop` never signals a process the pidfile names unless it is this config's daemon
 *   (as root it used to SIGTERM a `tail -f` whose command line mentioned wal-sync), and a real
 *   daemon starts over such a pidfile.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { segmentNumber } from "../../src/wal/names";
import { alive, pidfileOf, pidIn, startDaemon, stopDaemon } from "../helpers/daemon";
import { IS_ROOT, ok, removeTempDir, runBin, sleep, spawnAs, spawnBin, waitFor, type Spawned } from "../helpers/env";
import { readPrefix } from "../helpers/fs";
import { createRemotePair, stopRemotePair } from "../helpers/remote";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

const SEG = 16 * 1024 * 1024;
const PAGE = 8192;
let p: Pair;
let d: Spawned | undefined;
const strangers: ChildProcess[] = [];

before(async () => {
  p = await createPair("locks", { master: "use_xlog_functions = 1\nloop_delay = 0.1\npidfile = daemon.pid" });
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial PRIMARY KEY, note text)");
});

after(async () => {
  if (d) await stopDaemon(d);
  for (const s of strangers) s.kill("SIGKILL");
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

/** Inserts (and a segment switch now and then) in the background until stopped: WAL moves all the time. */
function insertLoad(switches = true): { stop: () => Promise<void> } {
  let running = true;
  const done = (async () => {
    for (let i = 1; running; i++) {
      await p.master.query("INSERT INTO t (note) SELECT repeat('x', 400) FROM generate_series(1, 400)");
      if (switches && i % 8 === 0) await p.master.query("SELECT pg_switch_wal()");
      await sleep(10);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
    },
  };
}

/**
 * Every partial segment is WAL pages from its start and zeros after them, never a hole (zero
 * pages followed by WAL again); and the one the state file names equals the master's segment up
 * to the shipped offset, page by page. Returns how many shipped ranges it could compare with the
 * master's (0 when the master recycled the file or it was archived and pruned meanwhile).
 */
function checkPartials(what: string, pair: { slaveDir: string; master: { dataDir: string } } = p): number {
  const dir = join(pair.slaveDir, "logs.partial");
  for (const name of readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n))) {
    let data: Buffer;
    try {
      data = readFileSync(join(dir, name));
    } catch {
      continue; // pruned meanwhile
    }
    const segLsn = segmentNumber(name, SEG) * BigInt(SEG);
    let end = 0;
    while (end + PAGE <= data.length && data.readBigUInt64LE(end + 8) === segLsn + BigInt(end)) end += PAGE;
    for (let off = end; off + PAGE <= data.length; off += PAGE) {
      if (data.readBigUInt64LE(off + 8) === segLsn + BigInt(off)) {
        assert.fail(
          `${what}: ${name} has a hole: pages ${end / PAGE}..${off / PAGE - 1} are missing, WAL follows at page ${off / PAGE}`,
        );
      }
    }
  }
  let st: { name: string; offset: number } | undefined;
  try {
    st = JSON.parse(readFileSync(join(dir, ".walmgr-sync-state"), "utf8")) as { name: string; offset: number };
  } catch {
    return 0;
  }
  if (st.offset === 0) return 0;
  let mine: Buffer;
  let theirs: Buffer;
  try {
    mine = readPrefix(join(dir, st.name), st.offset);
    theirs = readPrefix(join(pair.master.dataDir, "pg_wal", st.name), st.offset);
  } catch {
    return 0;
  }
  if (theirs.length < 16 || theirs.readBigUInt64LE(8) !== segmentNumber(st.name, SEG) * BigInt(SEG)) return 0;
  for (let off = 0; off < st.offset; off += PAGE) {
    const a = mine.subarray(off, Math.min(off + PAGE, st.offset));
    const b = theirs.subarray(off, Math.min(off + PAGE, st.offset));
    if (!a.equals(b)) {
      const zero = a.every((x) => x === 0);
      assert.fail(
        `${what}: ${st.name} differs from the master's at page ${off / PAGE} (offset ${off}) of the ${st.offset} bytes shipped${zero ? ": a hole of zero pages" : ""}`,
      );
    }
  }
  return 1;
}

/**
 * Runs `check` while the daemon is stopped (SIGSTOP, and seen stopped in /proc), so that it
 * reads no file the daemon is writing at that moment.
 */
function whileStopped<T>(daemon: Spawned, check: () => T): T {
  const pid = daemon.child.pid ?? 0;
  daemon.child.kill("SIGSTOP");
  try {
    const deadline = Date.now() + 5_000;
    while (!/^\S+ \(.*\) [Tt] /.test(readFileSync(`/proc/${pid}/stat`, "utf8"))) {
      if (Date.now() > deadline) throw new Error(`the daemon (pid ${pid}) does not stop`);
    }
    return check();
  } finally {
    daemon.child.kill("SIGCONT");
  }
}

function oneShot(): Spawned {
  return spawnBin("wal-sync", [p.masterIni]);
}

test("the sync lock on real PostgreSQL", async (t) => {
  await t.test("a one-shot sync beside the daemon (loop_delay 0.1) never tears the partial segment", async () => {
    d = await startDaemon(p);
    const daemonPid = d.child.pid;
    const load = insertLoad();
    let compared = 0;
    let refused = 0;
    let runs = 0;
    try {
      const until = Date.now() + 12_000;
      while (Date.now() < until) {
        // Two one-shots at once beside the daemon, as cron and an operator might.
        const both = [oneShot(), oneShot()];
        const results = await Promise.all(both.map((s) => s.exited));
        results.forEach((res, i) => {
          runs++;
          const out = both[i]?.output() ?? "";
          assert.ok(res.status === 0 || res.status === 4, `one-shot sync exited ${String(res.status)}:\n${out}`);
          if (res.status === 4) {
            refused++;
            // It names the daemon that holds partial_wals.
            assert.match(out, new RegExp(`sync daemon .*pid ${String(daemonPid)} on `));
          }
        });
        compared += whileStopped(d, () => checkPartials(`after ${runs} one-shots`));
      }
      await sleep(300); // the daemon's next loops on top of the last one-shots
      compared += whileStopped(d, () => checkPartials("at the end"));
    } finally {
      await load.stop();
    }
    assert.ok(compared >= 10, `compared the shipped range ${compared} times in ${runs} runs`);
    assert.ok(refused > 0, "the one-shot refused while the daemon runs");
    assert.ok(d.child.exitCode === null, `the daemon still runs:\n${d.output()}`);
  });

  await t.test("a daemon killed with -9 does not wedge syncs; two one-shots at once are serialised", async () => {
    assert.ok(d);
    d.child.kill("SIGKILL");
    await d.exited;
    d = undefined;
    assert.ok(existsSync(join(p.slaveDir, "logs.partial", ".walmgr-sync-lock")), "SIGKILL leaves the sync lock");
    const load = insertLoad(false);
    try {
      let staleSeen = false;
      for (let round = 0; round < 6; round++) {
        const both = [oneShot(), oneShot()];
        const results = await Promise.all(both.map((s) => s.exited));
        results.forEach((r, i) =>
          assert.equal(r.status, 0, `round ${round}: one-shot ${i} exited ${String(r.status)}:\n${both[i]?.output()}`),
        );
        if (both.some((s) => /stale .*walmgr-sync-lock.*is gone/.test(s.output()))) staleSeen = true;
        checkPartials(`round ${round}`);
      }
      assert.ok(staleSeen, "the dead daemon's lock was reported stale and cleared");
    } finally {
      await load.stop();
    }
    assert.ok(!existsSync(join(p.slaveDir, "logs.partial", ".walmgr-sync-lock")), "one-shots release the lock");
    d = await startDaemon(p);
    await stopDaemon(d);
    d = undefined;
  });

  await t.test(
    "BACKUPLOCK naming a live process that is no backup is stale; --clear-stale-lock clears it",
    async () => {
      const stranger = spawn("sleep", ["300"], { stdio: "ignore" });
      strangers.push(stranger);
      const lock = join(p.slaveDir, "logs.complete", "BACKUPLOCK");
      const body = `${JSON.stringify({ pid: stranger.pid, host: hostname(), started: new Date().toISOString(), command: "wal-backup master.ini" })}\n`;
      writeFileAs(lock, body);
      const refused = runBin("wal-backup", [p.masterIni]);
      assert.equal(refused.status, 4, refused.stderr);
      assert.match(
        refused.stderr,
        new RegExp(`stale .*BACKUPLOCK.*pid ${String(stranger.pid)}\\b.*is not wal-backup/wal-ctl`),
      );
      assert.match(refused.stderr, /--clear-stale-lock/);
      assert.equal(readFileSync(lock, "utf8"), body, "kept without --clear-stale-lock");
      const res = ok(runBin("wal-backup", [p.masterIni, "--clear-stale-lock"]), "wal-backup --clear-stale-lock");
      assert.match(res.stderr, /stale .*BACKUPLOCK.*clearing it/);
      assert.ok(!existsSync(lock), "released after the backup");
      assert.ok(existsSync(join(p.slaveDir, "data.master", "backup_label")), "the backup was taken");
      assert.ok(alive(stranger.pid ?? 0), "the stranger is untouched");
    },
  );

  await t.test("wal-ctl stop never signals a process that is not this config's daemon", async () => {
    // A file whose name says wal-sync: `tail -f` of it carries "wal-sync" (and the config path)
    // in its command line, which the old check took for the daemon.
    const bait = join(p.base, "wal-sync");
    writeFileAs(bait, "");
    const cases: { who: string; proc: Spawned }[] = [
      // Another user's process (root's, when the suite runs as root) in a postgres-owned pidfile.
      {
        who: "another user's tail -f",
        proc: spawnAs("tail", ["-f", bait, p.masterIni], IS_ROOT ? { uid: 0, gid: 0 } : {}),
      },
      // The pidfile owner's own process, whose command line merely contains wal-sync.
      { who: "the owner's tail -f", proc: spawnAs("tail", ["-f", bait, p.masterIni]) },
    ];
    for (const c of cases) strangers.push(c.proc.child);
    // Archiving off first (a restart, as the server user), so that the stops below change no
    // setting and can run as root, the way the issue saw it: root's stop SIGTERMed the tail.
    ok(runBin("wal-ctl", [p.masterIni, "stop"]), "wal-ctl stop (archiving off)");
    const asRoot = IS_ROOT ? { uid: 0, gid: 0 } : {};
    for (const c of cases) {
      const pid = c.proc.child.pid ?? 0;
      assert.ok(alive(pid), `${c.who} runs`);
      writeFileAs(pidfileOf(p), `${pid}\n`);
      const stop = spawnBin("wal-ctl", [p.masterIni, "stop"], asRoot);
      assert.equal((await stop.exited).status, 0, stop.output());
      assert.doesNotMatch(stop.output(), /sent SIGTERM/, `${c.who} is not signalled:\n${stop.output()}`);
      assert.match(stop.output(), new RegExp(`no sync daemon signalled \\(stale pidfile .*process ${pid}\\b`));
      await sleep(200);
      assert.ok(alive(pid) && c.proc.child.exitCode === null, `${c.who} survives wal-ctl stop`);
      // A real daemon starts over that pidfile, and stop then stops it (and only it).
      d = await startDaemon(p);
      const started = d;
      await waitFor(
        "the stale pidfile to be reported",
        () => new RegExp(`stale pidfile .*process ${pid} .*taking it over`).test(started.output()),
        5_000,
      );
      const daemonPid = d.child.pid ?? 0;
      // Asynchronously: the daemon is our child, and only a running event loop reaps it.
      const stopping = spawnBin("wal-ctl", [p.masterIni, "stop"], asRoot);
      const stopped = await stopping.exited;
      assert.equal(stopped.status, 0, stopping.output());
      assert.match(stopping.output(), new RegExp(`the sync daemon \\(pid ${daemonPid}\\) has stopped`));
      await d.exited;
      d = undefined;
      assert.ok(!existsSync(pidfileOf(p)), "the daemon removed its pidfile");
      assert.ok(!existsSync(join(p.slaveDir, "logs.partial", ".walmgr-sync-lock")), "and released the sync lock");
      assert.ok(alive(pid), `${c.who} still survives`);
      assert.equal(pidIn(pidfileOf(p)), undefined);
    }
  });
});

test("over ssh: the daemon holds the sync lock on the slave host; a one-shot refuses, and takes over after kill -9", async () => {
  const r = await createRemotePair("locks-ssh", {
    master: "use_xlog_functions = 1\nloop_delay = 0.1\npidfile = daemon.pid",
  });
  const lock = join(r.slaveDir, "logs.partial", ".walmgr-sync-lock");
  let daemon: Spawned | undefined;
  try {
    ok(runBin("wal-ctl", [r.masterIni, "setup"]), "setup");
    await r.master.query("CREATE TABLE t (id serial PRIMARY KEY, note text)");
    await r.master.query("INSERT INTO t (note) SELECT repeat('x', 300) FROM generate_series(1, 500)");
    daemon = spawnBin("wal-sync", [r.masterIni, "--daemon"]);
    const running = daemon;
    await waitFor(
      "the daemon to take the sync lock on the slave host and ship",
      () => {
        if (running.child.exitCode !== null) throw new Error(`the daemon exited:\n${running.output()}`);
        return existsSync(lock) && existsSync(join(r.slaveDir, "logs.partial", ".walmgr-sync-state"));
      },
      30_000,
      100,
    );
    const held = JSON.parse(readFileSync(lock, "utf8")) as { pid: number; host: string; role: string };
    assert.deepEqual([held.pid, held.host, held.role], [daemon.child.pid, hostname(), "daemon"]);
    const refused = runBin("wal-sync", [r.masterIni]);
    assert.equal(refused.status, 4, refused.stderr);
    assert.match(refused.stderr, new RegExp(`sync daemon .*pid ${String(daemon.child.pid)} on ${hostname()}`));
    daemon.child.kill("SIGKILL");
    await daemon.exited;
    daemon = undefined;
    await r.master.query("INSERT INTO t (note) SELECT repeat('y', 300) FROM generate_series(1, 500)");
    const res = ok(runBin("wal-sync", [r.masterIni]), "wal-sync after the daemon was killed");
    assert.match(res.stderr, /stale .*walmgr-sync-lock.*is gone; clearing it/);
    assert.ok(!existsSync(lock), "the one-shot released the lock on the slave host");
    assert.equal(checkPartials("over ssh", r), 1, "the shipped range was compared with the master's");
  } finally {
    if (daemon) daemon.child.kill("SIGKILL");
    stopRemotePair(r);
  }
});
