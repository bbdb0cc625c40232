/** What goes into a base backup, and how backup sets are listed and rotated. */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { keepInBackup } from "../../src/command/backup/exclude";
import { leftoverPid, listSets, pruneSets, shiftSets } from "../../src/slavedir/backup-sets";
import { LocalDriver } from "../../src/storage/local/driver";

describe("keepInBackup", () => {
  const excluded: [string, boolean][] = [
    ["postmaster.pid", false],
    ["postmaster.opts", false],
    ["backup_label", false],
    ["tablespace_map", false],
    ["backup_manifest", false],
    ["standby.signal", false],
    ["recovery.signal", false],
    ["pg_wal/000000010000000000000001", false],
    ["pg_wal/00000002.history", false],
    ["pg_wal/archive_status/000000010000000000000001.ready", false],
    ["pg_wal/archive_status/000000010000000000000001.done", false],
    ["pg_wal/some_dir", true],
    ["pg_xlog/000000010000000000000001", false],
    ["pg_replslot/myslot", true],
    ["pg_replslot/myslot/state", false],
    ["pg_stat_tmp/global.stat", false],
    ["pg_dynshmem/mmap.1234", false],
    ["pg_notify/0000", false],
    ["pg_serial/0000", false],
    ["pg_snapshots/00000003-00000002-1", false],
    ["pg_subtrans/0000", false],
    ["base/pgsql_tmp", true],
    ["base/pgsql_tmp/pgsql_tmp1234.0", false],
    ["base/16384/pgsql_tmp", true],
    ["pg_tblspc/16385/PG_15_202209061/pgsql_tmp", true],
    ["global/pg_internal.init", false],
    ["base/16384/pg_internal.init", false],
    ["base/16384/t3_16390", false],
    ["base/16384/.walmgr-tmp.16390.123", false],
  ];
  for (const [rel, isDir] of excluded) {
    test(`excludes ${rel}${isDir ? "/" : ""}`, () => {
      assert.equal(keepInBackup(rel, isDir), false);
    });
  }

  const kept: [string, boolean][] = [
    ["base/1/1234", false],
    ["base/1/1234_fsm", false],
    ["base/1/1234_vm", false],
    ["base/1/1234.1", false],
    ["base/1/PG_VERSION", false],
    ["base", true],
    ["base/1", true],
    ["global", true],
    ["global/pg_control", false],
    ["global/pg_filenode.map", false],
    ["postgresql.conf", false],
    ["pg_hba.conf", false],
    ["pg_ident.conf", false],
    ["postgresql.auto.conf", false],
    ["PG_VERSION", false],
    ["pg_xact/0000", false],
    ["pg_multixact/offsets/0000", false],
    ["pg_logical/replorigin_checkpoint", false],
    ["pg_tblspc/16385", true],
    ["pg_tblspc/16385/PG_15_202209061/16384/16390", false],
    // The folders themselves stay (empty), and so does pg_wal/archive_status.
    ["pg_wal", true],
    ["pg_wal/archive_status", true],
    ["pg_xlog/archive_status", true],
    ["pg_replslot", true],
    ["pg_stat_tmp", true],
    ["pg_notify", true],
    ["pg_subtrans", true],
    // Only the top-level postmaster.pid etc. are special.
    ["base/1/backup_label", false],
  ];
  for (const [rel, isDir] of kept) {
    test(`keeps ${rel}${isDir ? "/" : ""}`, () => {
      assert.equal(keepInBackup(rel, isDir), true);
    });
  }
});

