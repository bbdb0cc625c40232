/**
 * Batch archiving on a real PostgreSQL 15: wal-archive stores %p and archives further segments
 * PostgreSQL marked ready ahead of it, recording each (a hard link in pg_wal/.walmgr-archived)
 * only once it is durable; their .ready files stay PostgreSQL's, and bin/wal-archive's shell front
 * acknowledges PostgreSQL's own call for each from its record, so the server marks every segment
 * done itself and pg_stat_archiver stays exact. Segments pile up while archive_command is
 * /bin/false; then wal-archive runs by hand the way the archiver runs it (cwd the data directory,
 * `pg_wal/NAME NAME`), or PostgreSQL's archiver runs it after a reload.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Cluster } from "../helpers/cluster";
import { isStopped } from "../helpers/crash";
import { binPath, makeTempDir, mkdirAs, removeTempDir, run, runBin, sleep, spawnBin, waitFor } from "../helpers/env";
import { writeFileAs } from "../helpers/walmgr";

let base: string;
let master: Cluster;
let completed: string;
let ini: string;
let statusDir: string;
let ackDir: string;

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
    `[wal-master]\nlogfile = walmgr.log\nmaster_db = ${master.conninfo}\nmaster_data = ${master.dataDir}\nslave = ${slave}\ncompleted_wals = %(slave)s/logs.complete\npartial_wals = %(slave)s/logs.partial\n`,
  );
  statusDir = join(master.dataDir, "pg_wal", "archive_status");
  ackDir = join(master.dataDir, "pg_wal", ".walmgr-archived");
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

/** Segments archived ahead whose record is there (and still the very file in pg_wal). */
function records(): string[] {
  let names: string[];
  try {
    names = readdirSync(ackDir);
  } catch {
    return [];
  }
  return names
    .filter((n) => SEG.test(n))
    .filter((n) => {
      try {
        return statSync(join(ackDir, n)).ino === statSync(join(master.dataDir, "pg_wal", n)).ino;
      } catch {
        return false;
      }
    })
    .sort();
}

/** Runs wal-archive exactly as PostgreSQL's archiver does for `name` (cwd the data directory). */
function archiverCall(name: string): ReturnType<typeof runBin> {
  return runBin("wal-archive", [ini, `pg_wal/${name}`, name], { cwd: master.dataDir });
}

/** Lines the Node program appended to the logfile since `from` lines (the shell front writes none). */
function logLinesSince(from: number): string[] {
  return readFileSync(join(base, "walmgr.log"), "utf8").split("\n").slice(from);
}

