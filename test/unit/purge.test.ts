import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { purgeWal, walNeededBySets } from "../../src/command/backup/purge";
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
  assert.deepEqual(await walNeededBySets(new LocalDriver(), full), { from: seg(3) });
  await purgeWal(ctx(), new LocalDriver(), completed, full);
  const left = readdirSync(completed);
  assert.ok(!left.includes(seg(2)));
  for (let n = 3; n <= 9; n++) assert.ok(left.includes(seg(n)), seg(n));
});
