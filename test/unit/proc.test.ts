/**
 * Which walmgr-ts program a process runs, from its command line (proc.ts ourProgram): the lock
 * and claim holders are judged by it, so a holder misread as "not ours" has its lock or claim
 * taken for litter and broken while it works.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ourProgram, WALMGR_PROGRAMS } from "../../src/proc";

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

test("WALMGR_PROGRAMS names every bundle (one per src/main file), so no program of ours is judged a stranger", () => {
  const mains = readdirSync(join(__dirname, "..", "..", "src", "main"))
    .filter((f) => f.endsWith(".js"))
    .map((f) => f.slice(0, -3))
    .sort();
  assert.deepEqual([...WALMGR_PROGRAMS].sort(), mains);
  // The background pusher as startPusher starts it, through the code-cache loader.
  assert.deepEqual(
    ourProgram(
      ["/usr/bin/node", "/w/dist/src/cli/code-cache.js", "/w/dist/bin/wal-archive-ahead.js", "/c/m.ini", "/d/pg_wal"],
      WALMGR_PROGRAMS,
    )?.program,
    "wal-archive-ahead",
  );
});
