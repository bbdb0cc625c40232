/**
 * The point of the sync daemon: with loop_delay = 1, rows committed on the master that never
 * reached a complete segment are on the slave after boot, when the master dies (-m immediate)
 * two loop delays after the commit.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { rpoTrial, startDaemon, stopDaemon, waitShipped } from "../helpers/daemon";
import { ok, removeTempDir, runBin, type Spawned } from "../helpers/env";
import { createPair, stopPair } from "../helpers/walmgr";

test("daemon with loop_delay = 1: a boot after the master dies loses nothing committed two loops earlier", async () => {
  const r = await rpoTrial("daemon-rpo", { loopDelay: 1, waitLoops: 2 });
  assert.equal(r.segmentArchived, false, `${r.segment} was archived: the rows must be partial-only for this test`);
  assert.equal(r.daemonExit, 0, "the daemon stops cleanly on SIGTERM even with the master gone");
  assert.equal(r.lostRows, 0, `lost ${r.lostRows} of ${r.rows} rows (${JSON.stringify(r)})`);
  assert.equal(r.recovered, r.rows);
  assert.equal(r.bytesLost, 0, `the slave recovered to ${r.recoveredTo}, the master ended at ${r.masterEnd}`);
});

test("segment switch while archiving fails: the rest of the old segment is shipped, boot keeps every row", async () => {
  const p = await createPair("daemon-switch", {
    master: "use_xlog_functions = 1\nloop_delay = 1\npidfile = daemon.pid",
  });
  const completed = join(p.slaveDir, "logs.complete");
  let d: Spawned | undefined;
  try {
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
    await p.master.query("CREATE TABLE s (id serial PRIMARY KEY, tag text NOT NULL)");
    ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
    ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore");
    // From here on archive_command fails: only the daemon brings WAL to the slave.
    chmodSync(completed, 0o500);
    d = await startDaemon(p);
    await p.master.query("INSERT INTO s (tag) SELECT 'shipped' FROM generate_series(1, 100)");
    await waitShipped(p, await p.master.value<string>("SELECT pg_current_wal_lsn()::text"));
    const old = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    // Freeze the daemon so that the next rows and the switch happen between two of its loops.
    const pid = d.child.pid ?? 0;
    process.kill(pid, "SIGSTOP");
    await p.master.query("INSERT INTO s (tag) SELECT 'tail' FROM generate_series(1, 100)");
    await p.master.query("SELECT pg_switch_wal()");
    await p.master.query("INSERT INTO s (tag) SELECT 'next' FROM generate_series(1, 100)");
    const end = await p.master.value<string>("SELECT pg_current_wal_lsn()::text");
    process.kill(pid, "SIGCONT");
    await waitShipped(p, end);
    const daemonOutput = d.output();
    p.master.stop("immediate");
    assert.ok(!existsSync(join(completed, old)), `${old} must not be archived for this test`);
    assert.equal((await stopDaemon(d)).status, 0);
    d = undefined;
    chmodSync(completed, 0o700);
    ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
    const rows = await p.slave.query<{ tag: string; n: string }>(
      "SELECT tag, count(*)::text AS n FROM s GROUP BY tag ORDER BY tag",
    );
    assert.deepEqual(rows, [
      { tag: "next", n: "100" },
      { tag: "shipped", n: "100" },
      { tag: "tail", n: "100" },
    ]);
    assert.match(daemonOutput, new RegExp(`switched from ${old}`));
  } finally {
    if (d) await stopDaemon(d);
    chmodSync(completed, 0o700);
    stopPair(p);
    removeTempDir(p.base);
  }
});
