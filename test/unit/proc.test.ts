/**
 * Which walmgr-ts program a process runs, from its command line (proc.ts ourProgram): the lock
 * and claim holders are judged by it, so a holder misread as "not ours" has its lock or claim
 * taken for litter and broken while it works.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { ourProgram } from "../../src/proc";

const PROGRAMS = ["wal-archive", "wal-restore", "wal-sync"] as const;

test("the sh fronts' form, node CODE-CACHE-LOADER BUNDLE ARGS, is the bundle's program", () => {
  assert.deepEqual(
    ourProgram(
      ["node", "/opt/w/dist/src/cli/code-cache.js", "/opt/w/dist/bin/wal-archive.js", "m.ini", "pg_wal/X", "X"],
      PROGRAMS,
    ),
    { program: "wal-archive", args: ["m.ini", "pg_wal/X", "X"] },
  );
  assert.deepEqual(ourProgram(["/usr/bin/node", "--max-old-space-size=64", "/w/bin/wal-sync", "m.ini"], PROGRAMS), {
    program: "wal-sync",
    args: ["m.ini"],
  });
  // The loader running something that is not ours, and names merely mentioned, are not ours.
  assert.equal(ourProgram(["node", "/w/dist/src/cli/code-cache.js", "/tmp/other.js"], PROGRAMS), undefined);
  assert.equal(ourProgram(["tail", "-f", "wal-sync.log"], PROGRAMS), undefined);
});
