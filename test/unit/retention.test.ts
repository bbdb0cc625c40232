/**
 * The one WAL retention rule (src/slavedir/retention.ts) that backup's purge and wal-restore's %r
 * cleanup both apply: the cut is the oldest of the caller's bound, what the sets need and what
 * the live standbys hold; the callers differ only in their parameters (their own bound, their
 * own standby, the kinds of file they remove).
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Config } from "../../src/config/load";
import type { Context } from "../../src/context";
import { Logger } from "../../src/log";
import {
  CLEANUP_KINDS,
  PURGE_KINDS,
  removeWalBefore,
  walToKeep,
  type Retention,
  type RetentionCut,
} from "../../src/slavedir/retention";
import { standbyRecordFile } from "../../src/slavedir/standbys";
import { LocalDriver } from "../../src/storage/local/driver";
import { testContext } from "../helpers/context";

let dir: string;
const seg = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, "0")}`;
const driver = new LocalDriver();
const HOUR = 3600;

function ctx(dryRun = false): { ctx: Context; out: string[] } {
  const out: string[] = [];
  const c = testContext({ get: () => undefined } as unknown as Config, new Logger({ verbosity: 0, jobName: "test" }));
  return { ctx: { ...c, dryRun, out: (t) => out.push(t) }, out };
}

/** logs.complete with segments 1..9 (and their checksums), a .history and a .backup; sets as given. */
function setup(sets: Record<string, number | undefined> = {}): { completed: string; full: string } {
  rmSync(dir, { recursive: true, force: true });
  const completed = join(dir, "logs.complete");
  mkdirSync(completed, { recursive: true });
  for (let n = 1; n <= 9; n++) {
    writeFileSync(join(completed, seg(n)), "x");
    writeFileSync(join(completed, `.${seg(n)}.sha256`), "x");
  }
  writeFileSync(join(completed, `${seg(5)}.partial`), "p");
  writeFileSync(join(completed, "00000002.history"), "h");
  writeFileSync(join(completed, `${seg(3)}.00000028.backup`), "b");
  for (const [name, start] of Object.entries(sets)) {
    mkdirSync(join(dir, name));
    if (start !== undefined)
      writeFileSync(join(dir, name, ".walmgr-backup.json"), JSON.stringify({ startWal: seg(start) }));
  }
  return { completed, full: join(dir, "data.master") };
}

function standby(completed: string, name: string, rp: string | undefined, agoSeconds = 5): void {
  writeFileSync(
    join(completed, standbyRecordFile(name)),
    rp === undefined
      ? "{"
      : JSON.stringify({ restartpoint: rp, updated: new Date(Date.now() - agoSeconds * 1000).toISOString() }),
  );
}

