/**
 * File-mode sync (use_xlog_functions = 0): the newest pg_wal segment is copied whole, and a
 * boot after the master dies keeps the rows that were only in that segment.
 */
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { removeTempDir, runBin, ok } from "../helpers/env";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

let p: Pair;

before(async () => {
  p = await createPair("filemode", { master: "use_xlog_functions = 0" });
});

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("file-mode sync ships the in-progress segment whole and boot replays it", async () => {
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id int)");
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore");
  await p.master.query("INSERT INTO t SELECT generate_series(1, 777)");
  const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  ok(runBin("wal-sync", [p.masterIni]), "wal-sync");
  assert.equal(statSync(join(p.slaveDir, "logs.partial", seg)).size, 16 * 1024 * 1024);
  p.master.stop("immediate");
  assert.ok(!existsSync(join(p.slaveDir, "logs.complete", seg)));
  ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
  assert.equal(await p.slave.value<string>("SELECT count(*)::text FROM t"), "777");
  assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), false);
});
