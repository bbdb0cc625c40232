/**
 * Backups in depth on real PostgreSQL 15: rotation with keep_backups and WAL purging, a
 * backup interrupted by SIGTERM, point-in-time restores (time, LSN, restore point) of a named
 * set into another directory, a tablespace, and a backup taken from the standby.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Cluster, freePort } from "../helpers/cluster";
import {
  binPath,
  mkdirAs,
  removeTempDir,
  run,
  runBin,
  RUN_AS,
  sleep,
  spawnBin,
  waitFor,
  ok,
  type RunResult,
} from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
const extra: Cluster[] = [];

const setsDir = (): string => p.slaveDir;
const sets = (): string[] =>
  readdirSync(setsDir())
    .filter((n) => /^data\.master(\.\d+)?$/.test(n))
    .sort();

/** util-linux `script`, which runs a command on a pseudo-terminal (absent: the TTY check is skipped). */
const HAVE_SCRIPT = spawnSync("sh", ["-c", "command -v script"], { stdio: "ignore" }).status === 0;

/**
 * Runs wal-backup on a pseudo-terminal, as an operator at a terminal would (as the server user,
 * like runBin): `script` puts stdout and stderr together on its own stdout, line ends as \r\n.
 */
function backupOnTty(ini: string): RunResult {
  const q = (w: string): string => `'${w.replace(/'/g, "'\\''")}'`;
  return run("script", ["-qfec", `${q(binPath("wal-backup"))} ${q(ini)}`, "/dev/null"], {
    env: { TERM: "xterm", NO_COLOR: "" },
  });
}

/** The stage lines every master backup with keep_backups > 0 logs, once each, without a terminal. */
const BACKUP_STAGES = [
  "backup: starting backup (pg_backup_start)",
  "backup: copying data directory (",
  "backup: stopping backup, writing the manifest",
  "backup: rotating sets",
  "backup: purging WAL",
  "backup done in ",
];

async function count(c: Cluster, tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM t WHERE tag = $1", [tag]));
}

async function switchAndArchive(): Promise<void> {
  const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor(`${seg} archived`, () => existsSync(join(p.slaveDir, "logs.complete", seg)), 30_000);
}

/** Restores a named set into a new directory with the given options, starts it, waits for recovery to end. */
async function pitr(name: string, options: string[], ini = p.slaveIni): Promise<Cluster> {
  const dst = join(p.base, name);
  ok(runBin("wal-ctl", [ini, "restore", "data.master", dst, ...options]), `restore ${name}`);
  assert.ok(existsSync(join(dst, "recovery.signal")));
  const c = new Cluster(dst, await freePort(), p.base, join(p.base, `${name}.log`));
  extra.push(c);
  c.start();
  await waitFor(
    `${name} to finish recovery`,
    async () => (await c.value("SELECT pg_is_in_recovery()")) === false,
    90_000,
  );
  return c;
}

before(async () => {
  p = await createPair("backups", { master: "keep_backups = 2", slave: "keep_backups = 2" });
});