function cut(r: Retention): RetentionCut {
  if (!("keepFrom" in r)) assert.fail(`no cut: ${JSON.stringify(r)}`);
  return r;
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-retention-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("without a bound of the caller's the sets start it; no set and no bound: nothing is cut", async () => {
  const { completed, full } = setup({ "data.master": 7, "data.master.0": 5 });
  const r = cut(await walToKeep(driver, { walDir: completed, fullBackup: full, expireSeconds: HOUR }));
  assert.equal(r.keepFrom, seg(5));
  assert.equal(r.setsHold, true);
  assert.equal(r.standbysHold, false);
  assert.ok(r.names.includes(seg(1)), "the folder's listing comes with the cut");

  const empty = setup();
  assert.deepEqual(await walToKeep(driver, { walDir: empty.completed, fullBackup: empty.full, expireSeconds: HOUR }), {
    noBound: true,
  });
  // With a bound and no set (wal-restore without full_backup), the bound is the cut.
  const r2 = cut(await walToKeep(driver, { walDir: empty.completed, bound: seg(4), expireSeconds: HOUR }));
  assert.equal(r2.keepFrom, seg(4));
  assert.equal(r2.sets, undefined);
  assert.equal(r2.setsHold, false);
});

test("the cut is the oldest of the caller's bound, the sets' need and the live standbys' restart points", async () => {
  const { completed, full } = setup({ "data.master": 6 });
  // The bound is older than the set: the bound stays.
  let r = cut(await walToKeep(driver, { walDir: completed, fullBackup: full, bound: seg(4), expireSeconds: HOUR }));
  assert.deepEqual([r.keepFrom, r.setsHold, r.standbysHold], [seg(4), false, false]);
  // The set is older than the bound: it moves the cut back.
  r = cut(await walToKeep(driver, { walDir: completed, fullBackup: full, bound: seg(8), expireSeconds: HOUR }));
  assert.deepEqual([r.keepFrom, r.setsHold, r.standbysHold], [seg(6), true, false]);
  // A live standby older than both moves it further; an expired one does not.
  standby(completed, "slow", seg(3));
  standby(completed, "gone", seg(1), 2 * HOUR);
  r = cut(await walToKeep(driver, { walDir: completed, fullBackup: full, bound: seg(8), expireSeconds: HOUR }));
  assert.deepEqual([r.keepFrom, r.setsHold, r.standbysHold, r.hold.by], [seg(3), true, true, "slow"]);
  assert.deepEqual(
    r.hold.expired.map((s) => s.name),
    ["gone"],
  );
  // The caller's own standby (cleanup: its %r is the bound) is left out of the registry.
  r = cut(
    await walToKeep(driver, {
      walDir: completed,
      fullBackup: full,
      bound: seg(8),
      exceptStandby: "slow",
      expireSeconds: HOUR,
    }),
  );
  assert.deepEqual([r.keepFrom, r.standbysHold], [seg(6), false]);
});

test("purge and %r cleanup cut at the same place from the same sets and standbys", async () => {
  const { completed, full } = setup({ "data.master": 6, "data.master.0": 4 });
  standby(completed, "a", seg(5));
  // Purge: no bound of its own. Cleanup: %r (newer than all), its own standby left out.
  const purge = cut(await walToKeep(driver, { walDir: completed, fullBackup: full, expireSeconds: HOUR }));
  const cleanup = cut(
    await walToKeep(driver, {
      walDir: completed,
      fullBackup: full,
      bound: seg(9),
      exceptStandby: "b",
      expireSeconds: HOUR,
    }),
  );
  assert.equal(purge.keepFrom, seg(4));
  assert.equal(cleanup.keepFrom, purge.keepFrom);
});

test("nothing is cut while a set's start or a live standby's record cannot be read", async () => {
  const { completed, full } = setup({ "data.master": 6, "data.master.0": undefined });
  assert.deepEqual(
    await walToKeep(driver, { walDir: completed, fullBackup: full, bound: seg(9), expireSeconds: HOUR }),
    {
      unknownSet: join(dir, "data.master.0"),
    },
  );
  const again = setup({ "data.master": 6 });
  standby(again.completed, "broken", undefined);
  const r = await walToKeep(driver, {
    walDir: again.completed,
    fullBackup: again.full,
    bound: seg(9),
    expireSeconds: HOUR,
  });
  if (!("unknownStandby" in r)) assert.fail(`not refused: ${JSON.stringify(r)}`);
  assert.equal(r.unknownStandby.name, "broken");
  assert.equal(r.sets?.from, seg(6), "the sets as read come with the refusal");
  assert.equal(r.setsHold, true);
});

test("purge removes segments, partials and .backup files older than the cut; cleanup keeps .backup; .history stays", async () => {
  const left = (completed: string): string[] => readdirSync(completed).sort();
  for (const [kinds, backupGoes] of [
    [PURGE_KINDS, true],
    [CLEANUP_KINDS, false],
  ] as const) {
    const { completed } = setup();
    const r = cut(await walToKeep(driver, { walDir: completed, bound: seg(6), expireSeconds: HOUR }));
    const removed = await removeWalBefore(ctx().ctx, driver, completed, r, kinds, HOUR);
    assert.deepEqual(
      removed.sort(),
      [seg(1), seg(2), seg(3), seg(4), seg(5), `${seg(5)}.partial`]
        .concat(backupGoes ? [`${seg(3)}.00000028.backup`] : [])
        .sort(),
    );
    const now = left(completed);
    for (let n = 1; n <= 5; n++) assert.ok(!now.includes(`.${seg(n)}.sha256`), `checksum of ${seg(n)} goes with it`);
    for (let n = 6; n <= 9; n++) assert.ok(now.includes(seg(n)) && now.includes(`.${seg(n)}.sha256`), seg(n));
    assert.ok(now.includes("00000002.history"));
    assert.equal(now.includes(`${seg(3)}.00000028.backup`), !backupGoes);
  }
});

test("--not-really: removeWalBefore prints what it would remove and removes nothing", async () => {
  const { completed } = setup();
  const before = readdirSync(completed).sort();
  const r = cut(await walToKeep(driver, { walDir: completed, bound: seg(3), expireSeconds: HOUR }));
  const c = ctx(true);
  assert.deepEqual(await removeWalBefore(c.ctx, driver, completed, r, PURGE_KINDS, HOUR), []);
  assert.deepEqual(readdirSync(completed).sort(), before);
  assert.deepEqual(c.out.sort(), [
    `[not really] remove ${join(completed, seg(1))}`,
    `[not really] remove ${join(completed, seg(2))}`,
  ]);
});
