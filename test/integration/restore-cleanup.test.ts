/** wal-restore with %r: keep_backups = 0 removes WAL older than %r; keep_backups > 0 keeps it. */
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempDir, mkdirAs, removeTempDir, runBin } from "../helpers/env";
import { writeFileAs } from "../helpers/walmgr";

let base: string;
let completed: string;
const segs = [1, 2, 3, 4, 5].map((n) => `00000001000000000000000${n}`);

before(() => {
  base = makeTempDir("cleanup");
  completed = join(base, "slave", "logs.complete");
  mkdirAs(completed);
  writeFileAs(join(base, "master.ini"), `[wal-master]\nslave = ${base}/slave\n`);
  for (const name of [...segs, "00000002.history", "000000010000000000000002.00000028.backup"]) {
    writeFileAs(join(base, "src"), name);
    assert.equal(runBin("wal-archive", [join(base, "master.ini"), join(base, "src"), name]).status, 0);
  }
});

after(() => removeTempDir(base));

test("keep_backups > 0: nothing is removed", () => {
  writeFileAs(join(base, "keep.ini"), `[wal-slave]\nslave = ${base}/slave\nkeep_backups = 2\n`);
  const res = runBin("wal-restore", [join(base, "keep.ini"), segs[4] ?? "", join(base, "out1"), segs[3] ?? ""]);
  assert.equal(res.status, 0, res.stderr);
  for (const s of segs) assert.ok(existsSync(join(completed, s)), s);
});

test("keep_backups = 0: segments older than %r go, with their checksums; .history and .backup stay", () => {
  writeFileAs(join(base, "slave.ini"), `[wal-slave]\nslave = ${base}/slave\n`);
  const res = runBin("wal-restore", [join(base, "slave.ini"), segs[4] ?? "", join(base, "out2"), segs[3] ?? ""]);
  assert.equal(res.status, 0, res.stderr);
  const left = readdirSync(completed).sort();
  for (const s of segs.slice(0, 3)) {
    assert.ok(!left.includes(s), `${s} should be removed`);
    assert.ok(!left.includes(`.${s}.sha256`), `checksum of ${s} should be removed`);
  }
  for (const s of [segs[3], segs[4], "00000002.history", "000000010000000000000002.00000028.backup"]) {
    assert.ok(left.includes(s ?? ""), `${s ?? ""} should stay`);
  }
});
