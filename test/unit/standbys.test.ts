/** The standby registry: records under each standby's name, the purge rule over live standbys, expiry. */
import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { restoreGet } from "../../src/command/archive/get";
import { purgeWal } from "../../src/command/backup/purge";
import { loadConfig, type Config } from "../../src/config/load";
import type { Context } from "../../src/context";
import type { Logger } from "../../src/log";
import {
  defaultStandbyName,
  isValidStandbyName,
  lagOf,
  LEGACY_RECORD,
  noteStandby,
  readRegistry,
  refreshSeconds,
  refreshStandby,
  standbyHold,
  standbyName,
  standbyRecordFile,
} from "../../src/slavedir/standbys";
import type { StorageDriver } from "../../src/storage/driver";
import { LocalDriver } from "../../src/storage/local/driver";
import { testContext } from "../helpers/context";

let dir: string;
const seg = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, "0")}`;

interface Captured {
  warn: string[];
  info: string[];
}

function ctx(config: Config = { get: () => undefined } as unknown as Config): { ctx: Context; logs: Captured } {
  const logs: Captured = { warn: [], info: [] };
  const log = {
    error: (m: string) => logs.warn.push(m),
    warn: (m: string) => logs.warn.push(m),
    info: (m: string) => logs.info.push(m),
    debug: () => undefined,
  } as unknown as Logger;
  return { logs, ctx: testContext(config, log) };
}

/** A driver that counts writes. */
function counting(): { driver: StorageDriver; writes: () => number } {
  const inner = new LocalDriver();
  let n = 0;
  const driver = Object.create(inner) as StorageDriver;
  driver.newWrite = async (path, opts) => {
    n++;
    return inner.newWrite(path, opts);
  };
  return { driver, writes: () => n };
}

function record(completed: string, name: string, rp: string, agoSeconds: number): void {
  writeFileSync(
    join(completed, standbyRecordFile(name)),
    JSON.stringify({
      restartpoint: rp,
      host: "h",
      slave_data: `/srv/${name}`,
      updated: new Date(Date.now() - agoSeconds * 1000).toISOString(),
    }),
  );
}

function setup(): { completed: string; full: string } {
  rmSync(dir, { recursive: true, force: true });
  const completed = join(dir, "logs.complete");
  mkdirSync(completed, { recursive: true });
  for (let n = 1; n <= 9; n++) {
    writeFileSync(join(completed, seg(n)), "x");
    writeFileSync(join(completed, `.${seg(n)}.sha256`), "x");
  }
  mkdirSync(join(dir, "data.master"));
  writeFileSync(join(dir, "data.master", ".walmgr-backup.json"), JSON.stringify({ startWal: seg(7) }));
  return { completed, full: join(dir, "data.master") };
}

const segmentsLeft = (completed: string): string[] =>
  readdirSync(completed)
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort();

before(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-standbys-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("standby names: validated, and the default is stable, valid and differs by data directory", () => {
  for (const ok of ["a", "standby-1", "db_2.example.com", "x".repeat(64)]) assert.ok(isValidStandbyName(ok), ok);
  for (const bad of ["", "..", "a/b", "a b", "x".repeat(65), "é"]) assert.ok(!isValidStandbyName(bad), bad);
  const a = defaultStandbyName("/srv/pg/a", "db1.example.com");
  assert.equal(a, defaultStandbyName("/srv/pg/a", "db1.example.com"));
  assert.notEqual(a, defaultStandbyName("/srv/pg/b", "db1.example.com"));
  assert.ok(isValidStandbyName(a) && a.startsWith("db1.example.com-"), a);
  assert.ok(isValidStandbyName(defaultStandbyName("/x", `${"h".repeat(80)} /weird`)));
  const bad = { get: (k: string) => (k === "standby_name" ? "../x" : undefined), where: () => "f [s] standby_name" };
  assert.throws(() => standbyName(bad as unknown as Config), /not a valid standby name/);
});

test("a record is written when the restart point changes or it is due for a refresh, not on every call", async () => {
  const { completed } = setup();
  const { driver, writes } = counting();
  const opts = { expireSeconds: 1000, slaveData: "/srv/a", host: "h" };
  const t0 = Date.parse("2026-01-01T00:00:00Z");
  assert.equal((await noteStandby(driver, completed, "a", seg(3), { ...opts, now: t0 })).written, true);
  assert.equal((await noteStandby(driver, completed, "a", seg(3), { ...opts, now: t0 + 50_000 })).written, false);
  assert.equal(writes(), 1);
  // A tenth of the expiry later the unchanged record is refreshed (an idle standby stays live).
  assert.equal(refreshSeconds(1000), 100);
  assert.equal((await noteStandby(driver, completed, "a", seg(3), { ...opts, now: t0 + 100_000 })).written, true);
  assert.equal((await noteStandby(driver, completed, "a", seg(4), { ...opts, now: t0 + 100_001 })).written, true);
  assert.equal(writes(), 3);
  const rec = JSON.parse(readFileSync(join(completed, ".walmgr-standby.a"), "utf8")) as Record<string, string>;
  assert.deepEqual(rec, {
    restartpoint: seg(4),
    host: "h",
    slave_data: "/srv/a",
    updated: new Date(t0 + 100_001).toISOString(),
  });
  // Another standby using the same name is reported.
  const res = await noteStandby(driver, completed, "a", seg(4), { ...opts, slaveData: "/srv/b", now: t0 + 100_002 });
  assert.ok(res.written && "conflict" in res && res.conflict?.slaveData === "/srv/a");
  assert.equal(refreshSeconds(0), 3600);
  assert.equal(refreshSeconds(86400 * 30), 3600);
});

test("the heartbeat refreshes its own record only: never creates one, never another's, keeps an unknown restart point", async () => {
  const { completed } = setup();
  const { driver, writes } = counting();
  const opts = { expireSeconds: 80, slaveData: "/srv/a", host: "h" };
  const t0 = Date.parse("2026-01-01T00:00:00Z");
  const file = join(completed, ".walmgr-standby.a");
  // No record (never recorded, or removed by boot): left alone.
  assert.equal(await refreshStandby(driver, completed, "a", seg(3), { ...opts, now: t0 }), undefined);
  assert.ok(!existsSync(file));
  await noteStandby(driver, completed, "a", seg(3), { ...opts, now: t0 });
  // Due for a refresh (a tenth of 80 s), restart point unknown: the recorded one is kept.
  const e = await refreshStandby(driver, completed, "a", undefined, { ...opts, now: t0 + 9_000 });
  assert.equal(e?.restartpoint, seg(3));
  assert.equal(
    (JSON.parse(readFileSync(file, "utf8")) as { updated: string }).updated,
    new Date(t0 + 9_000).toISOString(),
  );
  // Not yet due, same restart point: no write.
  const before = writes();
  await refreshStandby(driver, completed, "a", seg(3), { ...opts, now: t0 + 10_000 });
  assert.equal(writes(), before);
  // A restart point from pg_control moves the record on at once.
  assert.equal(
    (await refreshStandby(driver, completed, "a", seg(5), { ...opts, now: t0 + 10_001 }))?.restartpoint,
    seg(5),
  );
  // The record of another data directory or host under this name: left alone.
  for (const other of [{ slaveData: "/srv/b" }, { host: "other" }]) {
    assert.equal(
      await refreshStandby(driver, completed, "a", seg(6), { ...opts, ...other, now: t0 + 60_000 }),
      undefined,
    );
  }
  assert.equal((JSON.parse(readFileSync(file, "utf8")) as { restartpoint: string }).restartpoint, seg(5));
});

test("the purge rule: the oldest restart point among live standbys; expired ones do not count", async () => {
  const { completed } = setup();
  record(completed, "fast", seg(8), 5);
  record(completed, "slow", seg(4), 50);
  record(completed, "gone", seg(2), 5000);
  const entries = await readRegistry(new LocalDriver(), completed);
  assert.deepEqual(
    entries.map((e) => e.name),
    ["fast", "gone", "slow"],
  );
  const hold = standbyHold(entries, 3600);
  assert.equal(hold.from, seg(4));
  assert.equal(hold.by, "slow");
  assert.deepEqual(
    hold.expired.map((e) => e.name),
    ["gone"],
  );
  assert.equal(standbyHold(entries, 0).from, seg(2), "standby_expire = 0: never expires");
  // A record that is not one (unreadable) of a live file blocks purging.
  writeFileSync(join(completed, standbyRecordFile("broken")), "{");
  assert.equal(standbyHold(await readRegistry(new LocalDriver(), completed), 3600).unknown?.name, "broken");
  assert.deepEqual(lagOf(seg(4), seg(9)), { segments: 5, bytes: 5 * 16 * 1024 * 1024 });
  assert.deepEqual(lagOf("000000010000000100000000", "000000010000000200000001", 64 << 20), {
    segments: 65,
    bytes: 65 * (64 << 20),
  });
});

test("purge keeps what the slowest live standby needs; an expired one's WAL goes, with a warning naming it", async () => {
  const { completed, full } = setup();
  record(completed, "fast", seg(8), 5);
  record(completed, "slow", seg(4), 50);
  const c1 = ctx();
  assert.equal(await purgeWal(c1.ctx, new LocalDriver(), completed, full, { expireSeconds: 3600 }), 3);
  assert.deepEqual(segmentsLeft(completed), [4, 5, 6, 7, 8, 9].map(seg));
  assert.deepEqual(c1.logs.warn, []);
  // "slow" has not been heard from for longer than standby_expire.
  const c2 = ctx();
  await purgeWal(c2.ctx, new LocalDriver(), completed, full, { expireSeconds: 10 });
  assert.deepEqual(segmentsLeft(completed), [7, 8, 9].map(seg));
  assert.equal(c2.logs.warn.length, 1);
  assert.match(c2.logs.warn[0] ?? "", new RegExp(`standby "slow" .* ${seg(4)} 50 s ago, longer than standby_expire`));
  assert.ok(existsSync(join(completed, standbyRecordFile("slow"))), "an expired record is kept (status lists it)");
  // No WAL of it left to remove: no further warning.
  const c3 = ctx();
  await purgeWal(c3.ctx, new LocalDriver(), completed, full, { expireSeconds: 10 });
  assert.deepEqual(c3.logs.warn, []);
});

test("the record of earlier versions still holds WAL back, and is removed once expired", async () => {
  const { completed, full } = setup();
  writeFileSync(join(completed, LEGACY_RECORD), `${seg(3)}\n`);
  await purgeWal(ctx().ctx, new LocalDriver(), completed, full, { expireSeconds: 3600 });
  assert.deepEqual(segmentsLeft(completed), [3, 4, 5, 6, 7, 8, 9].map(seg));
  const old = (Date.now() - 7200_000) / 1000;
  utimesSync(join(completed, LEGACY_RECORD), old, old);
  const c = ctx();
  await purgeWal(c.ctx, new LocalDriver(), completed, full, { expireSeconds: 3600 });
  assert.deepEqual(segmentsLeft(completed), [7, 8, 9].map(seg));
  assert.match(c.logs.warn.join("\n"), /standby "legacy"/);
  assert.ok(!existsSync(join(completed, LEGACY_RECORD)));
});

test("wal-restore's %r cleanup (keep_backups = 0) keeps what another live standby needs, and records its own", async () => {
  const { completed } = setup();
  rmSync(join(dir, "data.master"), { recursive: true });
  for (let n = 1; n <= 9; n++) writeFileSync(join(completed, seg(n)), Buffer.alloc(1 << 20));
  record(completed, "other", seg(3), 5);
  record(completed, "expired", seg(1), 5000);
  const ini = join(dir, "slave.ini");
  writeFileSync(
    ini,
    [
      "[wal-slave]",
      `slave = ${dir}`,
      "completed_wals = %(slave)s/logs.complete",
      `slave_data = ${join(dir, "pgdata")}`,
      "restore_prefetch = 0",
      "standby_name = me",
      "standby_expire = 600",
      "",
    ].join("\n"),
  );
  const c = ctx(loadConfig(ini));
  const dest = join(dir, "RECOVERYXLOG");
  // No checksum files here: served unverified (a warning), which is beside the point.
  for (let n = 1; n <= 9; n++) rmSync(join(completed, `.${seg(n)}.sha256`), { force: true });
  assert.equal(await restoreGet(c.ctx, seg(8), dest, seg(6)), 0);
  assert.deepEqual(segmentsLeft(completed), [3, 4, 5, 6, 7, 8, 9].map(seg));
  const mine = JSON.parse(readFileSync(join(completed, standbyRecordFile("me")), "utf8")) as { restartpoint: string };
  assert.equal(mine.restartpoint, seg(6));
  assert.match(c.logs.warn.join("\n"), /standby "expired"/);
  // A not-available call records the restart point too (an idle standby stays live).
  assert.equal(await restoreGet(c.ctx, seg(10), dest, seg(7)), 1);
  const again = JSON.parse(readFileSync(join(completed, standbyRecordFile("me")), "utf8")) as { restartpoint: string };
  assert.equal(again.restartpoint, seg(7));
  // Zeros (before redo starts) are never recorded.
  assert.equal(await restoreGet(c.ctx, seg(10), dest, "000000000000000000000000"), 1);
  assert.equal(
    (JSON.parse(readFileSync(join(completed, standbyRecordFile("me")), "utf8")) as { restartpoint: string })
      .restartpoint,
    seg(7),
  );
});
