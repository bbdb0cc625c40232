/**
 * What `restore` refuses before it changes anything, with no PostgreSQL server involved: a
 * destination that is not a data directory, bad --target-* values; an unwritable destination is
 * an I/O error naming the path, not a crash; two restores into one directory never interleave.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempDir, mkdirAs, ok, removeTempDir, runBin, spawnBin } from "../helpers/env";
import { snapshot } from "../helpers/fs";
import { writeFileAs } from "../helpers/walmgr";

let base: string;
let slave: string;

/** A set that looks like one to restore (it is never started here). */
function makeSet(name: string): void {
  const set = join(slave, name);
  mkdirAs(join(set, "global"));
  writeFileAs(join(set, "backup_label"), "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n");
  writeFileAs(join(set, "PG_VERSION"), "15\n");
  writeFileAs(join(set, "global", "pg_control"), "x".repeat(512));
  mkdirAs(join(set, "base", "1"));
  for (let i = 0; i < 150; i++) writeFileAs(join(set, "base", "1", String(16384 + i)), `${name} ${i}\n`.repeat(64));
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

test("a named set that lacks a file its manifest lists is not restored, and nothing is left pending", () => {
  makeSet("data.master.1");
  writeFileAs(
    join(slave, "data.master.1", ".walmgr-manifest.json"),
    JSON.stringify({ files: { PG_VERSION: { size: 3, sha256: "" }, "base/1/99999": { size: 8192, sha256: "" } } }),
  );
  const s = ini("manifest.ini", `slave_data = ${join(base, "sdata")}`);
  const dst = join(base, "from-broken-set");
  const res = runBin("wal-ctl", [s, "restore", "data.master.1", dst]);
  assert.equal(res.status, 9, res.stderr);
  assert.match(res.stderr, /lacks files its manifest lists.*base\/1\/99999/);
  assert.ok(!existsSync(dst));
  assert.deepEqual(
    readdirSync(base).filter((n) => n.startsWith(".walmgr-")),
    [],
    "rolled back: no journal or stage is left",
  );
  ok(runBin("wal-ctl", [s, "restore", "data.master.0", dst]), "another set restores at once");
});

test("a set whose manifest does not parse as one is not restored: never read as 'nothing missing'", () => {
  const s = ini("bad-manifest.ini", `slave_data = ${join(base, "sdata")}`);
  // JSON, but no manifest: `{}` and a `files` that is no object read as empty before.
  for (const [i, text] of ['{"version": 2}', '{"files": "all of them"}', '{"files": [["PG_VERSION", 3]]}'].entries()) {
    const name = `data.master.${i + 2}`;
    makeSet(name);
    writeFileAs(join(slave, name, ".walmgr-manifest.json"), text);
    const dst = join(base, `from-bad-manifest-${i}`);
    const res = runBin("wal-ctl", [s, "restore", name, dst]);
    assert.equal(res.status, 9, `${text}: ${res.stdout}${res.stderr}`);
    assert.match(res.stderr, /backup manifest .*\.walmgr-manifest\.json is damaged/);
    assert.ok(!existsSync(dst), `${text}: nothing may be restored`);
    assert.deepEqual(
      readdirSync(base).filter((n) => n.startsWith(".walmgr-")),
      [],
      "rolled back: no journal or stage is left",
    );
  }
});

test("two restores into one DST at once never interleave: one is refused (exit 4) or they run in turn", async () => {
  const s = ini("race.ini", `slave_data = ${join(base, "sdata")}`);
  const want = listing(join(slave, "data.master.0"));
  let refused = 0;
  for (let i = 0; i < 20; i++) {
    const dst = join(base, `race${i}`);
    const runs = [0, 1].map(() => spawnBin("wal-ctl", [s, "restore", "data.master.0", dst]));
    const ends = await Promise.all(runs.map((r) => r.exited));
    for (const [k, end] of ends.entries()) {
      assert.ok(end.status === 0 || end.status === 4, `run ${k}: exit ${String(end.status)}\n${runs[k]?.output()}`);
      if (end.status === 4) {
        assert.match(runs[k]?.output() ?? "", /another restore into .* is running/);
        refused++;
      }
    }
    for (const d of ends.every((e) => e.status === 0) ? [dst, `${dst}.0`] : [dst]) {
      assert.deepEqual(listing(d), want, `${d} holds the whole set`);
      assert.ok(existsSync(join(d, "standby.signal")));
    }
    assert.deepEqual(
      readdirSync(base).filter((n) => n.startsWith(".walmgr-")),
      [],
      "no lock, journal or stage is left",
    );
  }
  assert.ok(refused > 0, "the two runs overlapped at least once");
});

/** The set's files (not the ones restore adds) with their content. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string): void => {
    for (const n of readdirSync(join(dir, rel)).sort()) {
      const r = rel === "" ? n : `${rel}/${n}`;
      if (["postgresql.auto.conf", "standby.signal"].includes(r)) continue;
      if (statSync(join(dir, r)).isDirectory()) walk(r);
      else out.push(`${r} ${readFileSync(join(dir, r), "utf8").slice(0, 40)}`);
    }
  };
  walk("");
  return out;
}
