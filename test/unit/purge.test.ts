import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { purgeWal } from "../../src/command/backup/purge";
import { walNeededBySets } from "../../src/slavedir/retention";
import type { Config } from "../../src/config/load";
import type { Context } from "../../src/context";
import { Logger } from "../../src/log";
import { LocalDriver } from "../../src/storage/local/driver";
import { testContext } from "../helpers/context";

let dir: string;
const seg = (n: number): string => `0000000100000000000000${n.toString(16).toUpperCase().padStart(2, "0")}`;

function ctx(): Context {
  return testContext({ get: () => undefined } as unknown as Config, new Logger({ verbosity: 0, jobName: "test" }));
}

function setup(standby?: string): { completed: string; full: string } {
  rmSync(dir, { recursive: true, force: true });
  const completed = join(dir, "logs.complete");
  mkdirSync(completed, { recursive: true });
  for (let n = 1; n <= 9; n++) {
    writeFileSync(join(completed, seg(n)), "x");
    writeFileSync(join(completed, `.${seg(n)}.sha256`), "x");
  }
  writeFileSync(join(completed, "00000002.history"), "h");
  writeFileSync(join(completed, `${seg(3)}.00000028.backup`), "b");
  for (const [name, start] of [
    ["data.master", 7],
    ["data.master.0", 5],
  ] as const) {
    mkdirSync(join(dir, name));
    writeFileSync(join(dir, name, ".walmgr-backup.json"), JSON.stringify({ startWal: seg(start) }));
  }
  if (standby) writeFileSync(join(completed, ".walmgr-standby-restartpoint"), `${standby}\n`);
  return { completed, full: join(dir, "data.master") };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-purge-"));
});
after(() => rmSync(dir, { recursive: true, force: true }));

test("purge keeps WAL from the oldest kept set's start, .history always", async () => {
  const { completed, full } = setup();
  assert.equal(await purgeWal(ctx(), new LocalDriver(), completed, full), 5);
  const left = readdirSync(completed).sort();
  assert.ok(!left.includes(seg(4)) && !left.includes(`.${seg(4)}.sha256`));
  assert.ok(left.includes(seg(5)) && left.includes("00000002.history"));
  assert.ok(!left.includes(`${seg(3)}.00000028.backup`));
});

test("purge never removes WAL a running standby still needs", async () => {
  const { completed, full } = setup(seg(2));
  await purgeWal(ctx(), new LocalDriver(), completed, full);
  const left = readdirSync(completed);
  assert.ok(!left.includes(seg(1)));
  for (let n = 2; n <= 9; n++) assert.ok(left.includes(seg(n)), seg(n));
});

test("purge removes nothing when a set's start WAL cannot be read", async () => {
  const { completed, full } = setup();
  mkdirSync(join(dir, "data.master.1"));
  assert.equal(await purgeWal(ctx(), new LocalDriver(), completed, full), 0);
  assert.equal(readdirSync(completed).filter((n) => /^[0-9A-F]{24}$/.test(n)).length, 9);
});

test("WAL a complete set left hidden by a killed backup needs is kept; a partial one counts for nothing", async () => {
  const { completed, full } = setup();
  rmSync(join(dir, "data.master.0"), { recursive: true });
  // Complete: the next backup puts it in place.
  mkdirSync(join(dir, ".walmgr-tmp.data.master.4242"));
  writeFileSync(join(dir, ".walmgr-tmp.data.master.4242", ".walmgr-backup.json"), JSON.stringify({ startWal: seg(3) }));
  // Partial (no metadata yet) and a set being removed: never sets again.
  mkdirSync(join(dir, ".walmgr-tmp.data.master.4343"));
  mkdirSync(join(dir, ".walmgr-tmp.data.master.0.removing.4444"));
  writeFileSync(
    join(dir, ".walmgr-tmp.data.master.0.removing.4444", ".walmgr-backup.json"),
    JSON.stringify({ startWal: seg(1) }),
  );
  assert.deepEqual(await walNeededBySets(new LocalDriver(), full), { from: seg(3), restores: [] });
  await purgeWal(ctx(), new LocalDriver(), completed, full);
  const left = readdirSync(completed);
  assert.ok(!left.includes(seg(2)));
  for (let n = 3; n <= 9; n++) assert.ok(left.includes(seg(n)), seg(n));
});

test("a pending restore's record keeps its set's WAL; a claimed set without one counts by its own start", async () => {
  const { completed, full } = setup();
  const record = join(dir, ".walmgr-restore.data.master.4545.pending");
  writeFileSync(
    record,
    JSON.stringify({ set: full, startWal: seg(2), dst: "/srv/standby", journal: "/srv/.walmgr-restore.standby.json" }),
  );
  // Its claimed set (paired by name with the record): counted through the record only.
  mkdirSync(join(dir, ".walmgr-restore.data.master.4545.claimed"));
  const needed = await walNeededBySets(new LocalDriver(), full);
  if (needed.unknown !== undefined) assert.fail(`unknown: ${needed.unknown}`);
  assert.equal(needed.from, seg(2));
  assert.deepEqual(
    needed.restores.map((r) => [r.path, r.startWal]),
    [[record, seg(2)]],
  );
  await purgeWal(ctx(), new LocalDriver(), completed, full);
  let left = readdirSync(completed);
  assert.ok(!left.includes(seg(1)));
  for (let n = 2; n <= 9; n++) assert.ok(left.includes(seg(n)), seg(n));

  // An earlier version's claimed set of data.master.0, without a record: its own start counts.
  rmSync(record);
  rmSync(join(dir, ".walmgr-restore.data.master.4545.claimed"), { recursive: true });
  const claimed = join(dir, ".walmgr-restore.data.master.0.4646.claimed");
  mkdirSync(claimed);
  writeFileSync(join(claimed, "backup_label"), "START WAL LOCATION: 0/3000028 (file " + seg(3) + ")\n");
  assert.equal((await walNeededBySets(new LocalDriver(), full)).unknown, undefined);
  await purgeWal(ctx(), new LocalDriver(), completed, full);
  left = readdirSync(completed);
  assert.ok(left.includes(seg(3)), "the claimed set's start WAL stays");
});

test("a pending restore's record that cannot be read: no WAL purged", async () => {
  const { completed, full } = setup();
  const record = join(dir, ".walmgr-restore.data.master.4747.pending");
  writeFileSync(record, "{ not json");
  assert.deepEqual(await walNeededBySets(new LocalDriver(), full), { unknown: record });
  assert.equal(await purgeWal(ctx(), new LocalDriver(), completed, full), 0);
  // Names that are not a restore's record or claim are not read at all.
  rmSync(record);
  writeFileSync(join(dir, ".walmgr-restore.data.master.x.pending"), "{");
  writeFileSync(join(dir, ".walmgr-restore.slave-data.json"), "{");
  assert.equal((await walNeededBySets(new LocalDriver(), full)).unknown, undefined);
});
