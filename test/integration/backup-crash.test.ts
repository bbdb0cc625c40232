/**
 * Backups that die, on real PostgreSQL 15 with a local slave directory: a backup killed
 * (kill -9) or stopped (SIGTERM) at each dangerous point of putting its set in place leaves at
 * least one complete, listed set that `verify` passes; what killed backups leave behind is
 * removed (and logged) by the next backup; and wal-restore's %r cleanup keeps the WAL the kept
 * set needs, and cleans nothing while a backup holds BACKUPLOCK.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runUntilPause, signalPaused } from "../helpers/crash";
import { ok, removeTempDir, runBin, sleep, spawnBin, waitFor } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
let masterIniText: string;
/** Hidden sets the crash cases left behind (the next backup must remove and log them). */
const leftovers = new Map<string, boolean>();

const hidden = (): string[] => readdirSync(p.slaveDir).filter((n) => n.startsWith(".walmgr-tmp."));
const setNames = (): string[] =>
  readdirSync(p.slaveDir)
    .filter((n) => /^data\.master(\.\d+)?$/.test(n))
    .sort();
const lockFile = (): string => join(p.slaveDir, "logs.complete", "BACKUPLOCK");

function setKeep(keep: number): void {
  writeFileAs(p.masterIni, `${masterIniText}\nkeep_backups = ${keep}\n`);
}

/** At least one set is listed, every listed set is complete (verify passes); returns the names. */
function assertUsable(what: string): string[] {
  const rows = JSON.parse(
    ok(runBin("wal-ctl", [p.slaveIni, "listbackups", "--json"]), `listbackups ${what}`).stdout,
  ) as {
    name: string;
  }[];
  assert.ok(rows.length >= 1, `${what}: listbackups shows no set (hidden: ${hidden().join(", ")})`);
  ok(runBin("wal-ctl", [p.slaveIni, "verify"]), `verify ${what}`);
  return rows.map((r) => r.name);
}

async function count(c: Pair["master"], tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM t WHERE tag = $1", [tag]));
}

before(async () => {
  p = await createPair("bcrash");
  // A standby that asks again quickly for WAL that is not there yet (the restored set keeps this).
  writeFileAs(
    join(p.master.dataDir, "postgresql.conf"),
    `${readFileSync(join(p.master.dataDir, "postgresql.conf"), "utf8")}\nwal_retrieve_retry_interval = 200ms\n`,
  );
  masterIniText = readFileSync(p.masterIni, "utf8");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial, tag text)");
});

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("a backup killed or stopped at any point leaves at least one complete, listed set", async (t) => {
  // The dangerous points: the old set renamed away and the new one not yet in ("shifted"), and a
  // set being removed ("removing"), with keep_backups 0 (the new set replaces the only one) and
  // 2 (rotation before the copy removes the oldest of two). In this order each case finds the
  // sets it needs: SIGTERM at "shifted" leaves two sets, which keep_backups 2 then rotates.
  const cases: [number, string, NodeJS.Signals][] = [
    [0, "shifted", "SIGKILL"],
    [0, "shifted", "SIGTERM"],
    [2, "removing", "SIGKILL"],
    [0, "removing", "SIGKILL"],
    [0, "removing", "SIGTERM"],
    [2, "shifted", "SIGKILL"],
  ];
  setKeep(0);
  ok(runBin("wal-backup", [p.masterIni]), "first backup");
  for (const [keep, point, sig] of cases) {
    await t.test(`keep_backups = ${keep}: ${sig} at ${point}`, async () => {
      setKeep(keep);
      if (keep === 2 && point === "removing") assert.equal(setNames().length, 2, "two sets to rotate");
      await p.master.query("INSERT INTO t (tag) VALUES ($1)", [`${keep}-${point}-${sig}`]);
      const run = await runUntilPause("wal-backup", [p.masterIni, "--clear-stale-lock"], point);
      const end = await signalPaused(run, sig);
      assert.equal(end.signal, sig, `wal-backup should die of ${sig}:\n${run.output()}`);
      if (sig === "SIGTERM") assert.ok(!existsSync(lockFile()), "SIGTERM releases BACKUPLOCK");
      const listed = assertUsable(`after ${sig} at ${point}`);
      for (const h of hidden()) {
        // A complete temp set (its metadata is written last), as opposed to a set being removed.
        const complete = !h.includes(".removing.") && existsSync(join(p.slaveDir, h, ".walmgr-backup.json"));
        leftovers.set(h, complete);
      }
      t.diagnostic(`${sig} at ${point}: sets ${listed.join(", ")}; hidden ${hidden().join(", ") || "none"}`);
    });
  }
});