after(() => {
  for (const c of extra) c.stop("immediate");
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("backups in depth", async (t) => {
  await t.test(
    "three backups with keep_backups = 2 leave two sets and no WAL older than the oldest needs",
    async () => {
      ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
      const ts = join(p.base, "ts1");
      mkdirAs(ts);
      await p.master.query(`CREATE TABLESPACE ts1 LOCATION '${ts}'`);
      await p.master.query("CREATE TABLE t (id serial, tag text, at timestamptz DEFAULT clock_timestamp())");
      await p.master.query("CREATE TABLE in_ts (v int) TABLESPACE ts1");
      await p.master.query("INSERT INTO in_ts SELECT generate_series(1, 321)");
      for (const n of [1, 2, 3]) {
        await p.master.query("INSERT INTO t (tag) SELECT $1 FROM generate_series(1, 10)", [`b${n}`]);
        await switchAndArchive();
        if (n < 3 || !HAVE_SCRIPT) {
          const res = ok(runBin("wal-backup", [p.masterIni]), `backup ${n}`);
          if (n === 1) {
            // Not a terminal: one log line per stage, no redrawn line, no colour.
            assert.ok(!res.stderr.includes("\r") && !res.stderr.includes("\x1b"), res.stderr);
            const lines = res.stderr.split("\n");
            for (const stage of BACKUP_STAGES) {
              assert.equal(lines.filter((l) => l.includes(stage)).length, 1, `one "${stage}" line:\n${res.stderr}`);
            }
          }
          continue;
        }
        // The third at a terminal: the progress line, redrawn in place, cleared at the end.
        const res = backupOnTty(p.masterIni);
        assert.equal(res.status, 0, `backup 3 on a terminal failed:\n${res.stdout}\n${res.stderr}`);
        const drawn = res.stdout.split("\r").filter((d) => d.startsWith("backup: copying data directory  "));
        assert.ok(
          drawn.some((d) => / \d+\/\d+ files /.test(d) && d.endsWith("\x1b[K")),
          `a progress line with the files done of the total:\n${JSON.stringify(res.stdout)}`,
        );
        assert.ok(res.stdout.includes("\r\x1b[K"), "the line is cleared");
        assert.match(res.stdout, /INFO [^\r\n]*: backup done in [\d.]+ s: \d+ files, /);
        assert.ok(!/INFO [^\r\n]*: backup: copying data directory/.test(res.stdout), "no stage log line at a terminal");
      }
      assert.deepEqual(sets(), ["data.master", "data.master.0"]);
      const info = JSON.parse(readFileSync(join(setsDir(), "data.master.0", ".walmgr-backup.json"), "utf8")) as {
        startWal: string;
        stopLsn: string;
        systemIdentifier: string;
        files: number;
      };
      assert.match(info.startWal, /^[0-9A-F]{24}$/);
      assert.ok(info.files > 100 && info.systemIdentifier.length > 5);
      const older = readdirSync(join(p.slaveDir, "logs.complete")).filter(
        (n) => /^[0-9A-F]{24}/.test(n) && n.slice(8, 24) < info.startWal.slice(8, 24),
      );
      assert.deepEqual(older, [], "WAL older than the oldest kept set must be purged");
      const listed = JSON.parse(
        ok(runBin("wal-ctl", [p.masterIni, "listbackups", "--json"]), "listbackups").stdout,
      ) as {
        name: string;
        startWal: string;
      }[];
      assert.deepEqual(
        listed.map((r) => r.name),
        ["data.master", "data.master.0"],
      );
      ok(runBin("wal-ctl", [p.slaveIni, "verify"]), "verify");
      const table = ok(runBin("wal-ctl", [p.slaveIni, "listbackups"]), "listbackups table").stdout;
      assert.match(table, /NAME\s+START TIME\s+LABEL\s+START WAL\s+SIZE/);
    },
  );

  await t.test("a backup interrupted by SIGTERM leaves the other sets usable and no lock behind", async () => {
    // Ballast makes the copy long enough to interrupt.
    const ballast = join(p.master.dataDir, "walmgr_test_ballast");
    writeFileAs(ballast, "");
    writeFileSync(ballast, Buffer.alloc(400 * 1024 * 1024, 7));
    try {
      const child = spawn(binPath("wal-backup"), [p.masterIni], {
        stdio: "ignore",
        ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
      });
      const exited = new Promise<number | null>((r) => child.on("exit", (code, sig) => r(code ?? (sig ? -1 : null))));
      await waitFor(
        "the backup to start copying",
        () => readdirSync(setsDir()).some((n) => n.startsWith(".walmgr-tmp.")),
        60_000,
        20,
      );
      child.kill("SIGTERM");
      await exited;
    } finally {
      rmSync(ballast, { force: true });
    }
    assert.ok(!existsSync(join(p.slaveDir, "logs.complete", "BACKUPLOCK")), "the lock must be released");
    assert.deepEqual(
      readdirSync(setsDir()).filter((n) => n.startsWith(".walmgr-tmp.")),
      [],
      "the partial set must be removed",
    );
    assert.ok(sets().length >= 1);
    ok(runBin("wal-ctl", [p.slaveIni, "verify"]), "verify after an interrupted backup");
    ok(runBin("wal-backup", [p.masterIni]), "a backup after the interrupted one");
    assert.deepEqual(sets(), ["data.master", "data.master.0"]);
  });

  await t.test("point-in-time restore of a named set to a time, an LSN and a restore point", async () => {
    await p.master.query("INSERT INTO t (tag) SELECT 'before-time' FROM generate_series(1, 7)");
    await sleep(1100);
    const when = await p.master.value<string>("SELECT now()::text");
    await sleep(1100);
    await p.master.query("INSERT INTO t (tag) SELECT 'after-time' FROM generate_series(1, 5)");
    await p.master.query("INSERT INTO t (tag) SELECT 'before-lsn' FROM generate_series(1, 3)");
    const lsn = await p.master.value<string>("SELECT pg_current_wal_lsn()::text");
    await p.master.query("INSERT INTO t (tag) SELECT 'after-lsn' FROM generate_series(1, 4)");
    await p.master.query("INSERT INTO t (tag) SELECT 'before-name' FROM generate_series(1, 6)");
    await p.master.query("SELECT pg_create_restore_point('walmgr_rp')");
    await p.master.query("INSERT INTO t (tag) SELECT 'after-name' FROM generate_series(1, 2)");
    await switchAndArchive();

    const byTime = await pitr("pitr-time", ["--target-time", when]);
    assert.equal(await count(byTime, "before-time"), 7);
    assert.equal(await count(byTime, "after-time"), 0);
    assert.equal(await byTime.value<string>("SELECT count(*)::text FROM in_ts"), "321", "the tablespace is restored");
    byTime.stop();

    const byLsn = await pitr("pitr-lsn", ["--target-lsn", lsn]);
    assert.equal(await count(byLsn, "before-lsn"), 3);
    assert.equal(await count(byLsn, "after-lsn"), 0);
    byLsn.stop();

    // The master's (EXPERIMENTAL in walmgr) restore SET DST works the same way.
    const byName = await pitr("pitr-name", ["--target-name", "walmgr_rp"], p.masterIni);
    assert.equal(await count(byName, "before-name"), 6);
    assert.equal(await count(byName, "after-name"), 0);
    byName.stop();
  });

  await t.test("a backup taken from the standby restores to the master's data", async () => {
    ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "standby restore");
    await p.master.query("INSERT INTO t (tag) SELECT 'for-standby' FROM generate_series(1, 9)");
    await switchAndArchive();
    await waitFor("the standby to catch up", async () => (await count(p.slave, "for-standby")) === 9, 90_000);
    ok(runBin("wal-backup", [p.slaveIni]), "slave backup");
    const info = JSON.parse(readFileSync(join(setsDir(), "data.master", ".walmgr-backup.json"), "utf8")) as {
      source: string;
    };
    assert.equal(info.source, "slave");
    await p.master.query("INSERT INTO t (tag) SELECT 'after-slave-backup' FROM generate_series(1, 4)");
    await switchAndArchive();
    const dst = join(p.base, "from-standby");
    ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master", dst]), "restore the slave backup");
    const c = new Cluster(dst, await freePort(), p.base, join(p.base, "from-standby.log"));
    extra.push(c);
    c.start();
    const q = "SELECT tag, count(*)::text AS n FROM t GROUP BY tag ORDER BY tag";
    const want = await p.master.query(q);
    await waitFor(
      "the restored slave backup to replay to the master's state",
      async () => {
        const got = await c.query(q);
        return JSON.stringify(got) === JSON.stringify(want);
      },
      90_000,
    );
    assert.equal(await c.value<string>("SELECT count(*)::text FROM in_ts"), "321");
    c.stop();
  });

  await t.test(
    "rotation runs the slave's archive_command with the set's path; its failure stops the rotation",
    async () => {
      const logFile = join(p.base, "rotated.log");
      const masterIni = readFileSync(p.masterIni, "utf8");
      const slaveIni = readFileSync(p.slaveIni, "utf8");
      writeFileAs(p.masterIni, `${masterIni}\nslave_config = ${p.slaveIni}\n`);
      writeFileAs(p.slaveIni, `${slaveIni}\narchive_command = echo "$1" >> ${logFile}\n`);
      ok(runBin("wal-backup", [p.masterIni]), "backup with a rotation hook");
      assert.equal(readFileSync(logFile, "utf8").trim(), join(setsDir(), "data.master.0"));
      const before = sets();
      writeFileAs(p.slaveIni, `${slaveIni}\narchive_command = exit 3\n`);
      const res = runBin("wal-backup", [p.masterIni]);
      assert.notEqual(res.status, 0);
      assert.match(res.stderr, /archive_command .*exited with status 3/);
      assert.deepEqual(sets(), before, "a failed rotation hook must leave the sets as they were");
      assert.ok(!existsSync(join(p.slaveDir, "logs.complete", "BACKUPLOCK")));
      writeFileAs(p.masterIni, masterIni);
      writeFileAs(p.slaveIni, slaveIni);
    },
  );
});

test("a master's backup ends only once its last segment is archived", async () => {
  const command = await p.master.value<string>("SHOW archive_command");
  const setCommand = async (cmd: string): Promise<void> => {
    await p.master.query(`ALTER SYSTEM SET archive_command = '${cmd.replace(/'/g, "''")}'`);
    await p.master.query("SELECT pg_reload_conf()");
  };
  const infoOf = (): { label: string; stopLsn: string } =>
    JSON.parse(readFileSync(join(setsDir(), "data.master", ".walmgr-backup.json"), "utf8")) as {
      label: string;
      stopLsn: string;
    };
  const before = infoOf().label;
  await setCommand("/bin/false");
  let b: ReturnType<typeof spawnBin> | undefined;
  try {
    await sleep(300);
    b = spawnBin("wal-backup", [p.masterIni]);
    // The copy of this small cluster takes a second or two; the archive never catches up.
    await sleep(6000);
    assert.equal(b.child.exitCode, null, `wal-backup ended while its last segment was not archived: ${b.output()}`);
    assert.equal(infoOf().label, before, "the new set is not in place before its WAL is archived");
  } finally {
    await setCommand(command);
  }
  const e = await b.exited;
  assert.equal(e.status, 0, b.output());
  const info = infoOf();
  assert.notEqual(info.label, before, "the new set is in place");
  const last = await p.master.value<string>("SELECT pg_walfile_name($1::pg_lsn - 1)", [info.stopLsn]);
  assert.ok(existsSync(join(p.slaveDir, "logs.complete", last)), `${last}, the backup's last segment, is archived`);
});
