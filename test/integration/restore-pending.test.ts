/**
 * A pending restore keeps its set's WAL (issue 23 item 1), on real PostgreSQL 15: a restore
 * killed right after it claimed the newest set (kill -9 at the crash point "claimed"), then a
 * backup with keep_backups = 1, must leave the WAL from the claimed set's start in
 * completed_wals (earlier, the purge removed it: the claimed set was counted by nobody), and the
 * rerun restore must bring up a standby that reaches a consistent state and holds every row.
 * `listbackups` shows the pending restore (table and --json); a restore whose set's WAL is gone
 * fails (exit 1) instead of recording "WAL from … on is kept for it", both before anything is
 * changed and on the rerun of a killed one; a new restore into the same DST removes the record
 * of an abandoned one (its journal gone).
 *
 * WALMGR_TEST_CRASH_AT=<point> makes wal-ctl kill itself with SIGKILL at that named point
 * (src/crash-point.ts, crashPoint).
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Ajv2020 from "ajv/dist/2020";
import { ok, REPO_ROOT, removeTempDir, runBin, waitFor, type RunResult } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
const ROWS = "SELECT tag, count(*)::text AS n FROM t GROUP BY tag ORDER BY tag";
const validList = new Ajv2020({ allErrors: true }).compile(
  JSON.parse(readFileSync(join(REPO_ROOT, "schemas", "listbackups.schema.json"), "utf8")) as object,
);

const complete = (): string => join(p.slaveDir, "logs.complete");

async function switchAndArchive(): Promise<void> {
  const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor(`${seg} archived`, () => existsSync(join(complete(), seg)), 30_000);
}

function startWalOf(set: string): string {
  const info = JSON.parse(readFileSync(join(p.slaveDir, set, ".walmgr-backup.json"), "utf8")) as { startWal: string };
  return info.startWal;
}

function restoreKilledAt(point: string): void {
  const res = runBin("wal-ctl", [p.slaveIni, "restore"], { env: { WALMGR_TEST_CRASH_AT: point } });
  assert.equal(res.signal, "SIGKILL", `restore should die at ${point}: exit ${res.status}\n${res.stderr}`);
}

/** Waits until the restored standby is consistent and holds the master's rows. */
async function standbyHoldsEveryRow(): Promise<void> {
  const want = JSON.stringify(await p.master.query(ROWS));
  await waitFor(
    "the restored standby to reach consistency and hold every row",
    async () => {
      try {
        return JSON.stringify(await p.slave.query(ROWS)) === want;
      } catch {
        return false; // "the database system is starting up" until it is consistent
      }
    },
    90_000,
  );
  assert.equal(await p.slave.value<boolean>("SELECT pg_is_in_recovery()"), true, "it is a standby");
}

/** The hidden names a restore leaves beside the sets and beside DST. */
function restoreLeftovers(): string[] {
  return [p.base, p.slaveDir].flatMap((d) =>
    readdirSync(d)
      .filter((n) => n.startsWith(".walmgr-restore."))
      .map((n) => join(d, n)),
  );
}

/** The segment names from `first` up to (not including) `end`, on one timeline (no wrap in these tests). */
function segmentsBetween(first: string, end: string): string[] {
  const out: string[] = [];
  const prefix = first.slice(0, 16);
  for (let n = Number.parseInt(first.slice(16), 16); n < Number.parseInt(end.slice(16), 16); n++)
    out.push(prefix + n.toString(16).toUpperCase().padStart(8, "0"));
  return out;
}

function segmentsFrom(first: string): string[] {
  return readdirSync(complete())
    .filter((n) => /^[0-9A-F]{24}$/.test(n) && n >= first)
    .sort();
}

before(async () => {
  p = await createPair("pending", { master: "keep_backups = 1" });
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial, tag text)");
  await p.master.query("INSERT INTO t (tag) SELECT 'first' FROM generate_series(1, 10)");
});

after(() => {
  if (p) stopPair(p);
  if (p) removeTempDir(p.base);
});

test("a restore killed after claiming its set: the next backup (keep_backups = 1) keeps the set's WAL, listbackups shows it, the rerun restores a standby", async () => {
  ok(runBin("wal-backup", [p.masterIni]), "first backup");
  const start = startWalOf("data.master");
  await p.master.query("INSERT INTO t (tag) SELECT 'second' FROM generate_series(1, 20)");
  for (let i = 0; i < 3; i++) await switchAndArchive();
  restoreKilledAt("claimed");
  assert.ok(!existsSync(join(p.slaveDir, "data.master")), "the set is claimed (hidden) now");

  const backup = ok(runBin("wal-backup", [p.masterIni]), "backup while the restore is pending");
  assert.ok(existsSync(join(complete(), start)), `${start}, where the claimed set starts, is kept`);
  assert.match(backup.stderr, /a pending restore of data\.master into .*slave-data .* needs WAL from/);
  const newStart = startWalOf("data.master");
  assert.ok(newStart > start, `the new set starts later (${newStart})`);
  const needed = segmentsBetween(start, newStart);
  assert.deepEqual(
    needed.filter((n) => !existsSync(join(complete(), n))),
    [],
    `the WAL from ${start} to the new set's start is all there`,
  );

  // listbackups: the new set, and the pending restore (not running now).
  const table = ok(runBin("wal-ctl", [p.slaveIni, "listbackups"]), "listbackups").stdout;
  assert.match(table, /^data\.master\s/m);
  assert.match(table, /pending restores/);
  assert.match(
    table,
    new RegExp(`data\\.master into .*slave-data .*keeps the WAL from ${start} on; not running: finish it with wal-ctl`),
  );
  const rows = JSON.parse(
    ok(runBin("wal-ctl", [p.slaveIni, "listbackups", "--json"]), "listbackups --json").stdout,
  ) as {
    name: string;
    startWal: string;
    pendingRestore?: { set: string; into: string; running: boolean; claimed: string };
  }[];
  assert.ok(validList(rows), `listbackups --json against its schema: ${JSON.stringify(validList.errors)}`);
  const pending = rows.filter((r) => r.pendingRestore !== undefined);
  assert.equal(pending.length, 1, JSON.stringify(rows));
  assert.equal(pending[0]?.startWal, start);
  assert.equal(pending[0]?.pendingRestore?.into, p.slaveData);
  assert.equal(pending[0]?.pendingRestore?.running, false);
  assert.ok(existsSync(pending[0]?.pendingRestore?.claimed ?? ""), "the claimed set is named");

  const rerun = ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "the rerun");
  assert.match(rerun.stderr, /resuming the interrupted restore/);
  assert.match(rerun.stderr, new RegExp(`WAL from ${start} on is kept for it`));
  await switchAndArchive();
  await standbyHoldsEveryRow();
  assert.deepEqual(restoreLeftovers(), [], "no record, claim or journal is left");
  const after = JSON.parse(ok(runBin("wal-ctl", [p.slaveIni, "listbackups", "--json"]), "listbackups").stdout) as {
    pendingRestore?: unknown;
  }[];
  assert.equal(after.filter((r) => r.pendingRestore !== undefined).length, 0, "nothing pending any more");
});

