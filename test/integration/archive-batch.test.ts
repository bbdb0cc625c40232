/**
 * Batch archiving on a real PostgreSQL 15: wal-archive stores %p and further segments PostgreSQL
 * marked ready, renaming each one's .ready to .done only once it is durable. Segments pile up
 * while archive_command is /bin/false; then wal-archive runs by hand the way the archiver runs it
 * (cwd the data directory, `pg_wal/NAME NAME`), or PostgreSQL's archiver runs it after a reload.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Cluster } from "../helpers/cluster";
import { runUntilPause, signalPaused } from "../helpers/crash";
import { binPath, makeTempDir, mkdirAs, removeTempDir, runBin, sleep, spawnBin, waitFor } from "../helpers/env";
import { writeFileAs } from "../helpers/walmgr";

let base: string;
let master: Cluster;
let completed: string;
let ini: string;
let statusDir: string;

const SEG = /^[0-9A-F]{24}$/;

before(async () => {
  base = makeTempDir("batch");
  master = await Cluster.create(base, "master");
  writeFileAs(
    join(master.dataDir, "postgresql.auto.conf"),
    "archive_mode = on\narchive_command = '/bin/false'\nwal_level = replica\n",
  );
  master.start();
  const slave = join(base, "walshipping");
  completed = join(slave, "logs.complete");
  mkdirAs(completed);
  mkdirAs(join(slave, "logs.partial"));
  ini = join(base, "master.ini");
  writeFileAs(
    ini,
    `[wal-master]\nlogfile = master.log\nmaster_db = ${master.conninfo}\nmaster_data = ${master.dataDir}\nslave = ${slave}\ncompleted_wals = %(slave)s/logs.complete\npartial_wals = %(slave)s/logs.partial\n`,
  );
  statusDir = join(master.dataDir, "pg_wal", "archive_status");
  await master.query("create table t (x int)");
});

after(() => {
  master.stop("immediate");
  removeTempDir(base);
});

function ready(): string[] {
  return readdirSync(statusDir)
    .filter((n) => n.endsWith(".ready") && SEG.test(n.slice(0, -6)))
    .map((n) => n.slice(0, -6))
    .sort();
}

function done(): string[] {
  return readdirSync(statusDir)
    .filter((n) => n.endsWith(".done") && SEG.test(n.slice(0, -5)))
    .map((n) => n.slice(0, -5))
    .sort();
}

/** Makes `n` more segments complete and waits until PostgreSQL marked them all ready. */
async function pileUp(n: number): Promise<string[]> {
  const before = new Set(ready());
  for (let i = 0; i < n; i++) {
    await master.query("insert into t select generate_series(1, 1000)");
    await master.query("select pg_switch_wal()");
  }
  let now: string[] = [];
  await waitFor(`${n} more .ready files`, () => {
    now = ready().filter((r) => !before.has(r));
    return now.length >= n;
  });
  return now;
}

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Every segment marked done since `since` is archived, byte-equal to pg_wal's, with its checksum. */
function assertDoneAreDurable(names: string[]): void {
  for (const n of names) {
    const archived = join(completed, n);
    assert.ok(existsSync(archived), `${n} is marked done but not archived`);
    const digest = sha(archived);
    let local: string | undefined;
    try {
      local = sha(join(master.dataDir, "pg_wal", n));
    } catch {
      local = undefined; // recycled by a checkpoint since it was marked done: nothing to compare
    }
    if (local !== undefined) assert.equal(digest, local, `${n}: archived copy differs from pg_wal's`);
    const sum = join(completed, `.${n}.sha256`);
    assert.ok(existsSync(sum), `${n} is marked done without its checksum`);
    assert.ok(readFileSync(sum, "utf8").startsWith(digest), `${n}: checksum does not match`);
  }
}

async function setArchiveCommand(cmd: string): Promise<void> {
  await master.query(`alter system set archive_command = '${cmd.replace(/'/g, "''")}'`);
  await master.query("select pg_reload_conf()");
}

async function drainWithWalArchive(): Promise<void> {
  await setArchiveCommand(`'${binPath("wal-archive")}' '${ini}' %p %f`);
  await waitFor("PostgreSQL's archiver to drain every .ready", () => ready().length === 0, 120_000);
  await setArchiveCommand("/bin/false");
}

test("one wal-archive run archives %p and the ready segments after it; .ready becomes .done only for those", async () => {
  const names = await pileUp(6);
  const oldest = names[0] ?? "";
  const res = runBin("wal-archive", [ini, `pg_wal/${oldest}`, oldest], { cwd: master.dataDir });
  assert.equal(res.status, 0, res.stderr);
  // %p's own .ready is PostgreSQL's to rename (after our exit 0); the others are done.
  assert.ok(ready().includes(oldest), "wal-archive must leave %p's .ready to PostgreSQL");
  const marked = done().filter((d) => names.includes(d));
  assert.deepEqual(marked, names.slice(1), "every other ready segment is archived and marked done");
  assertDoneAreDurable(names);
  assert.match(readFileSync(join(base, "master.log"), "utf8"), /batch: archived 5 more ready segment/);
  await drainWithWalArchive();
});

