/**
 * `restore` of a set with two tablespaces, on real PostgreSQL 15, where the tablespaces' original
 * paths are free on this machine (the master is gone, its tablespace folders moved away): kill -9
 * at each point of the tablespace step (each rerun carries on), two restores interleaved (a
 * pending restore never takes over the tablespace another restore placed at a path it had
 * chosen), and a directory a pending restore had claimed replaced meanwhile (left as it is).
 *
 * WALMGR_TEST_CRASH_AT=<point> makes wal-ctl kill itself with SIGKILL at that named point of the
 * restore (src/crash-point.ts, crashPoint); a point inside the tablespace loop fires
 * at the first tablespace.
 */
import assert from "node:assert/strict";
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CrashPoint } from "../../src/command/restore/journal";
import { Cluster, freePort } from "../helpers/cluster";
import { mkdirAs, ok, removeTempDir, runBin, waitFor, type RunResult } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
let tsA: string;
let tsB: string;
/** What every restored node must hold once it has replayed the archive. */
let want: { t: string; a: string; b: string };
const started: Cluster[] = [];

/** Every file and folder under `dir` with its inode: changes when anything is replaced. */
function inodeTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string): void => {
    for (const n of readdirSync(d).sort()) {
      const st = lstatSync(join(d, n));
      out.push(`${rel}${n} ${st.ino} ${st.size}`);
      if (st.isDirectory()) walk(join(d, n), `${rel}${n}/`);
    }
  };
  walk(dir, "");
  return out;
}

/** OID → link target of each tablespace of a restored data directory. */
function links(dataDir: string): Record<string, string> {
  const dir = join(dataDir, "pg_tblspc");
  return Object.fromEntries(readdirSync(dir).map((oid) => [oid, readlinkSync(join(dir, oid))]));
}

function restoreKilledAt(point: CrashPoint, args: string[]): RunResult {
  const res = runBin("wal-ctl", [p.slaveIni, "restore", ...args], { env: { WALMGR_TEST_CRASH_AT: point } });
  assert.equal(res.signal, "SIGKILL", `restore should die at ${point}: exit ${res.status}\n${res.stderr}`);
  return res;
}

/** Starts a restored (standby) data directory and waits until it holds every row. */
async function startHoldsEveryRow(dataDir: string, name: string): Promise<void> {
  const c = new Cluster(dataDir, await freePort(), p.base, join(p.base, `${name}.log`));
  started.push(c);
  c.start();
  await holdsEveryRow(c, name);
}

/** Waits until a running restored standby holds every row. */
async function holdsEveryRow(c: Cluster, name: string): Promise<void> {
  await waitFor(
    `${name} to replay every row`,
    async () => {
      const got = await c.query<{ t: string; a: string; b: string }>(
        "SELECT (SELECT count(*) FROM t)::text AS t, (SELECT count(*) FROM in_a)::text AS a, (SELECT count(*) FROM in_b)::text AS b",
      );
      return JSON.stringify(got[0]) === JSON.stringify(want);
    },
    90_000,
  );
}

/** Stops what a test started and removes what it restored, so the original paths are free again. */
function clearRestores(...dirs: string[]): void {
  for (const c of started.splice(0)) c.stop("immediate");
  p.slave.stop("immediate");
  for (const d of [...dirs, tsA, tsB]) rmSync(d, { recursive: true, force: true });
  for (const n of readdirSync(p.base)) {
    if (n.includes("_tblspc_") || /^slave-data\.\d+$/.test(n))
      rmSync(join(p.base, n), { recursive: true, force: true });
  }
}

/** Hidden names a restore uses beside DST and beside the sets: none may be left, nor a claim marker. */
function leftovers(...tablespaceDirs: string[]): string[] {
  const hidden = [p.base, p.slaveDir].flatMap((d) =>
    readdirSync(d)
      .filter((n) => n.startsWith(".walmgr-restore.") || n.startsWith(".walmgr-gone."))
      .map((n) => join(d, n)),
  );
  const markers = tablespaceDirs.filter((d) => existsSync(join(d, ".walmgr-restore.claim")));
  return [...hidden, ...markers];
}

before(async () => {
  p = await createPair("restore-ts");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  tsA = join(p.base, "tsA");
  tsB = join(p.base, "tsB");
  mkdirAs(tsA);
  mkdirAs(tsB);
  await p.master.query(`CREATE TABLESPACE tsa LOCATION '${tsA}'`);
  await p.master.query(`CREATE TABLESPACE tsb LOCATION '${tsB}'`);
  await p.master.query("CREATE TABLE t (v int)");
  await p.master.query("CREATE TABLE in_a (v int) TABLESPACE tsa");
  await p.master.query("CREATE TABLE in_b (v int) TABLESPACE tsb");
  await p.master.query("INSERT INTO t SELECT generate_series(1, 10)");
  await p.master.query("INSERT INTO in_a SELECT generate_series(1, 20)");
  await p.master.query("INSERT INTO in_b SELECT generate_series(1, 30)");
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  await p.master.query("INSERT INTO t SELECT generate_series(1, 5)");
  await p.master.query("INSERT INTO in_a SELECT generate_series(1, 6)");
  await p.master.query("INSERT INTO in_b SELECT generate_series(1, 7)");
  const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor(`${seg} archived`, () => existsSync(join(p.slaveDir, "logs.complete", seg)), 30_000);
  want = { t: "15", a: "26", b: "37" };
  // The master is gone; on this machine the tablespaces' original paths are free.
  p.master.stop();
  renameSync(tsA, `${tsA}.master`);
  renameSync(tsB, `${tsB}.master`);
});