test("a standby restore whose set's start WAL is gone is refused (exit 1) before anything changes", async () => {
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  const start = startWalOf("data.master");
  const aside = join(p.base, `${start}.aside`);
  renameSync(join(complete(), start), aside);
  try {
    const res = runBin("wal-ctl", [p.slaveIni, "restore"]);
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, new RegExp(`${start} is missing.*nothing was changed`));
    assert.doesNotMatch(res.stderr, /is kept for it/);
    assert.ok(existsSync(join(p.slaveDir, "data.master", "backup_label")), "the set is not taken");
    assert.deepEqual(restoreLeftovers(), [], "no journal, record or claim");
    assert.equal(await p.slave.value<boolean>("SELECT pg_is_in_recovery()"), true, "the standby still runs");
  } finally {
    renameSync(aside, join(complete(), start));
  }
});

test("the rerun of a killed restore whose set's start WAL went meanwhile fails (exit 1), never 'kept for it'; with the WAL back it finishes", async () => {
  const start = startWalOf("data.master");
  await p.master.query("INSERT INTO t (tag) SELECT 'third' FROM generate_series(1, 30)");
  await switchAndArchive();
  restoreKilledAt("swap");
  // Gone by hand (or by an earlier version's purge): the rerun must say so.
  const aside = join(p.base, `${start}.aside`);
  renameSync(join(complete(), start), aside);
  let res: RunResult;
  try {
    res = runBin("wal-ctl", [p.slaveIni, "restore"]);
    assert.equal(res.status, 1, res.stderr);
    assert.match(res.stderr, new RegExp(`${start} is missing.*was not started, and the restore stays pending`));
    assert.doesNotMatch(res.stderr, /is kept for it/);
    assert.ok(existsSync(join(p.base, ".walmgr-restore.slave-data.json")), "the restore is still pending");
    const pending = readdirSync(p.slaveDir).filter((n) => n.endsWith(".pending"));
    assert.equal(pending.length, 1, "and its record still keeps the WAL");
  } finally {
    renameSync(aside, join(complete(), start));
  }
  res = ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "the rerun with the WAL back");
  assert.match(res.stderr, new RegExp(`WAL from ${start} on is kept for it`));
  await switchAndArchive();
  await standbyHoldsEveryRow();
  assert.deepEqual(restoreLeftovers(), []);
});

test("a new restore into DST removes the record of an abandoned one (its journal gone), and only that one", async () => {
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  const oldest = segmentsFrom("")[0] ?? "";
  const record = (dst: string, pid: number): string => {
    const path = join(p.slaveDir, `.walmgr-restore.data.master.${pid}.pending`);
    writeFileAs(
      path,
      JSON.stringify({
        set: join(p.slaveDir, "data.master"),
        startWal: oldest,
        dst,
        journal: join(p.base, `.walmgr-restore.${dst === p.slaveData ? "slave-data" : "elsewhere"}.json`),
        host: hostname(),
        pid,
        startedAt: "2026-01-01T00:00:00.000Z",
        command: "wal-ctl slave.ini restore",
      }),
    );
    return path;
  };
  const abandoned = record(p.slaveData, 999991);
  const other = record(join(p.base, "elsewhere"), 999992);
  const table = ok(runBin("wal-ctl", [p.slaveIni, "listbackups"]), "listbackups").stdout;
  assert.match(table, /abandoned \(its journal .* is gone\): remove .*999991\.pending/);
  const backup = ok(runBin("wal-backup", [p.masterIni]), "backup with the abandoned records");
  assert.ok(existsSync(join(complete(), oldest)), `the records keep their WAL (${oldest}) until removed`);
  assert.match(backup.stderr, new RegExp(`a pending restore of data\\.master into .* needs WAL from ${oldest}`));
  const res = ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "a new restore");
  assert.match(res.stderr, new RegExp(`999991\\.pending kept the WAL from ${oldest} on for an earlier restore`));
  assert.ok(!existsSync(abandoned), "the abandoned record into this DST is gone");
  assert.ok(existsSync(other), "a record of a restore into another DST stays");
  await standbyHoldsEveryRow();
});
