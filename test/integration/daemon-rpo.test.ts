/**
 * The point of the sync daemon: with loop_delay = 1, rows committed on the master that never
 * reached a complete segment are on the slave after boot, when the master dies (-m immediate)
 * two loop delays after the commit.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { rpoTrial } from "../helpers/daemon";

test("daemon with loop_delay = 1: a boot after the master dies loses nothing committed two loops earlier", async () => {
  const r = await rpoTrial("daemon-rpo", { loopDelay: 1, waitLoops: 2 });
  assert.equal(r.segmentArchived, false, `${r.segment} was archived: the rows must be partial-only for this test`);
  assert.equal(r.daemonExit, 0, "the daemon stops cleanly on SIGTERM even with the master gone");
  assert.equal(r.lostRows, 0, `lost ${r.lostRows} of ${r.rows} rows (${JSON.stringify(r)})`);
  assert.equal(r.recovered, r.rows);
  assert.equal(r.bytesLost, 0, `the slave recovered to ${r.recoveredTo}, the master ended at ${r.masterEnd}`);
});
