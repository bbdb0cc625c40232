/**
 * The walmgr manual's QUICK START against a real S3-compatible server (OpenStack Swift with
 * s3api, started on loopback): setup, backup, restore, replay, pause/continue, sync of the
 * in-progress segment, boot, rows equal. The slave directory is s3://BUCKET/site; the
 * standby's PAUSE and STOP are in its local control_dir.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { removeTempDir, runBin, sleep, spawnBin, waitFor, ok } from "../helpers/env";
import { TestSwift } from "../helpers/swift";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

let p: Pair;
let swift: TestSwift;
const BUCKET = "walmgr-qs";

async function count(c: Pair["master"], tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM shipped WHERE tag = $1", [tag]));
}

/** The S3 settings both configs carry (the file holds the secret: it is made private). */
export function s3Settings(s: TestSwift): string {
  return `s3_endpoint = ${s.endpoint}
s3_region = ${s.region}
s3_access_key = ${s.accessKey}
s3_secret_key = ${s.secretKey}
`;
}

async function keys(prefix: string): Promise<string[]> {
  const res = await swift.request("GET", `/${BUCKET}?list-type=2&prefix=${encodeURIComponent(prefix)}`);
  return [...res.body.toString("utf8").matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1] ?? "");
}

before(async () => {
  swift = await TestSwift.start();
  await swift.createBucket(BUCKET);
  p = await createPair("s3-quickstart", {
    master: `use_xlog_functions = 1\n${s3Settings(swift)}`,
    slave: s3Settings(swift),
  });
  // createPair writes `slave = <local dir>`: point both at the bucket instead.
  for (const ini of [p.masterIni, p.slaveIni]) {
    const { readFileSync, writeFileSync } = await import("node:fs");
    writeFileSync(ini, readFileSync(ini, "utf8").replace(/^slave = .*$/m, `slave = s3://${BUCKET}/site`));
    chmodSync(ini, 0o600);
  }
});

after(async () => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
  await swift?.stop();
});