test("kill -9 mid-copy three times: the next backup removes every temp set killed backups left, and says so", async () => {
  setKeep(0);
  const killed: number[] = [];
  for (let i = 0; i < 3; i++) {
    const before = new Set(hidden());
    const run = spawnBin("wal-backup", [p.masterIni, "--clear-stale-lock"]);
    const tmp = await waitFor<string | undefined>(
      "the backup to copy files",
      () => {
        // The new temp set (not a set being removed: .walmgr-tmp.data.master.N.removing.PID).
        const n = hidden().find((h) => !before.has(h) && /^\.walmgr-tmp\.data\.master\.\d+$/.test(h));
        return n !== undefined && existsSync(join(p.slaveDir, n, "base")) ? n : undefined;
      },
      60_000,
      5,
    );
    run.child.kill("SIGKILL");
    await run.exited;
    killed.push(Number((tmp ?? "").slice((tmp ?? "").lastIndexOf(".") + 1)));
  }
  // Each backup removes what the killed one before it left: at most the last is still there.
  assert.ok(hidden().length <= 1, `temp sets leaked: ${hidden().join(", ")}`);
  ok(runBin("wal-backup", [p.masterIni, "--clear-stale-lock"]), "backup after three kills");
  assert.deepEqual(hidden(), [], "the temp sets of the killed backups are removed");
  assert.deepEqual(setNames(), ["data.master"], "keep_backups = 0: one set");
  const log = readFileSync(join(p.base, "master.log"), "utf8");
  assert.ok(leftovers.size >= 3, `the crash cases left hidden sets: ${[...leftovers.keys()].join(", ")}`);
  for (const [h, complete] of leftovers) {
    const path = `\\S*/${h.replace(/\./g, "\\.")}`;
    // A complete set (killed after the copy) is put in place; anything else is removed.
    assert.match(
      log,
      new RegExp(
        complete ? `put ${path} in place as \\S*/data\\.master: a complete set` : `removed ${path}: left behind`,
      ),
      h,
    );
  }
  assert.ok([...leftovers.values()].includes(true), "some crash case left a complete set to put in place");
  for (const pid of killed) {
    assert.match(log, new RegExp(`removed \\S*/\\.walmgr-tmp\\.data\\.master\\.${pid}: left behind by a backup`));
  }
  assertUsable("after the temp sets were removed");
});

