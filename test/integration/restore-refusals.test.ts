/**
 * What `restore` refuses before it changes anything, with no PostgreSQL server involved: a
 * destination that is not a data directory, bad --target-* values; and an unwritable
 * destination is an I/O error naming the path, not a crash.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempDir, mkdirAs, removeTempDir, runBin } from "../helpers/env";
import { writeFileAs } from "../helpers/walmgr";

let base: string;
let slave: string;

/** Every path under `dir` with size, mode and mtime: any change shows. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const st = statSync(p);
      out.push(`${p} ${st.size} ${st.mode.toString(8)} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** A set that looks like one to restore (it is never started here). */
function makeSet(name: string): void {
  const set = join(slave, name);
  mkdirAs(join(set, "global"));
  writeFileAs(join(set, "backup_label"), "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n");
  writeFileAs(join(set, "PG_VERSION"), "15\n");
  writeFileAs(join(set, "global", "pg_control"), "x".repeat(512));
}

function ini(name: string, lines: string): string {
  const path = join(base, name);
  writeFileAs(path, `[wal-slave]\nslave = ${slave}\n${lines}\n`);
  return path;
}

before(() => {
  base = makeTempDir("restore-refusals");
  slave = join(base, "slave");
  mkdirAs(join(slave, "logs.complete"));
  makeSet("data.master");
  makeSet("data.master.0");
});

after(() => removeTempDir(base));

test("a destination that is neither empty nor a data directory is refused, its files untouched (backup_datadir = no)", () => {
  const home = join(base, "home");
  mkdirAs(join(home, "sub"));
  writeFileAs(join(home, "thesis.tex"), "years of work");
  writeFileAs(join(home, "sub", "notes"), "more");
  const s = ini("no-keep.ini", `slave_data = ${home}\nbackup_datadir = no`);
  const want = snapshot(base);
  for (const args of [
    ["restore", "data.master", home], // a named set into DST
    ["restore"], // the newest set into slave_data
  ]) {
    const res = runBin("wal-ctl", [s, ...args]);
    assert.equal(res.status, 2, `${args.join(" ")}: ${res.stdout}${res.stderr}`);
    assert.match(res.stderr, new RegExp(`refusing to restore into ${home}: .*neither empty nor a PostgreSQL data`));
    assert.doesNotMatch(res.stderr, /internal error/);
    assert.deepEqual(snapshot(base), want, "nothing may change: not the directory, not the sets");
  }
  assert.equal(readFileSync(join(home, "thesis.tex"), "utf8"), "years of work");
});

test("an unwritable parent of the destination is exit 9 naming the path, not an internal error", () => {
  const ro = join(base, "ro");
  const dst = join(ro, "sdata");
  mkdirAs(dst);
  writeFileAs(join(dst, "PG_VERSION"), "15\n");
  chmodSync(ro, 0o555);
  try {
    for (const keep of ["yes", "no"]) {
      const s = ini(`ro-${keep}.ini`, `slave_data = ${dst}\nbackup_datadir = ${keep}`);
      const want = snapshot(base);
      const res = runBin("wal-ctl", [s, "restore"]);
      assert.equal(res.status, 9, `backup_datadir = ${keep}: ${res.stdout}${res.stderr}`);
      assert.match(res.stderr, new RegExp(ro));
      assert.match(res.stderr, /HINT: check the owner and mode/);
      assert.doesNotMatch(res.stderr, /internal error|\n\s+at /);
      assert.deepEqual(snapshot(base), want, "the set is not consumed, the old directory not touched");
    }
  } finally {
    chmodSync(ro, 0o755);
  }
  assert.ok(existsSync(join(slave, "data.master", "backup_label")));
});

test("bad --target-* values exit 2 naming the option, and nothing is written", () => {
  const s = ini("pitr.ini", `slave_data = ${join(base, "sdata")}`);
  const dst = join(base, "pitr");
  const want = snapshot(base);
  const cases: [string, string][] = [
    ["--target-name", "before\nupgrade"],
    ["--target-time", "not a time"],
    ["--target-time", "2024-02-30 10:00:00"],
    ["--target-lsn", "0/XYZ"],
    ["--target-xid", "12 OR 1=1"],
  ];
  for (const [opt, value] of cases) {
    const res = runBin("wal-ctl", [s, "restore", "data.master.0", dst, opt, value]);
    assert.equal(res.status, 2, `${opt} ${JSON.stringify(value)}: ${res.stdout}${res.stderr}`);
    assert.match(res.stderr, new RegExp(`${opt} .* is not valid`));
    assert.ok(!existsSync(dst), `${opt}: nothing may be restored`);
    assert.deepEqual(snapshot(base), want);
  }
});