test("QUICK START against S3: setup, backup, restore, replay, pause, continue, sync, boot", async (t) => {
  const control = join(p.base, "slave.control");

  await t.test("setup enables archiving; the slave's setup creates its control_dir", async () => {
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
    ok(runBin("wal-ctl", [p.slaveIni, "setup"]), "slave setup");
    assert.ok(existsSync(control), "control_dir made");
    assert.equal(await p.master.value("SELECT current_setting('archive_mode')"), "on");
  });

  await t.test("backup stores one object per file, with its manifest and metadata", async () => {
    p.master.pgbench(["-i", "-s", "1", "-q"]);
    await p.master.query("CREATE TABLE shipped (id serial PRIMARY KEY, tag text NOT NULL)");
    await p.master.query("INSERT INTO shipped (tag) SELECT 'base' FROM generate_series(1, 100)");
    ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
    const set = await keys("site/data.master/");
    for (const k of [
      "backup_label",
      ".walmgr-backup.json",
      ".walmgr-manifest.json",
      "global/pg_control",
      "PG_VERSION",
    ]) {
      assert.ok(set.includes(`site/data.master/${k}`), `${k} in the set`);
    }
    assert.ok(!set.includes("site/data.master/postmaster.pid"), "postmaster.pid excluded");
    assert.ok(!(await keys("site/logs.complete/BACKUPLOCK")).length, "BACKUPLOCK released");
    const list = ok(runBin("wal-ctl", [p.slaveIni, "listbackups"]), "listbackups");
    assert.match(list.stdout, /data\.master/);
    const verified = ok(runBin("wal-ctl", [p.slaveIni, "verify"]), "verify");
    assert.match(verified.stdout, /all backup sets verified/);
  });

  await t.test("a second backup is refused while one holds BACKUPLOCK; SIGTERM releases it", async () => {
    const first = spawnBin("wal-backup", [p.masterIni]);
    await waitFor(
      "BACKUPLOCK in the bucket",
      async () => (await keys("site/logs.complete/BACKUPLOCK")).length > 0,
      30_000,
    );
    const second = runBin("wal-backup", [p.masterIni]);
    assert.equal(second.status, 4, second.stderr);
    assert.match(second.stderr, /another backup holds s3:\/\/|another backup holds \/site\/logs.complete\/BACKUPLOCK/);
    first.child.kill("SIGTERM");
    const end = await first.exited;
    assert.notEqual(end.status, 0, "the killed backup must not report success");
    assert.equal((await keys("site/logs.complete/BACKUPLOCK")).length, 0, "BACKUPLOCK released on SIGTERM");
    assert.equal((await keys("site/.walmgr-tmp")).length, 0, "the half-built set removed");
    assert.ok((await keys("site/data.master/backup_label")).length, "the previous set is untouched");
  });

  await t.test("restore fetches the set and starts a standby that replays switched segments", async () => {
    ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore");
    assert.ok(existsSync(join(p.slaveData, "standby.signal")));
    assert.ok((await keys("site/data.master/backup_label")).length, "the set stays in the bucket");
    // The standby's record (several standbys) is in the bucket, where the master's purge sees it.
    assert.equal((await keys("site/logs.complete/.walmgr-standby.")).length, 1, "one standby record");
    const st = ok(runBin("wal-ctl", [p.masterIni, "status", "--json"]), "status");
    assert.equal((JSON.parse(st.stdout) as { standbys: unknown[] }).standbys.length, 1);
    p.master.pgbench(["-t", "200", "-c", "2", "-n"]);
    await p.master.query("INSERT INTO shipped (tag) SELECT 'replayed' FROM generate_series(1, 50)");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor(
      "the standby to replay the switched segment",
      async () => (await count(p.slave, "replayed")) === 50,
      90_000,
    );
    // check on both sides, through the bucket: the probe write and a forced WAL switch reach it;
    // the slave walks the newest set's WAL chain in the bucket and finds its standby replaying.
    const mc = runBin("wal-ctl", [p.masterIni, "check", "--timeout", "60"]);
    assert.equal(mc.status, 0, mc.stdout + mc.stderr);
    assert.match(mc.stdout, /^OK +WAL switch archived: /m);
    const sc = runBin("wal-ctl", [p.slaveIni, "check"]);
    assert.equal(sc.status, 0, sc.stdout + sc.stderr);
    assert.match(sc.stdout, /^OK +newest backup's WAL: /m);
  });

  await t.test("pause (a local control file) holds back a new segment; continue lets it through", async () => {
    ok(runBin("wal-ctl", [p.slaveIni, "pause"]), "pause");
    assert.ok(existsSync(join(control, "PAUSE")));
    const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    await p.master.query("INSERT INTO shipped (tag) SELECT 'paused' FROM generate_series(1, 30)");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor(`${seg} to be archived`, async () => (await keys(`site/logs.complete/${seg}`)).length > 0, 30_000);
    await sleep(6_000);
    assert.equal(await count(p.slave, "paused"), 0, "a paused standby replayed new WAL");
    ok(runBin("wal-ctl", [p.slaveIni, "continue"]), "continue");
    await waitFor("the standby to replay after continue", async () => (await count(p.slave, "paused")) === 30, 60_000);
  });

  await t.test("sync republishes the in-progress segment whole; boot keeps its rows", async () => {
    await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 20)");
    const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    ok(runBin("wal-sync", [p.masterIni]), "wal-sync");
    const head = await swift.request("HEAD", `/${BUCKET}/site/logs.partial/${seg}`);
    assert.equal(head.status, 200);
    assert.equal(Number(head.headers["content-length"]), 16 * 1024 * 1024, "stored full-size");
    await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 5)");
    ok(runBin("wal-sync", [p.masterIni]), "second wal-sync");
    const masterRows = await p.master.query<{ tag: string; n: string }>(
      "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag",
    );
    const masterSum = await p.master.value<string>("SELECT sum(abalance)::text FROM pgbench_accounts");
    p.master.stop("immediate");
    assert.equal((await keys(`site/logs.complete/${seg}`)).length, 0, `${seg} must not be archived`);
    ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
    assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), false);
    const slaveRows = await p.slave.query<{ tag: string; n: string }>(
      "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag",
    );
    assert.deepEqual(slaveRows, masterRows);
    assert.equal(await p.slave.value<string>("SELECT sum(abalance)::text FROM pgbench_accounts"), masterSum);
  });
});
