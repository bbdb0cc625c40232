/**
 * Two masters in one slave directory (issue 23, item 5), the pure parts: lock and sync-state
 * records of older versions stay readable and are never called another master's; positions of
 * two timelines are never compared; and verify's two-writer signs, on a real folder with real
 * mtimes: every sign case seen, and none in the single-master cases (an old master that was
 * really down at the failover, a stale lock of a dead process, a point-in-time restore that
 * branched before WAL archived earlier).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { notComparable } from "../../src/command/status/gather";
import { foreignHolder, type MasterSource } from "../../src/command/sync/master-source";
import { syncStateTimeline } from "../../src/slavedir/sync-state";
import { lockBody, parseLockInfo, selfLockInfo, type LockInfo } from "../../src/slavedir/lock";
import { findTwoWriters } from "../../src/monitor/two-writers";
import { listArchive } from "../../src/monitor/wal-scan";
import { LocalDriver } from "../../src/storage/local/driver";

const OLD_LOCK = JSON.stringify({
  pid: 4242,
  host: "db1",
  started: "2026-01-01T00:00:00.000Z",
  command: "sync daemon /etc/walmgr/master.ini",
  role: "daemon",
});

describe("lock and sync state records", () => {
  test("a lock of an older version is read as it was, and never called another master's", () => {
    const info = parseLockInfo(OLD_LOCK);
    assert.ok(info);
    assert.equal(info.timeline, undefined);
    assert.equal(info.masterData, undefined);
    const self: MasterSource = { host: "db2", config: "/x.ini", masterData: "/data", timeline: 2, systemId: "7" };
    assert.equal(foreignHolder(info, self), undefined);
  });

  test("the new fields round-trip; nonsense in them is dropped", () => {
    const body = lockBody(
      selfLockInfo("sync daemon /a.ini", "daemon", { config: "/a.ini", masterData: "/a", timeline: 3, systemId: "99" }),
    );
    const info = parseLockInfo(body.toString("utf8"));
    assert.equal(info?.timeline, 3);
    assert.equal(info?.systemId, "99");
    assert.equal(info?.masterData, "/a");
    assert.equal(info?.config, "/a.ini");
    const bad = parseLockInfo(JSON.stringify({ ...JSON.parse(OLD_LOCK), timeline: "1", systemId: "x;rm" }));
    assert.equal(bad?.timeline, undefined);
    assert.equal(bad?.systemId, undefined);
  });

  test("another timeline, system, host or data directory is another master; the same is not", () => {
    const h = { ...JSON.parse(OLD_LOCK), masterData: "/data", timeline: 1, systemId: "7" } as ReturnType<
      typeof parseLockInfo
    >;
    const self: MasterSource = { host: "db1", config: "/x.ini", masterData: "/data", timeline: 1, systemId: "7" };
    assert.equal(foreignHolder(h, self), undefined);
    assert.match(foreignHolder(h, { ...self, timeline: 2 }) ?? "", /ships timeline 1, this master is on timeline 2/);
    assert.match(foreignHolder(h, { ...self, systemId: "8" }) ?? "", /system 7/);
    assert.match(foreignHolder(h, { ...self, host: "db2" }) ?? "", /db1:\/data, this master is db2:\/data/);
    assert.equal(foreignHolder(h, { ...self, timeline: undefined }), undefined, "unknown timeline: not a difference");
    assert.equal(foreignHolder(h, { ...self, masterData: "/data/" }), undefined, "the same folder spelt otherwise");
  });

  test("a sync state of an older version has the timeline of its segment", () => {
    assert.equal(syncStateTimeline({ name: "00000003000000000000000A", offset: 0, lsn: "", time: "" }), 3);
  });

  test("positions of two timelines or systems are not compared; the same timeline is", () => {
    const st = { name: "000000010000000000000005", offset: 8192, lsn: "0/5002000", time: "" };
    assert.match(notComparable(st, 2, undefined) ?? "", /last sync was of timeline 1 .*this master is on timeline 2/);
    assert.equal(notComparable(st, 1, undefined), undefined);
    assert.equal(notComparable(st, undefined, undefined), undefined);
    assert.match(notComparable({ ...st, systemId: "1" }, 1, "2") ?? "", /database system 1/);
  });
});

describe("verify: signs of two writers", () => {
  let dir: string;
  let completed: string;
  let partial: string;
  const driver = new LocalDriver();
  const T0 = Date.parse("2026-03-01T12:00:00Z");

  /** Writes `name` in `folder` with its mtime set `atSec` seconds after T0. */
  function put(folder: string, name: string, text: string, atSec: number): void {
    const path = join(folder, name);
    writeFileSync(path, text);
    const t = new Date(T0 + atSec * 1000);
    utimesSync(path, t, t);
  }
  /** A timeline-2 history branching from timeline 1 at 0/5000060, archived at T0. */
  function history(): void {
    put(completed, "00000002.history", "1\t0/5000060\tno recovery target specified\n", 0);
  }
  function state(name: string, atSec: number): void {
    put(partial, ".walmgr-sync-state", JSON.stringify({ name, offset: 0, lsn: "0/0", time: "" }), atSec);
  }
  async function signs(): Promise<string[]> {
    const listing = await listArchive(driver, completed);
    const tw = await findTwoWriters(driver, listing, partial, T0 + 60_000);
    assert.equal(tw.detected, tw.signs.length > 0);
    return tw.signs.map((s) => s.kind);
  }

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "two-writers-"));
    completed = join(dir, "logs.complete");
    partial = join(dir, "logs.partial");
    mkdirSync(completed);
    mkdirSync(partial);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  test("one master, one timeline: nothing, and no newest timeline", async () => {
    state("000000010000000000000007", 30);
    put(partial, "000000010000000000000007", "x", 30);
    const listing = await listArchive(driver, completed);
    const tw = await findTwoWriters(driver, listing, partial);
    assert.deepEqual(tw, { detected: false, newestTimeline: null, signs: [] });
  });

  test("a failover with the old master really down: its files are older than the new .history", async () => {
    history();
    state("000000010000000000000005", -30);
    put(partial, "000000010000000000000005", "x", -30);
    put(completed, "000000010000000000000004", "x", -60);
    assert.deepEqual(await signs(), []);
  });

  test("the new master's own sync after the failover: nothing", async () => {
    history();
    put(partial, "000000010000000000000005", "x", -30);
    state("000000020000000000000005", 40);
    put(partial, "000000020000000000000005", "x", 40);
    assert.deepEqual(await signs(), []);
  });

  test("a point-in-time restore branched before WAL archived earlier: nothing", async () => {
    history();
    put(completed, "000000010000000000000006", "x", -600);
    put(completed, "000000010000000000000007", "x", -300);
    assert.deepEqual(await signs(), []);
  });

  test("the old timeline's state, partial and archived segment written after the new .history", async () => {
    history();
    state("000000010000000000000007", 30);
    put(partial, "000000010000000000000007", "x", 30);
    put(completed, "000000010000000000000006", "x", 25);
    assert.deepEqual((await signs()).sort(), ["archived-segment", "partial", "sync-state"]);
  });

  test("within the slack (mtime granularity, clocks): nothing", async () => {
    history();
    state("000000010000000000000007", 1);
    assert.deepEqual(await signs(), []);
  });

  test("the sync lock of an older timeline: held by a live process is a sign; by a dead one is not", async () => {
    history();
    const live = selfLockInfo("sync daemon /old.ini", "daemon", { masterData: "/old", timeline: 1 });
    put(partial, ".walmgr-sync-lock", lockBody(live).toString("utf8"), -100);
    assert.deepEqual(await signs(), ["sync-lock"]);
    const deadPid = spawnSync("true").pid ?? 999999;
    const dead = { ...live, pid: deadPid };
    put(partial, ".walmgr-sync-lock", lockBody(dead).toString("utf8"), -100);
    assert.deepEqual(await signs(), [], "a provably dead holder ships nothing");
    const ours = selfLockInfo("sync daemon /new.ini", "daemon", { masterData: "/new", timeline: 2 });
    put(partial, ".walmgr-sync-lock", lockBody(ours).toString("utf8"), 10);
    assert.deepEqual(await signs(), [], "this timeline's own daemon");
  });

  test("a lock on another host: a sign only once its daemon's heartbeat came after the new .history", async () => {
    history();
    const other = { ...(JSON.parse(OLD_LOCK) as LockInfo), host: `not-${hostname()}`, masterData: "/old", timeline: 1 };
    put(partial, ".walmgr-sync-lock", JSON.stringify(other), -100);
    const beat = { pid: other.pid, host: other.host, timeline: 1, heartbeat: "", started: "", mode: "record" };
    put(partial, ".walmgr-daemon-state", JSON.stringify(beat), -5);
    assert.deepEqual(await signs(), [], "its host may be down: nothing it wrote since");
    put(partial, ".walmgr-daemon-state", JSON.stringify(beat), 20);
    assert.deepEqual(await signs(), ["sync-lock"]);
    put(partial, ".walmgr-daemon-state", JSON.stringify({ ...beat, stopped: "x" }), 20);
    assert.deepEqual(await signs(), [], "it said it stopped");
  });

  test("segments of the new timeline past the branch are not signs", async () => {
    history();
    // Timeline 2's own segments after the branch are not the old master's.
    put(completed, "000000020000000000000006", "x".repeat(16), 30);
    assert.deepEqual(await signs(), []);
  });
});
