/**
 * One-shot `wal-sync` (record mode) while the master switches segments, on real PostgreSQL 15,
 * repeated: since PostgreSQL 13 the rest of a segment after a switch record is written as zero
 * pages (no page headers), and the write position passes through them while the switch is
 * flushed. Those pages are nothing to ship, never an error ("page … holds WAL for 0/0", exit 9).
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { ok, removeTempDir, runBin, spawnBin } from "../helpers/env";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

let p: Pair | undefined;

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("one-shot syncs while the master switches segments, 40 rounds: every sync exits 0", async () => {
  p = await createPair("syncswitch", { master: "use_xlog_functions = 1" });
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  const master = p.master;
  await master.query("CREATE TABLE t (v int)");
  let switching = true;
  let switches = 0;
  // A row, then a switch, over and over: most of the time PostgreSQL is writing the zero pages
  // that fill the rest of a segment after its switch record.
  const switcher = (async () => {
    while (switching) {
      await master.query("INSERT INTO t VALUES (1); SELECT pg_switch_wal()");
      switches++;
    }
  })();
  const failures: string[] = [];
  try {
    for (let i = 0; i < 40; i++) {
      // Spawned, not run synchronously: the switches go on meanwhile.
      const sync = spawnBin("wal-sync", [p.masterIni]);
      const res = await sync.exited;
      if (res.status !== 0) failures.push(`round ${i}: exit ${res.status}\n${sync.output()}`);
    }
  } finally {
    switching = false;
    await switcher;
  }
  assert.ok(switches > 40, `the master switched ${switches} times meanwhile`);
  assert.deepEqual(failures, []);
});
