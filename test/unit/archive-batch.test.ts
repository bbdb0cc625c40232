import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { readySegments } from "../../src/command/archive/batch";

const base = mkdtempSync(join(tmpdir(), "batch-unit-"));
after(() => rmSync(base, { recursive: true, force: true }));

test("readySegments: complete segments marked ready, oldest first, %p and other kinds left out, at most limit", () => {
  const walDir = join(base, "pg_wal");
  const status = join(walDir, "archive_status");
  mkdirSync(status, { recursive: true });
  for (const n of [
    "000000010000000000000005.ready",
    "000000010000000000000003.ready",
    "000000010000000000000004.ready",
    "000000010000000000000002.done",
    "00000002.history.ready",
    "000000010000000000000006.00000028.backup.ready",
    "000000010000000000000007.partial.ready",
    "000000020000000000000007.ready",
    "junk.ready",
  ])
    writeFileSync(join(status, n), "");
  const cur = "000000010000000000000003";
  const all = readySegments(join(walDir, cur), cur, 10);
  assert.equal(all.statusDir, status);
  assert.deepEqual(
    all.wals.map((w) => w.name),
    ["000000010000000000000004", "000000010000000000000005", "000000020000000000000007"],
  );
  assert.deepEqual(
    readySegments(join(walDir, cur), cur, 1).wals.map((w) => w.name),
    ["000000010000000000000004"],
  );
  assert.deepEqual(readySegments(join(walDir, cur), cur, 0).wals, []);
  // Run by hand on a file outside pg_wal: no archive_status beside it, no batch.
  assert.deepEqual(readySegments(join(base, cur), cur, 10).wals, []);
});