function logLength(): number {
  return existsSync(join(base, "walmgr.log")) ? readFileSync(join(base, "walmgr.log"), "utf8").split("\n").length : 0;
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

/** Every segment named (marked done, or recorded) is archived, byte-equal to pg_wal's, with its checksum. */
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

/** Live processes named by the background pushers' markers (pg_wal/.walmgr-archived/NAME.push). */
function pusherPids(): number[] {
  let names: string[];
  try {
    names = readdirSync(ackDir);
  } catch {
    return [];
  }
  const pids = new Set<number>();
  for (const n of names.filter((x) => x.endsWith(".push"))) {
    try {
      const pid = Number(readFileSync(join(ackDir, n), "utf8").split(" ")[0]);
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (pid > 1 && stat[stat.lastIndexOf(")") + 2] !== "Z") pids.add(pid);
    } catch {
      // gone meanwhile, or its process is
    }
  }
  return [...pids];
}

/** Waits until no live background pusher has a segment in hand. */
async function pushersDone(): Promise<void> {
  await waitFor("the background pusher to finish", () => pusherPids().length === 0, 60_000);
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

test("one wal-archive run archives %p and the ready segments after it, records them, and leaves every .ready to PostgreSQL", async () => {
  const names = await pileUp(6);
  const oldest = names[0] ?? "";
  const res = archiverCall(oldest);
  assert.equal(res.status, 0, res.stderr);
  // The rest is archived ahead by a background pusher; the call ends once %p is durable.
  await pushersDone();
  // Nothing is marked done behind PostgreSQL's back: every .ready is still there.
  assert.deepEqual(
    names.filter((n) => !ready().includes(n)),
    [],
    "wal-archive must leave every .ready to PostgreSQL",
  );
  assert.deepEqual(records(), names.slice(1), "every other ready segment is archived ahead and recorded");
  assertDoneAreDurable(names);
  assert.match(readFileSync(join(base, "walmgr.log"), "utf8"), /batch: archived 5 more ready segment\(s\) ahead/);
  // PostgreSQL's own call for a recorded segment is answered by the shell front: exit 0, the
  // record gone, and no Node run (nothing logged).
  const from = logLength();
  const second = names[1] ?? "";
  const front = archiverCall(second);
  assert.equal(front.status, 0, front.stderr);
  assert.equal(front.stderr, "", "the front starts no Node (which would log the call)");
  assert.ok(!existsSync(join(ackDir, second)), "the front removes the record it answered from");
  assert.deepEqual(
    logLinesSince(from).filter((l) => l.trim() !== ""),
    [],
    "the front starts no Node",
  );
  await drainWithWalArchive();
  assert.deepEqual(
    readdirSync(ackDir).filter((n) => SEG.test(n)),
    [],
    "no record outlives the drain",
  );
});

test("PostgreSQL's archiver drains a backlog in fewer Node runs than segments, and pg_stat_archiver counts every segment", async () => {
  const linesBefore = logLength();
  const names = await pileUp(20);
  const countBefore = Number(await master.value<string>("select archived_count from pg_stat_archiver"));
  await drainWithWalArchive();
  const lines = logLinesSince(linesBefore);
  const calls = lines.filter((l) => / archived [0-9A-F]{24} \(/.test(l) || /was already archived/.test(l));
  assert.ok(calls.length < names.length, `expected fewer Node runs than 20 segments, got ${calls.length}`);
  assert.equal(
    lines.filter((l) => /was already archived/.test(l)).length,
    0,
    `PostgreSQL's call for a segment archived ahead reached Node instead of the front:\n${lines.join("\n")}`,
  );
  for (const n of names) assert.ok(existsSync(join(completed, n)), `${n} not archived`);
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
  // The statistics are PostgreSQL's own and exact: one count per segment, the newest named.
  // (The archiver reports them just after its .done rename: waited for, not raced.)
  const last = names[names.length - 1];
  let row: { archived_count: string; last_archived_wal: string; failed_count: string } | undefined;
  await waitFor("pg_stat_archiver to report the drain", async () => {
    [row] = await master.query<{ archived_count: string; last_archived_wal: string; failed_count: string }>(
      "select archived_count, last_archived_wal, failed_count from pg_stat_archiver",
    );
    return row?.last_archived_wal === last;
  });
  assert.equal(Number(row?.archived_count) - countBefore, names.length, "archived_count counts every segment");
});

test("the front hands every doubt to Node: an edited config, a replaced segment file, a record without .ready", async () => {
  const names = await pileUp(5);
  const [first, a, b, c, d] = names as [string, string, string, string, string];
  assert.equal(archiverCall(first).status, 0);
  await pushersDone();
  renameSync(join(statusDir, `${first}.ready`), join(statusDir, `${first}.done`));
  assert.deepEqual(records(), [a, b, c, d]);
  // Node logs each call on stderr; the front answers silently.
  const viaNode = (name: string, r: ReturnType<typeof runBin>): boolean =>
    r.status === 0 && r.stderr.includes(`${name} was already archived with identical content`);
  const viaFront = (r: ReturnType<typeof runBin>): boolean => r.status === 0 && r.stderr === "";
  // The config rewritten after the records were made, with the same content and its old
  // mtime put back (as `cp -p` or `rsync -a` would): Node, which archives again and finds
  // identical content.
  const st = statSync(ini);
  writeFileSync(ini, readFileSync(ini));
  utimesSync(ini, st.atime, st.mtime);
  const ra = archiverCall(a);
  assert.ok(viaNode(a, ra), `an edited config must send the call to Node: ${ra.stderr}`);
  await pushersDone();
  renameSync(join(statusDir, `${a}.ready`), join(statusDir, `${a}.done`));
  // That run found the stamp moved: it dropped the old records and archived (identical) and
  // recorded the rest anew under the new one, which the front answers from again.
  assert.deepEqual(records(), [b, c, d]);
  assert.equal(
    readFileSync(join(ackDir, "fast"), "utf8").trim(),
    run("stat", ["-L", "-c", "%d:%i:%s:%.9Z", ini]).stdout.trim(),
    "fast holds the config's stamp as GNU stat prints it",
  );
  const rb = archiverCall(b);
  assert.ok(viaFront(rb), `a record under the new stamp: the front: ${rb.stderr}`);
  renameSync(join(statusDir, `${b}.ready`), join(statusDir, `${b}.done`));
  // The segment file replaced by a copy (another inode, same bytes): not the file recorded.
  const seg = join(master.dataDir, "pg_wal", c);
  const copy = `${seg}.copy`;
  writeFileSync(copy, readFileSync(seg));
  run("chown", ["--reference", seg, copy]);
  renameSync(copy, seg);
  const rc = archiverCall(c);
  assert.ok(viaNode(c, rc), `a replaced segment file must send the call to Node: ${rc.stderr}`);
  renameSync(join(statusDir, `${c}.ready`), join(statusDir, `${c}.done`));
  // A record whose .ready is gone (marked done by someone else): Node.
  renameSync(join(statusDir, `${d}.ready`), join(statusDir, `${d}.done`));
  const rd = archiverCall(d);
  assert.ok(viaNode(d, rd), `no .ready must send the call to Node: ${rd.stderr}`);
  assert.deepEqual(
    readdirSync(ackDir).filter((n) => SEG.test(n)),
    [],
    "swept",
  );
});

test("kill -9 of the background pusher after a batch member is durable but before its record: no record, every .ready stays, the front goes to Node, the retry finds it identical", async () => {
  const names = await pileUp(3);
  const [oldest, second] = names as [string, string];
  // %p absolute: the batch finds archive_status beside it wherever wal-archive runs. The call
  // itself ends once %p is durable; its pusher stops itself after its first durable member.
  const res = runBin("wal-archive", [ini, join(master.dataDir, "pg_wal", oldest), oldest], {
    env: { WALMGR_TEST_PAUSE_AT: "archive-batch-stored" },
  });
  assert.equal(res.status, 0, res.stderr);
  let pid = 0;
  await waitFor("the pusher to pause after a durable member", () => {
    pid = pusherPids()[0] ?? 0;
    return pid > 0 && isStopped(pid);
  });
  process.kill(pid, "SIGKILL");
  await waitFor("the pusher to be gone", () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  });
  assert.deepEqual(
    records().filter((d) => names.includes(d)),
    [],
    "nothing may be recorded by a pusher killed before its record",
  );
  assert.ok(names.every((n) => ready().includes(n)));
  // Its markers name a dead process: PostgreSQL's call for the next segment does not wait on
  // them, it goes to Node at once.
  const t0 = Date.now();
  const r = archiverCall(second);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`${second} (was already archived|\\()`), "the call went to Node");
  assert.ok(Date.now() - t0 < 4000, `a dead pusher's marker must not hold the call (${Date.now() - t0} ms)`);
  await pushersDone();
  renameSync(join(statusDir, `${second}.ready`), join(statusDir, `${second}.done`));
  await drainWithWalArchive();
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
});

