/**
 * The QUICK START (test/helpers/quickstart.ts) against a real S3-compatible server (OpenStack
 * Swift with s3api, on loopback): the slave directory is s3://BUCKET/site; the standby's PAUSE
 * and STOP are in its local control_dir. Beyond the scenario: a second backup is refused while
 * the first holds the lock object, the set stays in the bucket after a restore, the standby's
 * record is in the bucket where the master's status sees it, and `check` passes on both sides.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ok, removeTempDir, runBin, spawnBin, waitFor } from "../helpers/env";
import { quickStartTest } from "../helpers/quickstart";
import { s3Settings, TestSwift } from "../helpers/swift";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

const BUCKET = "walmgr-qs";

quickStartTest("QUICK START against S3: setup, backup, restore, replay, pause, continue, sync, boot", async () => {
  const swift = await TestSwift.shared();
  let p: Pair | undefined;
  try {
    await swift.createBucket(BUCKET);
    p = await createPair("s3-quickstart", {
      master: `use_xlog_functions = 1\n${s3Settings(swift)}`,
      slave: s3Settings(swift),
    });
  } catch (err) {
    if (p) stopPair(p);
    await swift.stop();
    throw err;
  }
  const pair = p;
  // createPair writes `slave = <local dir>`: point both at the bucket instead.
  for (const ini of [pair.masterIni, pair.slaveIni]) {
    writeFileSync(ini, readFileSync(ini, "utf8").replace(/^slave = .*$/m, `slave = s3://${BUCKET}/site`));
    chmodSync(ini, 0o600);
  }
  const control = join(pair.base, "slave.control");
  const keys = async (prefix: string): Promise<string[]> => {
    const res = await swift.request("GET", `/${BUCKET}?list-type=2&prefix=${encodeURIComponent(prefix)}`);
    return [...res.body.toString("utf8").matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1] ?? "");
  };
  const get = async (rel: string): Promise<Buffer> => {
    const res = await swift.request("GET", `/${BUCKET}/site/${rel}`);
    assert.equal(res.status, 200, `GET site/${rel}`);
    return res.body;
  };
  return {
    ...pair,
    slaveBin: runBin,
    has: async (rel) => (await keys(`site/${rel}`)).includes(`site/${rel}`),
    size: async (rel) => {
      const head = await swift.request("HEAD", `/${BUCKET}/site/${rel}`);
      assert.equal(head.status, 200, `HEAD site/${rel}`);
      return Number(head.headers["content-length"]);
    },
    read: async (rel) => (await get(rel)).toString("utf8"),
    pauseFile: join(control, "PAUSE"),
    slaveLog: join(pair.base, "slave.log"),
    afterSetup: async () => {
      ok(runBin("wal-ctl", [pair.slaveIni, "setup"]), "slave setup");
      assert.ok(existsSync(control), "control_dir made");
    },
    afterBackup: async () => {
      const verified = ok(runBin("wal-ctl", [pair.slaveIni, "verify"]), "verify");
      assert.match(verified.stdout, /all backup sets verified/);
    },
    extraSteps: async (t) => {
      await t.test("a second backup is refused while one holds BACKUPLOCK; SIGTERM releases it", async () => {
        const first = spawnBin("wal-backup", [pair.masterIni]);
        await waitFor(
          "BACKUPLOCK in the bucket",
          async () => (await keys("site/logs.complete/BACKUPLOCK")).length > 0,
          30_000,
        );
        const second = runBin("wal-backup", [pair.masterIni]);
        assert.equal(second.status, 4, second.stderr);
        assert.match(
          second.stderr,
          /another backup holds s3:\/\/|another backup holds \/site\/logs.complete\/BACKUPLOCK/,
        );
        first.child.kill("SIGTERM");
        const end = await first.exited;
        assert.notEqual(end.status, 0, "the killed backup must not report success");
        assert.equal((await keys("site/logs.complete/BACKUPLOCK")).length, 0, "BACKUPLOCK released on SIGTERM");
        assert.equal((await keys("site/.walmgr-tmp")).length, 0, "the half-built set removed");
        assert.ok((await keys("site/data.master/backup_label")).length, "the previous set is untouched");
      });
    },
    afterRestore: async () => {
      assert.ok((await keys("site/data.master/backup_label")).length, "the set stays in the bucket");
      // The standby's record (several standbys) is in the bucket, where the master's purge sees it.
      assert.equal((await keys("site/logs.complete/.walmgr-standby.")).length, 1, "one standby record");
      const st = ok(runBin("wal-ctl", [pair.masterIni, "status", "--json"]), "status");
      assert.equal((JSON.parse(st.stdout) as { standbys: unknown[] }).standbys.length, 1);
      // check on both sides, through the bucket: the probe write and a forced WAL switch reach it;
      // the slave walks the newest set's WAL chain in the bucket and finds its standby replaying.
      const mc = runBin("wal-ctl", [pair.masterIni, "check", "--timeout", "60"]);
      assert.equal(mc.status, 0, mc.stdout + mc.stderr);
      assert.match(mc.stdout, /^OK +WAL switch archived: /m);
      const sc = runBin("wal-ctl", [pair.slaveIni, "check"]);
      assert.equal(sc.status, 0, sc.stdout + sc.stderr);
      assert.match(sc.stdout, /^OK +newest backup's WAL: /m);
    },
    stop: async () => {
      stopPair(pair);
      removeTempDir(pair.base);
      await swift.stop();
    },
  };
});