test("wal-restore %r cleanup keeps what the kept set needs, and waits while BACKUPLOCK is held", async () => {
  const completed = join(p.slaveDir, "logs.complete");
  const segments = (): string[] =>
    readdirSync(completed)
      .filter((n) => /^[0-9A-F]{24}$/.test(n))
      .sort();
  const restartPoint = (): string => {
    try {
      // The one standby's record (src/standbys.ts), under its default name.
      const rec = readdirSync(completed).find((n) => n.startsWith(".walmgr-standby."));
      if (rec === undefined) return "";
      return (JSON.parse(readFileSync(join(completed, rec), "utf8")) as { restartpoint: string }).restartpoint;
    } catch {
      return "";
    }
  };
  const setStart = (): string =>
    (JSON.parse(readFileSync(join(p.slaveDir, "data.master", ".walmgr-backup.json"), "utf8")) as { startWal: string })
      .startWal;
  let round = 0;
  /** Moves the standby's restart point (%r) past `past`: WAL, checkpoints, a restartpoint, more WAL. */
  const advanceStandbyPast = async (past: string): Promise<void> => {
    await waitFor(
      `the standby's restart point to pass ${past}`,
      async () => {
        const tag = `r${++round}`;
        await p.master.query("INSERT INTO t (tag) SELECT $1 FROM generate_series(1, 10)", [tag]);
        await p.master.query("CHECKPOINT");
        await p.master.query("SELECT pg_switch_wal()");
        await waitFor(`the standby to replay ${tag}`, async () => (await count(p.slave, tag)) === 10, 60_000, 100);
        await p.slave.query("CHECKPOINT"); // a restartpoint
        return restartPoint() > past;
      },
      120_000,
      10,
    );
    // One more segment, so that wal-restore runs with the new %r.
    const tag = `r${++round}`;
    await p.master.query("INSERT INTO t (tag) SELECT $1 FROM generate_series(1, 10)", [tag]);
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor(`the standby to replay ${tag}`, async () => (await count(p.slave, tag)) === 10, 60_000, 100);
    await sleep(300);
  };

  // The standby consumes the newest set; a new backup (keep_backups = 0) is the kept set.
  setKeep(0);
  if (setNames().length === 0) ok(runBin("wal-backup", [p.masterIni, "--clear-stale-lock"]), "a set for the standby");
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore the standby");
  await p.master.query("INSERT INTO t (tag) SELECT 'standby' FROM generate_series(1, 5)");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor("the standby to replay", async () => (await count(p.slave, "standby")) === 5, 90_000, 100);
  ok(runBin("wal-backup", [p.masterIni]), "the kept backup");
  const start = setStart();

  await advanceStandbyPast(start);
  // Cleaned up by wal-restore's Node path, or by the prefetcher once the shell front served a
  // segment from its spool (that call starts no Node): soon, not necessarily at once.
  await waitFor(
    `WAL older than the set's start ${start} to be cleaned up`,
    () => segments().every((s) => s >= start),
    30_000,
  );
  const rp = restartPoint();
  assert.ok(rp > start, `%r ${rp} must be past the set's start ${start}`);
  const left = segments();
  assert.ok(left.includes(start), `the kept set's start WAL ${start} was removed (left: ${left.join(" ")})`);
  // Every segment from the set's start on is there (the set can be restored).
  for (let i = 1; i < left.length; i++) {
    assert.equal(
      parseInt((left[i] ?? "").slice(16), 16),
      parseInt((left[i - 1] ?? "").slice(16), 16) + 1,
      `no gap after ${left[i - 1] ?? ""}`,
    );
  }
  assert.ok(
    left.every((s) => s >= start),
    `WAL older than the set's start is cleaned up: ${left[0] ?? ""}`,
  );

  // A new backup makes the old WAL unneeded; while a backup holds BACKUPLOCK nothing goes.
  // Paused meanwhile: a segment the standby fetched between the backup's end and the test's lock
  // would clean up (rightly: no lock yet) and the test would prove nothing.
  ok(runBin("wal-ctl", [p.slaveIni, "pause"]), "pause");
  ok(runBin("wal-backup", [p.masterIni]), "a newer kept backup");
  const start2 = setStart();
  writeFileAs(
    lockFile(),
    `${JSON.stringify({ pid: process.pid, host: hostname(), started: new Date().toISOString(), command: "test" })}\n`,
  );
  ok(runBin("wal-ctl", [p.slaveIni, "continue"]), "continue");
  await advanceStandbyPast(start2);
  assert.ok(segments().includes(start), `with BACKUPLOCK held, ${start} must stay`);
  assert.ok(readFileSync(join(p.base, "slave.log"), "utf8").includes("no WAL cleaned up now"));
  // Once the lock is gone the cleanup resumes.
  rmSync(lockFile());
  await advanceStandbyPast(restartPoint());
  // By wal-restore's Node path, or (a segment the shell front served from the prefetch spool
  // starts no Node) by the prefetcher once the front took it: soon, not necessarily at once.
  await waitFor(
    `without the lock, ${start} (needed by no set) to be cleaned up`,
    () => !segments().includes(start),
    30_000,
  );
  const after = segments();
  assert.ok(!after.includes(start), `without the lock, ${start} (needed by no set) is cleaned up`);
  assert.ok(after.includes(start2), `the kept set's start ${start2} stays`);
});
