/**
 * The QUICK START with master and slave on different hosts: a test sshd on a loopback port,
 * the master's commands as one user reaching the slave directory as another user over ssh
 * (`slave = walslave-test:/path`), the slave's commands and PostgreSQL as the slave's user.
 * The slave directory's name has a space and a quote in it, and compression = 1.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runBin, sleep, waitFor, type RunResult } from "../helpers/env";
import { createRemotePair, runSlaveBin, stopRemotePair, type RemotePair } from "../helpers/remote";
import { slaveUser } from "../helpers/sshd";

let p: RemotePair;

function ok(res: RunResult, what: string): RunResult {
  assert.equal(res.status, 0, `${what} failed (exit ${String(res.status)}):\n${res.stdout}\n${res.stderr}`);
  return res;
}

async function count(c: RemotePair["master"], tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM shipped WHERE tag = $1", [tag]));
}

function sentBytes(res: RunResult): number {
  const m = /, (\d+) bytes sent,/.exec(res.stderr);
  assert.ok(m, `no 'bytes sent' in:\n${res.stderr}`);
  return Number(m[1]);
}

before(async () => {
  p = await createRemotePair("sshq", {
    slaveDirName: "wal ship'ing $(x) dir",
    master: "use_xlog_functions = 1\ncompression = 1",
  });
});

after(() => {
  if (p) stopRemotePair(p);
});

test("QUICK START over ssh: master and slave as different users, odd slave path, compression", async (t) => {
  const completed = join(p.slaveDir, "logs.complete");
  const slaveUid = slaveUser()?.uid;

  await t.test("setup (on the master) creates the slave layout on the slave host", async () => {
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
    assert.equal(await p.master.value("SELECT current_setting('archive_mode')"), "on");
    for (const d of ["logs.complete", "logs.partial", "config.backup"]) {
      const st = statSync(join(p.slaveDir, d));
      assert.ok(st.isDirectory());
      assert.equal(st.mode & 0o777, 0o700);
      if (slaveUid !== undefined) assert.equal(st.uid, slaveUid, `${d} must belong to the slave's user`);
    }
  });

  let firstSent = 0;
  await t.test("backup streams the data directory to the slave host", async () => {
    p.master.pgbench(["-i", "-s", "1", "-q"]);
    await p.master.query("CREATE TABLE shipped (id serial PRIMARY KEY, tag text NOT NULL)");
    await p.master.query("INSERT INTO shipped (tag) SELECT 'base' FROM generate_series(1, 100)");
    await p.master.query("CHECKPOINT");
    const res = ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
    firstSent = sentBytes(res);
    const set = join(p.slaveDir, "data.master");
    assert.match(readFileSync(join(set, "backup_label"), "utf8"), /START WAL LOCATION/);
    assert.ok(!existsSync(join(set, "postmaster.pid")), "postmaster.pid must be excluded");
    assert.ok(!existsSync(join(completed, "BACKUPLOCK")), "BACKUPLOCK must be released");
    assert.ok(existsSync(join(p.slaveDir, "config.backup", "postgresql.conf")));
    const st = statSync(join(set, "PG_VERSION"));
    assert.equal(st.mode & 0o777, 0o600);
    if (slaveUid !== undefined) assert.equal(st.uid, slaveUid);
    const list = ok(runBin("wal-ctl", [p.masterIni, "listbackups"]), "listbackups");
    assert.match(list.stdout, /data\.master/);
  });

  await t.test("a second backup after a small change sends a fraction of the first", async () => {
    await p.master.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 100");
    await p.master.query("CHECKPOINT");
    const res = ok(runBin("wal-backup", [p.masterIni]), "second wal-backup");
    const second = sentBytes(res);
    t.diagnostic(`first backup sent ${firstSent} bytes, second ${second} bytes`);
    assert.ok(second * 4 < firstSent, `second backup sent ${second} bytes, first ${firstSent}`);
    // The manifest is built on the slave host, so the set verifies there.
    const verified = ok(runSlaveBin("wal-ctl", [p.slaveIni, "verify", "data.master"]), "verify on the slave");
    assert.match(verified.stdout, /data\.master: \d{3,} files checked/);
    // From the master too: the manifests, the sets' files and the WAL are read over ssh, where they are.
    const fromMaster = runBin("wal-ctl", [p.masterIni, "verify", "--json"]);
    assert.equal(fromMaster.status, 0, fromMaster.stdout + fromMaster.stderr);
    const rep = JSON.parse(fromMaster.stdout) as {
      sets: { name: string; files: number | null; restorable: boolean }[];
      wal: { files: number; verified: number };
    };
    assert.ok(
      rep.sets.length > 0 && rep.sets.every((s) => (s.files ?? 0) > 100 && s.restorable),
      JSON.stringify(rep.sets),
    );
    assert.ok(rep.wal.verified > 0 && rep.wal.verified === rep.wal.files, JSON.stringify(rep.wal));
    // check over ssh: the probe write and the forced WAL switch reach the slave host.
    const checked = runBin("wal-ctl", [p.masterIni, "check", "--timeout", "60"]);
    assert.equal(checked.status, 0, checked.stdout + checked.stderr);
    assert.match(checked.stdout, /^OK +slave directory writable: .*\(ssh /m);
  });

  await t.test("restore on the slave host starts a standby that replays WAL shipped over ssh", async () => {
    ok(runSlaveBin("wal-ctl", [p.slaveIni, "restore"]), "restore");
    p.master.pgbench(["-t", "200", "-c", "2", "-n"]);
    await p.master.query("INSERT INTO shipped (tag) SELECT 'replayed' FROM generate_series(1, 50)");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor("the standby to replay", async () => (await count(p.slave, "replayed")) === 50, 90_000);
    const seg = readdirWal(completed)[0];
    assert.ok(seg, "WAL was archived over ssh");
    assert.ok(existsSync(join(completed, `.${seg}.sha256`)), "with its checksum");
  });

  await t.test("pause holds back WAL; continue lets it through", async () => {
    ok(runSlaveBin("wal-ctl", [p.slaveIni, "pause"]), "pause");
    const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    await p.master.query("INSERT INTO shipped (tag) SELECT 'paused' FROM generate_series(1, 30)");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor(`${seg} to be archived`, () => existsSync(join(completed, seg)), 30_000);
    await sleep(5_000);
    assert.equal(await count(p.slave, "paused"), 0, "a paused standby replayed new WAL");
    ok(runSlaveBin("wal-ctl", [p.slaveIni, "continue"]), "continue");
    await waitFor("replay after continue", async () => (await count(p.slave, "paused")) === 30, 60_000);
  });

  await t.test("sync ships the in-progress segment over ssh; boot keeps its rows", async () => {
    await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 20)");
    const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    ok(runBin("wal-sync", [p.masterIni]), "wal-sync");
    assert.equal(statSync(join(p.slaveDir, "logs.partial", seg)).size, 16 * 1024 * 1024);
    await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 5)");
    const second = ok(runBin("wal-sync", [p.masterIni, "-v"]), "second wal-sync");
    assert.match(second.stderr, /shipped \d+ bytes of/);
    const masterRows = await p.master.query("SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag");
    p.master.stop("immediate");
    assert.ok(!existsSync(join(completed, seg)), `${seg} must not be archived`);
    ok(runSlaveBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
    assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), false);
    const slaveRows = await p.slave.query("SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag");
    assert.deepEqual(slaveRows, masterRows);
  });
});

function readdirWal(dir: string): string[] {
  return readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n));
}