after(() => {
  for (const c of started) c.stop("immediate");
  if (p) stopPair(p);
  if (p) removeTempDir(p.base);
});

test("kill -9 at each point of the tablespace step: every rerun carries on, both tablespaces end at their paths", async () => {
  const args = ["data.master", p.slaveData];
  for (const point of [
    "prepare",
    "tablespaces-claimed",
    "tablespace-moved",
    "tablespace-linked",
    "settings",
  ] as const) {
    restoreKilledAt(point, args);
    assert.ok(existsSync(join(p.base, ".walmgr-restore.slave-data.json")), `${point}: the journal is there`);
  }
  ok(runBin("wal-ctl", [p.slaveIni, "restore", ...args]), "the rerun after the last kill");
  assert.deepEqual(Object.values(links(p.slaveData)).sort(), [tsA, tsB]);
  for (const ts of [tsA, tsB]) {
    assert.ok(
      readdirSync(ts).some((n) => n.startsWith("PG_15_")),
      `${ts} holds the tablespace's files`,
    );
  }
  assert.deepEqual(leftovers(tsA, tsB), []);
  // slave_data: the restore started it (slave_start_cmd).
  await holdsEveryRow(p.slave, "the resumed standby");
  clearRestores(p.slaveData);
});

test("two restores interleaved: the rerun of the interrupted one never takes over the other's tablespace", async () => {
  const x = join(p.base, "restore-x");
  const y = join(p.base, "restore-y");
  // Y places its first tablespace and dies; it has chosen tsB (free) for its second.
  restoreKilledAt("tablespace-linked", ["data.master", y]);
  assert.ok(
    readdirSync(tsA).some((n) => n.startsWith("PG_15_")),
    "Y's first tablespace is at tsA",
  );
  // X, meanwhile, restores the same set elsewhere, completely.
  ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master", x]), "restore X");
  const xLinks = links(x);
  const xTrees = Object.fromEntries(Object.values(xLinks).map((d) => [d, inodeTree(d)]));
  // Y's rerun finishes Y.
  ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master", y]), "the rerun of Y");
  const yLinks = links(y);
  const all = [...Object.values(xLinks), ...Object.values(yLinks)];
  assert.equal(new Set(all).size, 4, `four tablespace directories, none shared: ${JSON.stringify({ xLinks, yLinks })}`);
  for (const [d, tree] of Object.entries(xTrees)) {
    assert.deepEqual(inodeTree(d), tree, `X's tablespace ${d} is untouched by Y's rerun`);
  }
  assert.deepEqual(leftovers(...all), []);
  await startHoldsEveryRow(x, "restore-x");
  await startHoldsEveryRow(y, "restore-y");
  clearRestores(x, y);
});

test("a directory a pending restore claimed, replaced meanwhile: left as it is, the tablespace goes elsewhere", async () => {
  const y = join(p.base, "restore-z");
  restoreKilledAt("tablespaces-claimed", ["data.master", y]);
  const journal = JSON.parse(readFileSync(join(p.base, ".walmgr-restore.restore-z.json"), "utf8")) as {
    tablespaces: Record<string, string>;
  };
  const oidB = Object.entries(journal.tablespaces).find(([, d]) => d === tsB)?.[0];
  assert.ok(oidB !== undefined, `tsB was claimed: ${JSON.stringify(journal.tablespaces)}`);
  assert.ok(existsSync(join(tsB, ".walmgr-restore.claim")), "with a marker naming the restore");
  // Someone removes the claimed (still empty) directory and puts their own there.
  rmSync(tsB, { recursive: true });
  mkdirAs(tsB);
  writeFileAs(join(tsB, "theirs.txt"), "not a restore's\n");
  const before = inodeTree(tsB);
  const res = ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master", y]), "the rerun");
  assert.match(res.stderr, /is not the directory this restore made for tablespace \d+ .*left as it is/);
  assert.deepEqual(inodeTree(tsB), before, "the replaced directory is untouched");
  const yLinks = links(y);
  assert.equal(yLinks[oidB], `${y}_tblspc_${oidB}`);
  assert.deepEqual(leftovers(...Object.values(yLinks)), []);
  await startHoldsEveryRow(y, "restore-z");
  clearRestores(y);
});
