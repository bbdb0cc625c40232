/**
 * The walmgr manual's QUICK START as one scenario, end to end on real PostgreSQL with the real
 * executables, run over each transport of the slave directory: a local folder
 * (quickstart.test.ts), another host and user over ssh (ssh-quickstart.test.ts) and an S3 bucket
 * (s3-quickstart.test.ts). Setup, backup, restore, replay, pause/continue, sync of the
 * in-progress segment, boot, and every row on the booted standby.
 *
 * A QuickStartSite says how the scenario reaches and sees the slave directory on its transport;
 * what only one transport has (the ssh delta backup, the S3 lock object, the S3 control_dir) is
 * in that site's hooks.
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, test, type TestContext } from "node:test";
import type { Cluster } from "./cluster";
import { ok, runBin, waitFor, type RunResult } from "./env";

/** One transport's way through the QUICK START. */
export interface QuickStartSite {
  master: Cluster;
  /** The restored standby (its data directory is `slaveData`). */
  slave: Cluster;
  slaveData: string;
  masterIni: string;
  slaveIni: string;
  /** Runs one of our executables where the slave's commands run (the slave host's user over ssh). */
  slaveBin(name: string, args: string[]): RunResult;
  /** Whether the slave directory holds `rel` ("logs.complete/SEG", "data.master/backup_label"). */
  has(rel: string): Promise<boolean>;
  /** The size of `rel` as stored in the slave directory. */
  size(rel: string): Promise<number>;
  /** The text of `rel` as stored in the slave directory. */
  read(rel: string): Promise<string>;
  /** The file that holds replay back while it exists (logs.complete/PAUSE, or in control_dir). */
  pauseFile: string;
  /** The slave's log file: wal-restore says there which segment it does not serve while paused. */
  slaveLog: string;
  /** After the master's setup: the slave side's layout (and its own setup where it needs one). */
  afterSetup(t: TestContext): Promise<void>;
  /** After the first backup (`res` is wal-backup's run): what only this transport stores. */
  afterBackup(t: TestContext, res: RunResult): Promise<void>;
  /** Subtests of this transport only, run between the first backup and the restore. */
  extraSteps(t: TestContext): Promise<void>;
  /** After the standby has replayed a switched segment: what only this transport shows. */
  afterRestore(t: TestContext): Promise<void>;
  /** Stops both servers and removes everything the site made (a Swift or sshd included). */
  stop(): Promise<void>;
  /** backup_format of both configs (default plain): where the backup's set is looked for. */
  format?: "plain" | "repo";
}

async function count(c: Cluster, tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM shipped WHERE tag = $1", [tag]));
}

const ROWS = "SELECT tag, count(*)::text AS n FROM shipped GROUP BY tag ORDER BY tag";
const SUM = "SELECT sum(abalance)::text FROM pgbench_accounts";
const SEGMENT_BYTES = 16 * 1024 * 1024;

/**
 * Registers the QUICK START as the test `title` of this file, on the site `make` builds in the
 * file's `before` (and stops in its `after`).
 */
export function quickStartTest(title: string, make: () => Promise<QuickStartSite>): void {
  let s: QuickStartSite | undefined;
  before(async () => {
    s = await make();
  });
  after(async () => {
    await s?.stop();
  });
  test(title, async (t) => {
    assert.ok(s, "the site was made");
    await quickStart(t, s);
  });
}

