/**
 * The fast paths under a real standby (PostgreSQL 15): the master's archiver batches, the
 * standby is fed from the prefetch spool (mostly without Node), and a boot with a filled spool in
 * place still replays every complete segment, then the partial one, and loses nothing.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ok, removeTempDir, runBin, waitFor } from "../helpers/env";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

let p: Pair;

async function count(c: Pair["master"], tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM shipped WHERE tag = $1", [tag]));
}

async function switches(n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await p.master.query("INSERT INTO shipped (tag) SELECT $1 FROM generate_series(1, 200)", [tag]);
    await p.master.query("SELECT pg_switch_wal()");
  }
}

before(async () => {
  p = await createPair("prefetchboot", { master: "use_xlog_functions = 1" });
});

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("a standby fed from the spool; boot with a filled spool replays everything, partial included", async () => {
  const completed = join(p.slaveDir, "logs.complete");
  const spool = join(p.slaveData, "pg_wal", ".walmgr-prefetch");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE shipped (id serial PRIMARY KEY, tag text NOT NULL)");
  ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore");

  await switches(12, "replayed");
  await waitFor("the standby to replay 12 segments", async () => (await count(p.slave, "replayed")) === 2400, 120_000);
  const restoreLog = readFileSync(join(p.base, "slave.log"), "utf8");
  const byNode = restoreLog.split("\n").filter((l) => /restored [0-9A-F]{24} from/.test(l)).length;
  assert.ok(existsSync(join(spool, "meta")), "a spool was made");
  assert.ok(byNode < 12, `expected the shell front to serve some of the 12 segments, Node served ${byNode}`);

  // Paused: nothing is served, but the prefetcher fills the spool.
  ok(runBin("wal-ctl", [p.slaveIni, "pause"]), "pause");
  await switches(4, "spooled");
  await waitFor(
    "the spool to hold segments",
    () => readdirSync(spool).filter((n) => /^[0-9A-F]{24}$/.test(n)).length >= 2,
    60_000,
  );
  assert.equal(await count(p.slave, "spooled"), 0, "a paused standby replayed");
  await p.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 25)");
  const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  ok(runBin("wal-sync", [p.masterIni]), "wal-sync");
  assert.equal(statSync(join(p.slaveDir, "logs.partial", seg)).size, 16 * 1024 * 1024);
  const masterRows = await p.master.query<{ tag: string; n: string }>(
    "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag",
  );
  p.master.stop("immediate");
  assert.ok(!existsSync(join(completed, seg)), "the partial rows must exist only in the partial segment");

  ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
  const slaveRows = await p.slave.query<{ tag: string; n: string }>(
    "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag",
  );
  assert.deepEqual(slaveRows, masterRows, "the booted standby must hold every row the master had");
  assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), false);
});
