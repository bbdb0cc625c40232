/**
 * The walmgr manual's QUICK START, end to end, on real PostgreSQL with the real executables:
 * setup, backup, restore, replay, pause/continue, sync of the in-progress segment, boot.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { removeTempDir, runBin, sleep, waitFor, ok } from "../helpers/env";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

let p: Pair;

async function count(c: Pair["master"], tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM shipped WHERE tag = $1", [tag]));
}

before(async () => {
  p = await createPair("quickstart", { master: "use_xlog_functions = 1" });
});

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("QUICK START: setup, backup, restore, replay, pause, continue, sync, boot", async (t) => {
  const completed = join(p.slaveDir, "logs.complete");

  await t.test("setup enables archiving and creates the slave layout", async () => {
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
    assert.equal(await p.master.value("SELECT current_setting('archive_mode')"), "on");
    const cmd = await p.master.value<string>("SELECT current_setting('archive_command')");
    assert.match(cmd, /bin\/wal-archive .*master\.ini %p %f$/);
    for (const d of ["logs.complete", "logs.partial"]) assert.ok(statSync(join(p.slaveDir, d)).isDirectory());
    const conf = readFileSync(join(p.master.dataDir, "postgresql.conf"), "utf8");
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "second setup");
    assert.equal(
      readFileSync(join(p.master.dataDir, "postgresql.conf"), "utf8"),
      conf,
      "second setup changed the file",
    );
  });

  await t.test("backup takes a base backup into full_backup", async () => {
    p.master.pgbench(["-i", "-s", "1", "-q"]);
    await p.master.query("CREATE TABLE shipped (id serial PRIMARY KEY, tag text NOT NULL)");
    await p.master.query("INSERT INTO shipped (tag) SELECT 'base' FROM generate_series(1, 100)");
    ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
    const set = join(p.slaveDir, "data.master");
    assert.match(readFileSync(join(set, "backup_label"), "utf8"), /START WAL LOCATION/);
    assert.ok(!existsSync(join(set, "postmaster.pid")), "postmaster.pid must be excluded");
    assert.ok(!existsSync(join(completed, "BACKUPLOCK")), "BACKUPLOCK must be released");
  });

  await t.test("restore starts a standby that replays switched segments", async () => {
    ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore");
    assert.ok(existsSync(join(p.slaveData, "standby.signal")));
    p.master.pgbench(["-t", "200", "-c", "2", "-n"]);
    await p.master.query("INSERT INTO shipped (tag) SELECT 'replayed' FROM generate_series(1, 50)");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor(
      "the standby to replay the switched segment",
      async () => (await count(p.slave, "replayed")) === 50,
      90_000,
    );
    assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), true);
  });

  await t.test("pause holds back a new segment; continue lets it through", async () => {
    ok(runBin("wal-ctl", [p.slaveIni, "pause"]), "pause");
    assert.ok(existsSync(join(completed, "PAUSE")));
    const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    await p.master.query("INSERT INTO shipped (tag) SELECT 'paused' FROM generate_series(1, 30)");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor(`${seg} to be archived`, () => existsSync(join(completed, seg)), 30_000);
    await sleep(10_000);
    assert.equal(await count(p.slave, "paused"), 0, "a paused standby replayed new WAL");
    ok(runBin("wal-ctl", [p.slaveIni, "continue"]), "continue");
    assert.ok(!existsSync(join(completed, "PAUSE")));
    await waitFor("the standby to replay after continue", async () => (await count(p.slave, "paused")) === 30, 60_000);
  });

  await t.test("sync ships rows that exist only in the in-progress segment; boot keeps them", async () => {
    await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 20)");
    const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    ok(runBin("wal-sync", [p.masterIni]), "wal-sync");
    const partial = join(p.slaveDir, "logs.partial", seg);
    assert.equal(statSync(partial).size, 16 * 1024 * 1024, "the partial segment is stored full-size");
    // A second one-shot sync ships only what is new.
    await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 5)");
    const second = ok(runBin("wal-sync", [p.masterIni, "-v"]), "second wal-sync");
    assert.match(second.stderr, /shipped \d+ bytes of/);
    const masterRows = await p.master.query<{ tag: string; n: string }>(
      "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag",
    );
    const masterSum = await p.master.value<string>("SELECT sum(abalance)::text FROM pgbench_accounts");
    p.master.stop("immediate");
    assert.ok(!existsSync(join(completed, seg)), `${seg} must not be archived: its rows are partial-only`);
    assert.equal(await count(p.slave, "partial"), 0, "the standby must not have the partial rows before boot");

    ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
    assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), false);
    const slaveRows = await p.slave.query<{ tag: string; n: string }>(
      "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag",
    );
    assert.deepEqual(slaveRows, masterRows);
    assert.equal(await p.slave.value<string>("SELECT sum(abalance)::text FROM pgbench_accounts"), masterSum);
    await p.slave.query("INSERT INTO shipped (tag) VALUES ('after boot')");
    assert.equal(await count(p.slave, "after boot"), 1);
  });
});