test("kill -9 at random moments of batch runs (25 rounds): never a record without a durable, verified copy", async () => {
  const names = await pileUp(12);
  for (let round = 0; round < 25; round++) {
    const left = ready().filter((r) => names.includes(r));
    if (left.length === 0) break;
    const oldest = left[0] ?? "";
    const s = spawnBin("wal-archive", [ini, `pg_wal/${oldest}`, oldest], { cwd: master.dataDir });
    await sleep(Math.floor(Math.random() * 160));
    // The call and every background pusher at work at that moment.
    s.child.kill("SIGKILL");
    for (const pid of pusherPids()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await s.exited;
    assertDoneAreDurable(records());
    assert.ok(
      names.every((n) => ready().includes(n)),
      "a killed run never marks anything done",
    );
  }
  await pushersDone();
  await drainWithWalArchive();
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
  for (const n of names) assert.ok(existsSync(join(completed, n)), `${n} not archived`);
  // A later run sweeps what the killed writers left.
  const more = await pileUp(1);
  const last = more[0] ?? "";
  assert.equal(archiverCall(last).status, 0);
  await pushersDone();
  assert.deepEqual(
    readdirSync(completed).filter((n) => n.startsWith(".walmgr-tmp.")),
    [],
    "temps of killed writers must be swept",
  );
  await drainWithWalArchive();
});

test("a batch member that conflicts gets no record and is logged; the others go through; %p exits 0", async () => {
  const names = await pileUp(4);
  const [first, second, ...rest] = names as [string, string, ...string[]];
  const planted = randomBytes(16 << 20);
  writeFileAs(join(completed, second), "");
  writeFileSync(join(completed, second), planted);
  const from = logLength();
  const res = archiverCall(first);
  assert.equal(res.status, 0, res.stderr);
  await pushersDone();
  assert.ok(ready().includes(second), "the conflicting member keeps its .ready");
  // The pusher runs detached from PostgreSQL's pipes: it says so in the logfile.
  assert.match(logLinesSince(from).join("\n"), new RegExp(`${second} not archived.*other content`));
  assert.deepEqual(records(), rest, "only the members that went through are recorded");
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

test("two wal-archive runs at once on one pg_wal (20 rounds): both exit 0, nothing conflicts, every record durable", async () => {
  const all: string[] = [];
  for (let round = 0; round < 20; round++) {
    const names = await pileUp(4);
    all.push(...names);
    // Same %p in even rounds (an operator's run beside the archiver's), neighbours in odd ones.
    const pa = names[0] ?? "";
    const pb = round % 2 === 0 ? pa : (names[1] ?? "");
    const from = logLength();
    const a = spawnBin("wal-archive", [ini, `pg_wal/${pa}`, pa], { cwd: master.dataDir });
    const b = spawnBin("wal-archive", [ini, `pg_wal/${pb}`, pb], { cwd: master.dataDir });
    const [ea, eb] = await Promise.all([a.exited, b.exited]);
    assert.equal(ea.status, 0, `round ${round}, run A: ${a.output()}`);
    assert.equal(eb.status, 0, `round ${round}, run B: ${b.output()}`);
    await pushersDone();
    assert.doesNotMatch(
      a.output() + b.output() + logLinesSince(from).join("\n"),
      /not archived|other content|conflict/i,
      `round ${round}`,
    );
    assertDoneAreDurable(records());
    // Then what PostgreSQL does: its own call for each segment in order, .done after each 0 exit.
    for (const n of names) {
      if (!ready().includes(n)) continue;
      const r = archiverCall(n);
      assert.equal(r.status, 0, `round ${round}, PostgreSQL's call for ${n}: ${r.stderr}`);
      renameSync(join(statusDir, `${n}.ready`), join(statusDir, `${n}.done`));
    }
    assert.deepEqual(
      names.filter((n) => ready().includes(n)),
      [],
      `round ${round}: every segment of the round marked done`,
    );
  }
  assertDoneAreDurable(all.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
  for (const n of all) assert.ok(existsSync(join(completed, n)), `${n} not archived`);
  assert.deepEqual(
    readdirSync(completed).filter((n) => n.startsWith(".walmgr-tmp.")),
    [],
    "no temp left by either writer",
  );
});

test("a pusher that stops answering (SIGSTOP) holds PostgreSQL's call for its segment only within the bound its marker names; then Node archives it", async () => {
  // Another config with a short call bound: s3_timeout × (s3_retries + 1) = 1 s; a marker then
  // names 1 + 5 = 6 s.
  const short = join(base, "short.ini");
  writeFileAs(short, `${readFileSync(ini, "utf8")}s3_timeout = 1\ns3_retries = 0\n`);
  const names = await pileUp(3);
  const [oldest, second] = names as [string, string];
  const res = runBin("wal-archive", [short, join(master.dataDir, "pg_wal", oldest), oldest], {
    env: { WALMGR_TEST_PAUSE_AT: "archive-batch-stored" },
  });
  assert.equal(res.status, 0, res.stderr);
  let pid = 0;
  await waitFor("the pusher to pause", () => {
    pid = pusherPids()[0] ?? 0;
    return pid > 0 && isStopped(pid);
  });
  try {
    const t0 = Date.now();
    const r = runBin("wal-archive", [short, `pg_wal/${second}`, second], { cwd: master.dataDir, timeout: 60_000 });
    const took = Date.now() - t0;
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`${second} (was already archived|\\()`), "after the bound, Node archives it");
    assert.ok(took >= 5000, `the front waited for the live pusher (${took} ms)`);
    assert.ok(took < 20_000, `the front's wait is bounded by the marker's seconds (${took} ms)`);
  } finally {
    process.kill(pid, "SIGKILL");
  }
  renameSync(join(statusDir, `${second}.ready`), join(statusDir, `${second}.done`));
  await drainWithWalArchive();
  assertDoneAreDurable(names.filter((n) => existsSync(join(master.dataDir, "pg_wal", n))));
});
