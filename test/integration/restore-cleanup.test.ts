/**
 * wal-restore with %r: with keep_backups = 0 it removes WAL older than %r that no backup set in
 * full_backup needs, and nothing while a backup holds BACKUPLOCK; keep_backups > 0 keeps it all
 * (backup's purge takes care of it then).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, beforeEach, test } from "node:test";
import { makeTempDir, mkdirAs, removeTempDir, runBin } from "../helpers/env";
import { writeFileAs } from "../helpers/walmgr";

let base: string;
let completed: string;
const segs = [1, 2, 3, 4, 5].map((n) => `00000001000000000000000${n}`);
const seg = (i: number): string => segs[i] ?? "";

before(() => {
  base = makeTempDir("cleanup");
  completed = join(base, "slave", "logs.complete");
  mkdirAs(completed);
  writeFileAs(join(base, "master.ini"), `[wal-master]\nslave = ${base}/slave\n`);
});

/** (Re-)archives every segment, a .history and a .backup file; no backup set, no lock. */
beforeEach(() => {
  rmSync(join(base, "slave", "data.master"), { recursive: true, force: true });
  for (const n of readdirSync(join(base, "slave")).filter((n) => n.startsWith(".walmgr-restore.")))
    rmSync(join(base, "slave", n), { recursive: true, force: true });
  rmSync(join(completed, "BACKUPLOCK"), { force: true });
  for (const name of [...segs, "00000002.history", "000000010000000000000002.00000028.backup"]) {
    writeFileAs(join(base, "src"), name);
    assert.equal(runBin("wal-archive", [join(base, "master.ini"), join(base, "src"), name]).status, 0);
  }
});

after(() => removeTempDir(base));

/** Runs wal-restore for the newest segment with %r = segs[3], using a slave.ini with `extra`. */
function restoreWithR(extra = ""): void {
  writeFileAs(
    join(base, "slave.ini"),
    `[wal-slave]\nslave = ${base}/slave\nfull_backup = %(slave)s/data.master\n${extra}`,
  );
  rmSync(join(base, "out"), { force: true });
  const res = runBin("wal-restore", [join(base, "slave.ini"), seg(4), join(base, "out"), seg(3)]);
  assert.equal(res.status, 0, res.stderr);
}

test("keep_backups > 0: nothing is removed", () => {
  restoreWithR("keep_backups = 2\n");
  for (const s of segs) assert.ok(existsSync(join(completed, s)), s);
});

test("keep_backups = 0, no backup set: segments older than %r go, with their checksums; .history and .backup stay", () => {
  restoreWithR();
  const left = readdirSync(completed).sort();
  for (const s of segs.slice(0, 3)) {
    assert.ok(!left.includes(s), `${s} should be removed`);
    assert.ok(!left.includes(`.${s}.sha256`), `checksum of ${s} should be removed`);
  }
  for (const s of [seg(3), seg(4), "00000002.history", "000000010000000000000002.00000028.backup"]) {
    assert.ok(left.includes(s), `${s} should stay`);
  }
});

test("keep_backups = 0: WAL the kept backup set needs stays, even when older than %r", () => {
  const set = join(base, "slave", "data.master");
  mkdirAs(set);
  writeFileAs(join(set, ".walmgr-backup.json"), `${JSON.stringify({ startWal: seg(1) })}\n`);
  restoreWithR();
  const left = readdirSync(completed);
  assert.ok(!left.includes(seg(0)), `${seg(0)} is needed by nobody`);
  for (const s of segs.slice(1)) assert.ok(left.includes(s), `${s} is needed by the set starting at ${seg(1)}`);
});

test("keep_backups = 0: a set whose start cannot be read keeps everything", () => {
  mkdirAs(join(base, "slave", "data.master"));
  restoreWithR();
  for (const s of segs) assert.ok(existsSync(join(completed, s)), s);
});

test("keep_backups = 0: nothing is cleaned up while a backup holds BACKUPLOCK", () => {
  writeFileAs(
    join(completed, "BACKUPLOCK"),
    `${JSON.stringify({ pid: 1, host: "elsewhere", started: "x", command: "x" })}\n`,
  );
  restoreWithR();
  for (const s of segs) assert.ok(existsSync(join(completed, s)), s);
});

test("keep_backups = 0: WAL a pending restore's set needs stays (its record, or a claimed set without one)", () => {
  // A restore killed after it took the newest set: no set is listed, its record names the start.
  writeFileAs(
    join(base, "slave", ".walmgr-restore.data.master.4242.pending"),
    `${JSON.stringify({ set: join(base, "slave", "data.master"), startWal: seg(1), dst: "/srv/x", journal: "/srv/.walmgr-restore.x.json" })}\n`,
  );
  restoreWithR();
  let left = readdirSync(completed);
  assert.ok(!left.includes(seg(0)), `${seg(0)} is needed by nobody`);
  for (const s of segs.slice(1)) assert.ok(left.includes(s), `${s} is needed by the pending restore's set`);

  // An earlier version's claim: the claimed set itself names its start.
  rmSync(join(base, "slave", ".walmgr-restore.data.master.4242.pending"));
  const claimed = join(base, "slave", ".walmgr-restore.data.master.4343.claimed");
  mkdirAs(claimed);
  writeFileAs(join(claimed, ".walmgr-backup.json"), `${JSON.stringify({ startWal: seg(2) })}\n`);
  restoreWithR();
  left = readdirSync(completed);
  assert.ok(!left.includes(seg(1)), `${seg(1)} is needed by nobody now`);
  for (const s of segs.slice(2)) assert.ok(left.includes(s), `${s} is needed by the claimed set`);
});