test("PostgreSQL's archiver drains a backlog in fewer calls than segments, every segment archived once", async () => {
  const log = join(base, "master.log");
  const linesBefore = readFileSync(log, "utf8").split("\n").length;
  const names = await pileUp(20);
  await drainWithWalArchive();
  const lines = readFileSync(log, "utf8").split("\n").slice(linesBefore);
  const calls = lines.filter((l) => / archived [0-9A-F]{24} \(/.test(l) || /was already archived/.test(l));
  assert.ok(calls.length < names.length, `expected fewer archive_command calls than 20 segments, got ${calls.length}`);
  assert.equal(
    lines.filter((l) => /was already archived/.test(l)).length,
    0,
    "PostgreSQL called archive_command for a segment the batch had marked done",
  );
  for (const n of names) assert.ok(existsSync(join(completed, n)), `${n} not archived`);
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
});

test("kill -9 after a batch member is durable but before its .done: the .ready stays, the retry finds it identical", async () => {
  const names = await pileUp(3);
  const oldest = names[0] ?? "";
  // %p absolute: the batch finds archive_status beside it wherever wal-archive runs.
  const s = await runUntilPause(
    "wal-archive",
    [ini, join(master.dataDir, "pg_wal", oldest), oldest],
    "archive-batch-stored",
  );
  const k = await signalPaused(s, "SIGKILL");
  assert.equal(k.signal, "SIGKILL");
  const marked = done().filter((d) => names.includes(d));
  assert.deepEqual(marked, [], "nothing may be marked done by a run killed before its rename");
  assert.ok(names.every((n) => ready().includes(n)));
  await drainWithWalArchive();
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
});

test("kill -9 at random moments of batch runs (25 rounds): never a .done without a durable, verified copy", async () => {
  const names = await pileUp(12);
  const doneBefore = new Set(done());
  for (let round = 0; round < 25; round++) {
    const left = ready().filter((r) => names.includes(r));
    if (left.length === 0) break;
    const oldest = left[0] ?? "";
    const s = spawnBin("wal-archive", [ini, `pg_wal/${oldest}`, oldest], { cwd: master.dataDir });
    await sleep(Math.floor(Math.random() * 120));
    s.child.kill("SIGKILL");
    await s.exited;
    assertDoneAreDurable(done().filter((d) => names.includes(d) && !doneBefore.has(d)));
  }
  await drainWithWalArchive();
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
  for (const n of names) assert.ok(existsSync(join(completed, n)), `${n} not archived`);
  // A later run sweeps what the killed writers left.
  const more = await pileUp(1);
  const last = more[0] ?? "";
  assert.equal(runBin("wal-archive", [ini, `pg_wal/${last}`, last], { cwd: master.dataDir }).status, 0);
  assert.deepEqual(
    readdirSync(completed).filter((n) => n.startsWith(".walmgr-tmp.")),
    [],
    "temps of killed writers must be swept",
  );
  await drainWithWalArchive();
});

test("a batch member that conflicts keeps its .ready and is logged; the others go through; %p exits 0", async () => {
  const names = await pileUp(4);
  const [first, second, ...rest] = names as [string, string, ...string[]];
  const planted = randomBytes(16 << 20);
  writeFileAs(join(completed, second), "");
  writeFileSync(join(completed, second), planted);
  const res = runBin("wal-archive", [ini, `pg_wal/${first}`, first], { cwd: master.dataDir });
  assert.equal(res.status, 0, res.stderr);
  assert.ok(ready().includes(second), "the conflicting member keeps its .ready");
  assert.match(res.stderr, new RegExp(`${second} not archived.*other content`));
  assert.deepEqual(
    done().filter((d) => rest.includes(d)),
    rest,
  );
  assert.equal(sha(join(completed, second)), createHash("sha256").update(planted).digest("hex"), "planted copy kept");
  // PostgreSQL's own call for it fails with exit 8 until the operator clears the conflict.
  await setArchiveCommand(`'${binPath("wal-archive")}' '${ini}' %p %f`);
  await waitFor("the archiver to fail on the conflicting segment", async () => {
    const w = await master.value<string | null>("select last_failed_wal from pg_stat_archiver");
    return w === second;
  });
  assert.ok(ready().includes(second));
  rmSync(join(completed, second));
  await waitFor("the archiver to drain", () => ready().length === 0, 120_000);
  await setArchiveCommand("/bin/false");
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
});

test("two wal-archive runs at once on one pg_wal (20 rounds): both exit 0, nothing conflicts, every .done durable", async () => {
  const doneBefore = new Set(done());
  const all: string[] = [];
  for (let round = 0; round < 20; round++) {
    const names = await pileUp(4);
    all.push(...names);
    // Same %p in even rounds (an operator's run beside the archiver's), neighbours in odd ones.
    const pa = names[0] ?? "";
    const pb = round % 2 === 0 ? pa : (names[1] ?? "");
    const a = spawnBin("wal-archive", [ini, `pg_wal/${pa}`, pa], { cwd: master.dataDir });
    const b = spawnBin("wal-archive", [ini, `pg_wal/${pb}`, pb], { cwd: master.dataDir });
    const [ea, eb] = await Promise.all([a.exited, b.exited]);
    assert.equal(ea.status, 0, `round ${round}, run A: ${a.output()}`);
    assert.equal(eb.status, 0, `round ${round}, run B: ${b.output()}`);
    assert.doesNotMatch(a.output() + b.output(), /not archived|other content|conflict/i, `round ${round}`);
    // What PostgreSQL does after each 0 exit.
    for (const p of new Set([pa, pb])) {
      if (existsSync(join(statusDir, `${p}.ready`)))
        renameSync(join(statusDir, `${p}.ready`), join(statusDir, `${p}.done`));
    }
    assert.deepEqual(
      names.filter((n) => ready().includes(n)),
      [],
      `round ${round}: every segment of the round marked done`,
    );
    assertDoneAreDurable(done().filter((d) => names.includes(d) && !doneBefore.has(d)));
  }
  for (const n of all) assert.ok(existsSync(join(completed, n)), `${n} not archived`);
  assert.deepEqual(
    readdirSync(completed).filter((n) => n.startsWith(".walmgr-tmp.")),
    [],
    "no temp left by either writer",
  );
});
