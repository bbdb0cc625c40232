/**
 * `restore` on real PostgreSQL 15 when things go wrong: a slave_stop_cmd that returns before the
 * server is down, `kill -9` at every step of a restore (each rerun carries on, the last one
 * leaves a standby that holds every row), and (as root) a tablespace and a data directory on
 * other file systems, where the trees are copied and a mount point is kept.
 *
 * WALMGR_TEST_CRASH_AT=<point> makes wal-ctl kill itself with SIGKILL at that named point of
 * the restore (src/crash-point.ts, crashPoint).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readlinkSync, renameSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { RESTORE_CRASH_POINTS, type CrashPoint } from "../../src/command/restore/journal";
import { Cluster } from "../helpers/cluster";
import { IS_ROOT, mkdirAs, ok, removeTempDir, run, RUN_AS, runBin, waitFor, type RunResult } from "../helpers/env";
import { createPair, slaveIniText, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
const mounts: string[] = [];
const extra: Cluster[] = [];
const ROWS = "SELECT tag, count(*)::text AS n FROM t GROUP BY tag ORDER BY tag";

async function switchAndArchive(): Promise<void> {
  const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor(`${seg} archived`, () => existsSync(join(p.slaveDir, "logs.complete", seg)), 30_000);
}

/** Waits until `c` (a standby) holds the rows `want` in t and `inTs` rows in the tablespace. */
async function holdsEveryRow(c: Cluster, want: unknown, inTs: string): Promise<void> {
  await waitFor(
    "the standby to hold every row",
    async () =>
      JSON.stringify(await c.query(ROWS)) === JSON.stringify(want) &&
      (await c.value<string>("SELECT count(*)::text FROM in_ts")) === inTs,
    90_000,
  );
  assert.equal(await c.value<boolean>("SELECT pg_is_in_recovery()"), true, "it is a standby");
}

/** Hidden names a restore uses beside DST and beside the sets: none may be left. */
function leftovers(...more: string[]): string[] {
  return [p.base, p.slaveDir, ...more].flatMap((d) =>
    readdirSync(d)
      .filter((n) => n.startsWith(".walmgr-restore.") || n.startsWith(".walmgr-gone."))
      .map((n) => join(d, n)),
  );
}

function restoreKilledAt(ini: string, point: CrashPoint, args: string[] = []): RunResult {
  const res = runBin("wal-ctl", [ini, "restore", ...args], { env: { WALMGR_TEST_CRASH_AT: point } });
  assert.equal(res.signal, "SIGKILL", `restore should die at ${point}: exit ${res.status}\n${res.stderr}`);
  return res;
}

before(async () => {
  p = await createPair("resume");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  const ts = join(p.base, "ts1");
  mkdirAs(ts);
  await p.master.query(`CREATE TABLESPACE ts1 LOCATION '${ts}'`);
  await p.master.query("CREATE TABLE t (id serial, tag text)");
  await p.master.query("CREATE TABLE in_ts (v int) TABLESPACE ts1");
  await p.master.query("INSERT INTO in_ts SELECT generate_series(1, 100)");
  await p.master.query("INSERT INTO t (tag) SELECT 'first' FROM generate_series(1, 10)");
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "first restore");
  await switchAndArchive();
  await holdsEveryRow(p.slave, await p.master.query(ROWS), "100");
});

after(() => {
  for (const c of extra) c.stop("immediate");
  if (p) stopPair(p);
  for (const m of mounts.reverse()) run("umount", [m], { uid: 0, gid: 0 });
  if (p) removeTempDir(p.base);
});

test("a slave_stop_cmd that returns while the server still runs: restore refuses and changes nothing", async () => {
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  const pid = readPidLine(p.slaveData);
  const early = join(p.base, "early-stop.ini");
  writeFileAs(early, slaveIniText(p.slave, p.slaveData, p.slaveDir, "slave_stop_cmd = true"));
  const res = runBin("wal-ctl", [early, "restore", "--timeout", "2"]);
  assert.equal(res.status, 4, res.stderr);
  assert.match(res.stderr, /slave_stop_cmd returned, but the server \(pid \d+\) in .* is still running/);
  assert.ok(existsSync(join(p.slaveDir, "data.master", "backup_label")), "the set is not consumed");
  assert.ok(existsSync(join(p.slaveData, "PG_VERSION")), "the data directory is where it was");
  assert.equal(readPidLine(p.slaveData), pid, "the same server runs");
  assert.equal(await p.slave.value<boolean>("SELECT pg_is_in_recovery()"), true, "and answers");
  assert.deepEqual(
    readdirSync(p.base).filter((n) => /^slave-data\.\d+$/.test(n)),
    [],
    "no old directory was moved aside",
  );
  assert.deepEqual(leftovers(), []);
});

function readPidLine(dataDir: string): string {
  return run("head", ["-1", join(dataDir, "postmaster.pid")]).stdout.trim();
}