/** The scenario itself, as subtests of `t`. */
export async function quickStart(t: TestContext, s: QuickStartSite): Promise<void> {
  await t.test("setup enables archiving and makes the slave layout; a second setup changes nothing", async (t) => {
    // The standby restored from the backup (which copies this file) asks for the next segment
    // every second rather than every 5 s: replay after a switch or a `continue` comes sooner.
    appendFileSync(join(s.master.dataDir, "postgresql.conf"), "wal_retrieve_retry_interval = 1s\n");
    ok(runBin("wal-ctl", [s.masterIni, "setup"]), "setup");
    await s.afterSetup(t);
    assert.equal(await s.master.value("SELECT current_setting('archive_mode')"), "on");
    const cmd = await s.master.value<string>("SELECT current_setting('archive_command')");
    assert.match(cmd, /bin\/wal-archive .*master\.ini %p %f$/);
    const confFile = join(s.master.dataDir, "postgresql.conf");
    const conf = readFileSync(confFile, "utf8");
    ok(runBin("wal-ctl", [s.masterIni, "setup"]), "second setup");
    assert.equal(readFileSync(confFile, "utf8"), conf, "second setup changed the file");
  });

  await t.test("backup takes a base backup into full_backup", async (t) => {
    s.master.pgbench(["-i", "-s", "1", "-q"]);
    await s.master.query("CREATE TABLE shipped (id serial PRIMARY KEY, tag text NOT NULL)");
    await s.master.query("INSERT INTO shipped (tag) SELECT 'base' FROM generate_series(1, 100)");
    await s.master.query("CHECKPOINT");
    const res = ok(runBin("wal-backup", [s.masterIni]), "wal-backup");
    // A plain set is a folder data.master; a repo set a manifest named by its time in repo/sets.
    const listed = s.format === "repo" ? /\d{8}T\d{6}Z\s.*\srepo/ : /data\.master/;
    if (s.format === "repo") {
      assert.ok(await s.has("repo/format"), "the repository's format record");
      assert.match(`${res.stdout}${res.stderr}`, /backup set \d{8}T\d{6}Z written/);
    } else {
      assert.match(await s.read("data.master/backup_label"), /START WAL LOCATION/);
      for (const k of [".walmgr-backup.json", ".walmgr-manifest.json", "global/pg_control", "PG_VERSION"])
        assert.ok(await s.has(`data.master/${k}`), `${k} in the set`);
      assert.ok(!(await s.has("data.master/postmaster.pid")), "postmaster.pid must be excluded");
    }
    assert.ok(!(await s.has("logs.complete/BACKUPLOCK")), "BACKUPLOCK must be released");
    assert.match(ok(runBin("wal-ctl", [s.masterIni, "listbackups"]), "listbackups").stdout, listed);
    assert.match(ok(s.slaveBin("wal-ctl", [s.slaveIni, "listbackups"]), "listbackups").stdout, listed);
    await s.afterBackup(t, res);
  });

  await s.extraSteps(t);

  await t.test("restore starts a standby that replays switched segments", async (t) => {
    ok(s.slaveBin("wal-ctl", [s.slaveIni, "restore"]), "restore");
    assert.ok(existsSync(join(s.slaveData, "standby.signal")));
    s.master.pgbench(["-t", "200", "-c", "2", "-n"]);
    await s.master.query("INSERT INTO shipped (tag) SELECT 'replayed' FROM generate_series(1, 50)");
    await s.master.query("SELECT pg_switch_wal()");
    await waitFor(
      "the standby to replay the switched segment",
      async () => (await count(s.slave, "replayed")) === 50,
      90_000,
    );
    assert.equal(await s.slave.value("SELECT pg_is_in_recovery()"), true);
    await s.afterRestore(t);
  });

  await t.test("pause holds back a new segment; continue lets it through", async () => {
    ok(s.slaveBin("wal-ctl", [s.slaveIni, "pause"]), "pause");
    assert.ok(existsSync(s.pauseFile), `${s.pauseFile} made`);
    await s.master.query("INSERT INTO shipped (tag) SELECT 'paused' FROM generate_series(1, 30)");
    // The segment with the new rows (asked before the switch: right after one, the position is
    // at a segment's start, which pg_walfile_name names as the segment before).
    const seg = await s.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    await s.master.query("SELECT pg_switch_wal()");
    await waitFor(`${seg} to be archived`, () => s.has(`logs.complete/${seg}`), 30_000);
    // Rather than a fixed wait: the standby asks for the segment again (every second) and
    // is refused it while it is there to serve, which wal-restore logs. Only then is "nothing
    // replayed" evidence that the pause held it back.
    const from = statSync(s.slaveLog).size;
    await waitFor(
      `wal-restore to refuse ${seg} while paused (in ${s.slaveLog})`,
      () => readFileSync(s.slaveLog).subarray(from).toString("utf8").includes(`not serving ${seg}`),
      60_000,
    );
    assert.equal(await count(s.slave, "paused"), 0, "a paused standby replayed new WAL");
    ok(s.slaveBin("wal-ctl", [s.slaveIni, "continue"]), "continue");
    assert.ok(!existsSync(s.pauseFile), `${s.pauseFile} removed`);
    await waitFor("the standby to replay after continue", async () => (await count(s.slave, "paused")) === 30, 60_000);
  });

  await t.test("sync ships rows that exist only in the in-progress segment; boot keeps them", async () => {
    await s.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 20)");
    const seg = await s.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    ok(runBin("wal-sync", [s.masterIni]), "wal-sync");
    assert.equal(await s.size(`logs.partial/${seg}`), SEGMENT_BYTES, "the partial segment is stored full-size");
    // A second one-shot sync ships only what is new.
    await s.master.query("INSERT INTO shipped (tag) SELECT 'partial' FROM generate_series(1, 5)");
    const second = ok(runBin("wal-sync", [s.masterIni, "-v"]), "second wal-sync");
    assert.match(second.stderr, /shipped \d+ bytes of/);
    const masterRows = await s.master.query<{ tag: string; n: string }>(ROWS);
    const masterSum = await s.master.value<string>(SUM);
    s.master.stop("immediate");
    assert.ok(!(await s.has(`logs.complete/${seg}`)), `${seg} must not be archived: its rows are partial-only`);
    assert.equal(await count(s.slave, "partial"), 0, "the standby must not have the partial rows before boot");

    ok(s.slaveBin("wal-ctl", [s.slaveIni, "boot"]), "boot");
    assert.equal(await s.slave.value("SELECT pg_is_in_recovery()"), false);
    assert.deepEqual(await s.slave.query<{ tag: string; n: string }>(ROWS), masterRows);
    assert.equal(await s.slave.value<string>(SUM), masterSum);
    await s.slave.query("INSERT INTO shipped (tag) VALUES ('after boot')");
    assert.equal(await count(s.slave, "after boot"), 1);
  });
}

/** What a site has no own check for. */
export const NOTHING_MORE = async (): Promise<void> => undefined;

/** `has`, `size` and `read` of a slave directory this machine can read (local, or the ssh test host's). */
export function onDisk(slaveDir: string): Pick<QuickStartSite, "has" | "size" | "read"> {
  const at = (rel: string): string => join(slaveDir, rel);
  return {
    has: async (rel) => existsSync(at(rel)),
    size: async (rel) => statSync(at(rel)).size,
    read: async (rel) => readFileSync(at(rel), "utf8"),
  };
}
