/**
 * A whole failover on real PostgreSQL: the master dies, the standby is booted (timeline 2),
 * `setup` on the promoted node (newmaster.ini, archiving into the same slave directory) makes
 * archiving really take effect although `restore` left `archive_mode = 'off'` in its
 * postgresql.auto.conf, and a new standby restored from the old backup set follows the
 * timeline switch through the archived .history file and holds every row.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Cluster, freePort } from "../helpers/cluster";
import { mkdirAs, removeTempDir, runBin, waitFor, ok } from "../helpers/env";
import { createPair, masterIniText, slaveIniText, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
let standby2: Cluster | undefined;
let leftover: string | undefined;

const ROWS = "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag";

before(async () => {
  p = await createPair("failover", { master: "use_xlog_functions = 1" });
});

after(() => {
  if (leftover) rmSync(leftover, { recursive: true, force: true });
  if (p) {
    standby2?.stop("immediate");
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("failover: boot, setup on the new master, a standby from the old backup follows timeline 2 with every row", async () => {
  const completed = join(p.slaveDir, "logs.complete");

  // The old master archives; its backup is restored by name (a copy), so the set stays for later.
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup on the master");
  await p.master.query("CREATE TABLE shipped (id serial PRIMARY KEY, tag text NOT NULL)");
  await p.master.query("INSERT INTO shipped (tag) SELECT 'before backup' FROM generate_series(1, 100)");
  ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
  ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master"]), "restore");
  await p.master.query("INSERT INTO shipped (tag) SELECT 'archived' FROM generate_series(1, 200)");
  await p.master.query("SELECT pg_switch_wal()");
  await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 50)");
  ok(runBin("wal-sync", [p.masterIni]), "wal-sync");

  // The master dies; the standby is booted onto timeline 2.
  p.master.stop("immediate");
  ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
  assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), false);
  const tli = async (c: Cluster): Promise<string> =>
    (await c.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())")).slice(0, 8);
  assert.equal(await tli(p.slave), "00000002", "boot must promote to timeline 2");
  assert.match(readFileSync(join(p.slaveData, "postgresql.auto.conf"), "utf8"), /archive_mode = 'off'/);

  // Writes on the new master before archiving is set up, in a segment it completes meanwhile.
  await p.slave.query("INSERT INTO shipped (tag) SELECT 'before setup' FROM generate_series(1, 70)");
  await p.slave.query("SELECT pg_switch_wal()");
  await p.slave.query("INSERT INTO shipped (tag) SELECT 'before setup' FROM generate_series(1, 30)");

  // setup on the promoted node, archiving into the same slave directory.
  const newMasterIni = join(p.base, "newmaster.ini");
  writeFileAs(
    newMasterIni,
    masterIniText(p.slave, p.slaveDir, "use_xlog_functions = 1")
      .replace("job_name = master", "job_name = newmaster")
      .replace("logfile = master.log", "logfile = newmaster.log"),
  );
  // What a setup killed (-9) while copying a segment leaves behind: cleaned up by the next one.
  const deadPid = spawnSync("true").pid;
  leftover = join(tmpdir(), `walmgr-setup-${deadPid}-kill9`);
  mkdirAs(leftover);
  writeFileAs(join(leftover, "000000020000000000000004"), "x".repeat(4096));
  const res = ok(runBin("wal-ctl", [newMasterIni, "setup"]), "setup on the new master");
  assert.equal(await p.slave.value("SHOW archive_mode"), "on", `setup exited 0 but archiving is off:\n${res.stderr}`);
  assert.match(res.stderr, /postgresql\.auto\.conf/, "setup must say that it changed postgresql.auto.conf");
  assert.doesNotMatch(res.stderr, /recycled/, "no WAL of timeline 2 was lost");
  assert.ok(!existsSync(leftover), "the temp folder of a dead setup must be removed");
  assert.match(await p.slave.value<string>("SHOW archive_command"), /newmaster\.ini %p %f$/);
  assert.ok(existsSync(join(completed, "00000002.history")), "the new timeline's .history must be archived");
  const pid = (): string => readFileSync(join(p.slaveData, "postmaster.pid"), "utf8").split("\n")[0] ?? "";
  const pidBefore = pid();
  ok(runBin("wal-ctl", [newMasterIni, "setup"]), "second setup on the new master");
  assert.equal(pid(), pidBefore, "a second setup must not restart the server");

  await p.slave.query("INSERT INTO shipped (tag) SELECT 'after setup' FROM generate_series(1, 40)");
  const last = await p.slave.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.slave.query("SELECT pg_switch_wal()");
  await waitFor(`${last} to be archived by the new master`, () => existsSync(join(completed, last)), 30_000);
  const want = await p.slave.query(ROWS);

  // A new standby from the old (timeline 1) backup follows the switch to timeline 2.
  const data2 = join(p.base, "standby2-data");
  standby2 = new Cluster(data2, await freePort(), p.base, join(p.base, "standby2.log"));
  const standby2Ini = join(p.base, "standby2.ini");
  writeFileAs(
    standby2Ini,
    slaveIniText(standby2, data2, p.slaveDir).replace("job_name = slave", "job_name = standby2"),
  );
  ok(runBin("wal-ctl", [standby2Ini, "restore", "data.master"]), "restore of a new standby");
  const s2 = standby2;
  await waitFor(
    "the new standby to replay every row of both timelines",
    async () => JSON.stringify(await s2.query(ROWS)) === JSON.stringify(want),
    60_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nstandby log:\n${s2.log()}`);
  });
  assert.deepEqual(await s2.query(ROWS), want);
  assert.equal(await s2.value("SELECT pg_is_in_recovery()"), true);
  await s2.query("CHECKPOINT"); // a restartpoint: pg_control then names the replayed timeline
  assert.equal(await s2.value<number>("SELECT timeline_id FROM pg_control_checkpoint()"), 2);

  // The old master was down at the failover: no sign of two writers, and status on the new master
  // reports the old master's last sync as of timeline 1, with no figure across the two timelines.
  const v = JSON.parse(runBin("wal-ctl", [newMasterIni, "verify", "--json"]).stdout) as {
    twoWriters: { detected: boolean; newestTimeline: number | null };
  };
  assert.deepEqual(
    { detected: v.twoWriters.detected, newestTimeline: v.twoWriters.newestTimeline },
    { detected: false, newestTimeline: 2 },
    JSON.stringify(v.twoWriters),
  );
  const st = JSON.parse(ok(runBin("wal-ctl", [newMasterIni, "status", "--json"]), "status").stdout) as {
    lastSync?: { timeline?: number; otherMaster?: string };
    master?: { timeline?: number; bytesBehind: number | null };
    syncLock?: { present: boolean | null };
  };
  assert.equal(st.lastSync?.timeline, 1);
  assert.match(st.lastSync?.otherMaster ?? "", /before the failover/);
  assert.deepEqual({ tli: st.master?.timeline, behind: st.master?.bytesBehind }, { tli: 2, behind: null });
  assert.equal(st.syncLock?.present, false);
});