test("kill -9 at every step of a restore (set moved, old directory kept): each rerun carries on", async () => {
  await p.master.query("INSERT INTO t (tag) SELECT 'second' FROM generate_series(1, 20)");
  await p.master.query("INSERT INTO in_ts SELECT generate_series(101, 150)");
  await switchAndArchive();
  for (const point of RESTORE_CRASH_POINTS) {
    restoreKilledAt(p.slaveIni, point);
    // Between runs the set is never lost: it is a set, claimed beside the sets, or in the stage / DST.
    assert.ok(existsSync(join(p.base, ".walmgr-restore.slave-data.json")), `${point}: the journal is there`);
  }
  const last = ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "the rerun after the last kill");
  assert.match(last.stderr, /resuming the interrupted restore/);
  assert.match(last.stderr, /already running/);
  assert.ok(existsSync(join(p.base, "slave-data.0", "PG_VERSION")), "the old data directory is kept");
  assert.ok(existsSync(join(p.slaveData, "standby.signal")));
  assert.ok(!existsSync(join(p.slaveDir, "data.master")), "the newest set was moved");
  assert.deepEqual(leftovers(), []);
  await p.master.query("INSERT INTO t (tag) SELECT 'after' FROM generate_series(1, 5)");
  await switchAndArchive();
  await holdsEveryRow(p.slave, await p.master.query(ROWS), "150");
});

test("kill -9 at every step of a restore (named set copied, backup_datadir = no): each rerun carries on", async () => {
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  await p.master.query("INSERT INTO t (tag) SELECT 'third' FROM generate_series(1, 30)");
  await switchAndArchive();
  const ini = join(p.base, "no-keep.ini");
  writeFileAs(ini, slaveIniText(p.slave, p.slaveData, p.slaveDir, "backup_datadir = no"));
  const args = ["data.master", p.slaveData];
  for (const point of ["journal", "prepare", "settings", "swap", "old-aside", "swapped", "finish", "start"] as const) {
    restoreKilledAt(ini, point, args);
  }
  // Another set or other targets than the pending restore's are refused until it is finished.
  const other = runBin("wal-ctl", [ini, "restore", "data.master", p.slaveData, "--target-xid", "5"]);
  assert.equal(other.status, 2, other.stderr);
  assert.match(other.stderr, /an interrupted restore into .* is pending/);
  ok(runBin("wal-ctl", [ini, "restore", ...args]), "the rerun after the last kill");
  assert.ok(existsSync(join(p.slaveDir, "data.master", "backup_label")), "a named set is copied, not consumed");
  assert.deepEqual(
    readdirSync(p.base).filter((n) => /^slave-data\.\d+$/.test(n)),
    ["slave-data.0"],
    "the replaced directory was removed, not kept",
  );
  assert.deepEqual(leftovers(), []);
  await holdsEveryRow(p.slave, await p.master.query(ROWS), "150");
});

test(
  "a tablespace and the data directory on other file systems (tmpfs): copied, mount point kept, resumable",
  {
    skip: IS_ROOT ? false : "needs root to mount tmpfs",
  },
  async () => {
    ok(runBin("wal-backup", [p.masterIni]), "backup");
    await p.master.query("INSERT INTO t (tag) SELECT 'fourth' FROM generate_series(1, 40)");
    await p.master.query("INSERT INTO in_ts SELECT generate_series(151, 175)");
    await switchAndArchive();
    const want = await p.master.query(ROWS);
    // The master is gone (as after a failure) and the tablespace's path here is an empty mount point.
    p.master.stop();
    p.slave.stop();
    const ts = join(p.base, "ts1");
    renameSync(ts, `${ts}.master`);
    const fs2 = join(p.base, "fs2");
    for (const dir of [ts, fs2]) {
      mkdirAs(dir);
      const owner = RUN_AS ? `,uid=${RUN_AS.uid},gid=${RUN_AS.gid}` : "";
      const res = run("mount", ["-t", "tmpfs", "-o", `size=256m,mode=0700${owner}`, "tmpfs", dir], { uid: 0, gid: 0 });
      assert.equal(res.status, 0, res.stderr);
      mounts.push(dir);
    }
    const sdata = join(fs2, "sdata");
    const ini = join(p.base, "fs2.ini");
    const c = new Cluster(sdata, p.slave.port, p.base, join(p.base, "fs2.log"));
    extra.push(c);
    writeFileAs(
      ini,
      slaveIniText(p.slave, sdata, p.slaveDir, `slave_start_cmd = ${c.startCommand()}\nslave_stop_cmd = true`),
    );
    // The mount point itself cannot be renamed: refused before anything changes.
    const onMount = join(p.base, "on-mount.ini");
    writeFileAs(onMount, slaveIniText(p.slave, fs2, p.slaveDir));
    const refused = runBin("wal-ctl", [onMount, "restore"]);
    assert.equal(refused.status, 2, refused.stderr);
    assert.match(refused.stderr, /is a mount point/);
    assert.ok(existsSync(join(p.slaveDir, "data.master", "backup_label")), "the set is not consumed");
    restoreKilledAt(ini, "set-copied");
    restoreKilledAt(ini, "tablespace-copied");
    ok(runBin("wal-ctl", [ini, "restore"]), "the rerun after the kills");
    const links = readdirSync(join(sdata, "pg_tblspc"));
    assert.equal(links.length, 1);
    assert.equal(readlinkSync(join(sdata, "pg_tblspc", links[0] ?? "")), ts);
    assert.notEqual(statSync(ts).dev, statSync(p.base).dev, "the mount point is still mounted");
    assert.ok(
      readdirSync(ts).some((n) => n.startsWith("PG_15_")),
      "the tablespace's files are in the mount point",
    );
    assert.deepEqual(leftovers(fs2), []);
    await holdsEveryRow(c, want, "175");
  },
);