describe("backup sets", () => {
  let dir: string;
  let full: string;
  const driver = new LocalDriver();

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "walmgr-unit-"));
    full = join(dir, "data.master");
  });

  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Makes set folders, each with an `id` file naming it. */
  function makeSets(...suffixes: string[]): void {
    for (const s of suffixes) {
      const p = `${full}${s}`;
      mkdirSync(p);
      writeFileSync(join(p, "id"), s === "" ? "newest" : s);
    }
  }

  test("listSets orders data.master, data.master.0, data.master.1 … numerically", async () => {
    makeSets(".10", ".1", "", ".2", ".0");
    mkdirSync(join(dir, "data.master.old"));
    mkdirSync(join(dir, "data.master.1a"));
    mkdirSync(join(dir, "data.masterX"));
    mkdirSync(join(dir, "logs.complete"));
    assert.deepEqual(await listSets(driver, full), [full, `${full}.0`, `${full}.1`, `${full}.2`, `${full}.10`]);
  });

  test("listSets without data.master lists the numbered ones", async () => {
    makeSets(".1", ".0");
    assert.deepEqual(await listSets(driver, full), [`${full}.0`, `${full}.1`]);
  });

  test("listSets of a missing folder is empty", async () => {
    assert.deepEqual(await listSets(driver, join(dir, "nope", "data.master")), []);
    assert.deepEqual(await listSets(driver, full), []);
  });

  /** What is in the folder, as name -> id (hidden leftovers included). */
  function left(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const n of readdirSync(dir).sort()) out[n] = readFileSync(join(dir, n, "id"), "utf8");
    return out;
  }

  /** Prunes to `keep`, returning the sets removed (in call order of the hook). */
  async function prune(keep: number): Promise<string[]> {
    const hooked: string[] = [];
    const removed = await pruneSets(driver, full, keep, async (set) => {
      assert.ok(existsSync(set), `beforeRemove(${set}) runs before the removal`);
      hooked.push(set);
    });
    assert.deepEqual(removed, hooked);
    return removed;
  }

  test("prune removes the oldest beyond keep, oldest first, and never the newest", async () => {
    makeSets("", ".0", ".1");
    assert.deepEqual(await prune(2), [`${full}.1`]);
    assert.deepEqual(left(), { "data.master": "newest", "data.master.0": ".0" });
    assert.deepEqual(await prune(0), [`${full}.0`]);
    assert.deepEqual(left(), { "data.master": "newest" });
  });

  test("prune keeps what is within keep and works without data.master", async () => {
    makeSets(".3", ".5");
    assert.deepEqual(await prune(5), []);
    assert.deepEqual(await prune(1), [`${full}.5`]);
    assert.deepEqual(left(), { "data.master.3": ".3" });
  });

  test("a failing beforeRemove stops the pruning: that set and the newer ones stay", async () => {
    makeSets("", ".0", ".1");
    let calls = 0;
    await assert.rejects(
      pruneSets(driver, full, 1, async () => {
        if (++calls === 2) throw new Error("archive_command failed");
      }),
      /archive_command failed/,
    );
    assert.deepEqual(left(), { "data.master": "newest", "data.master.0": ".0" });
  });

  test("shift frees data.master: every set one number up, in order", async () => {
    makeSets("", ".0", ".1");
    await shiftSets(driver, full);
    assert.deepEqual(left(), { "data.master.0": "newest", "data.master.1": ".0", "data.master.2": ".1" });
  });

  test("shift closes gaps in any pattern without renaming onto an existing set", async () => {
    const patterns: string[][] = [
      ["", ".2", ".3"],
      ["", ".0", ".7"],
      [".1", ".5"],
      [".0", ".1", ".2"],
      ["", ".1", ".2", ".9"],
      [".4", ".5", ".6"],
    ];
    for (const pattern of patterns) {
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      makeSets(...pattern);
      await shiftSets(driver, full);
      const want: Record<string, string> = {};
      pattern.forEach((s, i) => (want[`data.master.${i}`] = s === "" ? "newest" : s));
      assert.deepEqual(left(), want, pattern.join(","));
    }
  });

  test("shift of nothing is fine", async () => {
    await shiftSets(driver, full);
    assert.deepEqual(left(), {});
  });

  test("leftoverPid knows temp sets and sets being removed, and nothing else", () => {
    assert.equal(leftoverPid(full, ".walmgr-tmp.data.master.123"), 123);
    assert.equal(leftoverPid(full, ".walmgr-tmp.data.master.removing.77"), 77);
    assert.equal(leftoverPid(full, ".walmgr-tmp.data.master.4.removing.9"), 9);
    for (const other of [
      "data.master",
      "data.master.0",
      ".walmgr-tmp.data.masterX.1",
      ".walmgr-tmp.other.12",
      ".walmgr-tmp.data.master.abc",
      ".walmgr-tmp.data.master.1.2",
      "logs.complete",
    ]) {
      assert.equal(leftoverPid(full, other), undefined, other);
    }
  });
});
