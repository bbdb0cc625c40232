/** setup after a failover: which WAL of the new timeline the promoted node no longer holds. */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { segmentsGoneSinceSwitch } from "../../src/command/setup/missed-wal";

test("segments from the timeline's switch point up to the current one that pg_wal lacks", () => {
  const dir = mkdtempSync(join(tmpdir(), "walmgr-unit-gone-"));
  try {
    writeFileSync(join(dir, "00000002.history"), "1\t0/4000A28\tno recovery target specified\n");
    for (const n of ["000000010000000000000003", "000000020000000000000004", "000000020000000000000006"]) {
      writeFileSync(join(dir, n), "");
    }
    const current = "000000020000000000000008";
    writeFileSync(join(dir, current), "");
    truncateSync(join(dir, current), 16 * 1024 * 1024);
    assert.deepEqual(segmentsGoneSinceSwitch(dir, current, readdirSync(dir)), [
      "000000020000000000000005",
      "000000020000000000000007",
    ]);
    // Nothing gone: every segment since the switch is there.
    const all = [...readdirSync(dir), "000000020000000000000005", "000000020000000000000007"];
    assert.deepEqual(segmentsGoneSinceSwitch(dir, current, all), []);
    // Timeline 1 (no .history) and a timeline whose .history is missing: nothing to say.
    assert.deepEqual(segmentsGoneSinceSwitch(dir, "000000030000000000000008", readdirSync(dir)), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
