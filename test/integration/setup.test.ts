/**
 * `setup` and `stop` on the master make the archiving settings take effect and prove it with
 * SHOW; `%` in a config path survives PostgreSQL's %-substitution; a logfile `setup` creates as
 * root belongs to its folder's owner.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { binPath, IS_ROOT, makeTempDir, mkdirAs, ok, pgBin, removeTempDir, run, runBin, waitFor } from "../helpers/env";
import { createPair, masterIniText, slaveIniText, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

describe("on a real master", () => {
  let p: Pair;
  /** master.ini and slave.ini in a folder whose name PostgreSQL would read as %p, %f and %r. */
  let oddDir: string;
  let masterIni: string;
  let slaveIni: string;
  let conf: string;

  before(async () => {
    p = await createPair("setup");
    oddDir = join(p.base, "cfg a%p%f%r");
    mkdirAs(oddDir);
    masterIni = join(oddDir, "master.ini");
    slaveIni = join(oddDir, "slave.ini");
    writeFileAs(masterIni, masterIniText(p.master, p.slaveDir));
    writeFileAs(slaveIni, slaveIniText(p.slave, p.slaveData, p.slaveDir));
    conf = join(p.master.dataDir, "postgresql.conf");
  });

  after(() => {
    if (p) {
      stopPair(p);
      removeTempDir(p.base);
    }
  });

  const pid = (): string => readFileSync(join(p.master.dataDir, "postmaster.pid"), "utf8").split("\n")[0] ?? "";

  test("a config path with %p, %f and %r: archiving and restore work", async () => {
    ok(runBin("wal-ctl", [masterIni, "setup"]), "setup");
    await p.master.query("CREATE TABLE t (tag text)");
    const archived = async (): Promise<void> => {
      const seg = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
      await p.master.query("SELECT pg_switch_wal()");
      await waitFor(`${seg} to be archived`, () => existsSync(join(p.slaveDir, "logs.complete", seg)), 20_000);
    };
    await archived();
    assert.equal(await p.master.value<string>("SELECT failed_count::text FROM pg_stat_archiver"), "0");
    const cmd = await p.master.value<string>("SHOW archive_command");
    assert.ok(cmd.includes("cfg a%%p%%f%%r/master.ini"), cmd);
    ok(runBin("wal-backup", [masterIni]), "wal-backup");
    ok(runBin("wal-ctl", [slaveIni, "restore"]), "restore");
    assert.match(
      readFileSync(join(p.slaveData, "postgresql.auto.conf"), "utf8"),
      /cfg a%%p%%f%%r\/slave\.ini'' %f %p %r'$/m,
    );
    await p.master.query("INSERT INTO t SELECT 'odd path' FROM generate_series(1, 42)");
    await archived();
    await waitFor(
      "the standby to replay",
      async () => (await p.slave.value<string>("SELECT count(*)::text FROM t")) === "42",
      30_000,
    );
    p.slave.stop("fast");
  });

  test("stop turns archiving off although ALTER SYSTEM set archive_mode = on", async () => {
    await p.master.query("ALTER SYSTEM SET archive_mode = on");
    const res = ok(runBin("wal-ctl", [masterIni, "stop"]), "stop");
    assert.equal(await p.master.value("SHOW archive_mode"), "off", res.stderr);
    assert.match(res.stderr, /removed archive_mode from .*postgresql\.auto\.conf with ALTER SYSTEM RESET/);
    ok(runBin("wal-ctl", [masterIni, "setup"]), "setup again");
    assert.equal(await p.master.value("SHOW archive_mode"), "on");
  });

  test("an included file that overrides archive_command: exit 3 naming it, nothing restarted", async () => {
    const inc = join(p.master.dataDir, "override.conf");
    writeFileAs(inc, "archive_command = '/bin/true'\n");
    appendFileSync(conf, "include 'override.conf'\n");
    // Out of date in master_config as well, so that setup has something to change.
    ok(runBin("wal-ctl", [masterIni, "stop"]), "stop");
    const pidBefore = pid();
    const res = runBin("wal-ctl", [masterIni, "setup"]);
    assert.equal(res.status, 3, `${res.stdout}\n${res.stderr}`);
    assert.match(res.stderr, /override\.conf:1 sets archive_command = '\/bin\/true'/);
    assert.equal(pid(), pidBefore, "setup restarted the server although it refused");
    writeFileSync(conf, readFileSync(conf, "utf8").replace("include 'override.conf'\n", ""));
    ok(runBin("wal-ctl", [masterIni, "setup"]), "setup without the include");
    assert.equal(await p.master.value("SHOW archive_mode"), "on");
  });

  test("a running value that does not follow master_config after the restart: exit 7 naming it", async () => {
    ok(runBin("wal-ctl", [masterIni, "stop"]), "stop");
    // pg_ctl restart (master_restart_cmd) keeps the command-line options: -c wins over every file.
    p.master.stop("fast");
    const start = run("/bin/sh", ["-c", p.master.startCommand().replace("-o '", "-o '-c archive_mode=off ")]);
    assert.equal(start.status, 0, start.stderr);
    const res = runBin("wal-ctl", [masterIni, "setup"]);
    assert.equal(res.status, 7, `setup must fail when SHOW archive_mode stays off:\n${res.stdout}\n${res.stderr}`);
    assert.match(res.stderr, /archive_mode = 'off'.* did not take effect/);
    p.master.stop("fast");
    p.master.start();
  });

  test("stop on a crashed master (the failover runbook's next command) edits the file and starts nothing", async () => {
    ok(runBin("wal-ctl", [masterIni, "setup"]), "setup");
    assert.equal(await p.master.value("SHOW archive_mode"), "on");
    // A crash: the postmaster is killed, its postmaster.pid stays behind.
    const postmaster = Number(pid());
    process.kill(postmaster, "SIGKILL");
    await waitFor("the postmaster to die", () => run("kill", ["-0", String(postmaster)]).status !== 0);
    assert.ok(existsSync(join(p.master.dataDir, "postmaster.pid")));
    const res = ok(runBin("wal-ctl", [masterIni, "stop"]), "stop on a crashed master");
    assert.match(res.stderr, /the master is not running .*nothing was restarted or reloaded/);
    assert.doesNotMatch(res.stdout + res.stderr, /server started/);
    const status = run(pgBin("pg_ctl"), ["-D", p.master.dataDir, "status"]);
    assert.notEqual(status.status, 0, `stop started the old master:\n${status.stdout}`);
    assert.match(readFileSync(conf, "utf8"), /^archive_mode = 'off'/m);
    // Started again by the operator, it runs with archiving off.
    p.master.start();
    assert.equal(await p.master.value("SHOW archive_mode"), "off");
    ok(runBin("wal-ctl", [masterIni, "setup"]), "setup again");
    assert.equal(await p.master.value("SHOW archive_mode"), "on");
  });
});

describe("without a server", () => {
  let base: string;
  let mdata: string;
  let masterIni: string;

  before(() => {
    base = makeTempDir("setup-nodb");
    mdata = join(base, "mdata");
    mkdirAs(mdata);
    writeFileAs(join(mdata, "postgresql.conf"), "# test\nwal_level = replica\n");
    writeFileAs(
      join(mdata, "postgresql.auto.conf"),
      "# Do not edit this file manually!\nrestore_command = 'x %f %p'\narchive_mode = 'off'\n",
    );
    masterIni = join(base, "master.ini");
    writeFileAs(
      masterIni,
      `[wal-master]\nlogfile = master.log\nmaster_data = ${mdata}\nmaster_config = ${mdata}/postgresql.conf\nmaster_restart_cmd = true\nslave = ${base}/slave\n`,
    );
  });

  after(() => removeTempDir(base));

  test("setup as root: the logfile belongs to its folder's owner, and a later run as that user appends to it", () => {
    // As root: run directly (not as the server user); as anyone else this is the same user.
    const res = spawnSync(binPath("wal-ctl"), [masterIni, "setup"], { encoding: "utf8" });
    ok({ status: res.status, signal: res.signal, stdout: res.stdout, stderr: res.stderr }, "setup as root");
    const log = join(base, "master.log");
    if (IS_ROOT) assert.equal(statSync(log).uid, statSync(base).uid, "the logfile must take its folder's owner");
    const size = statSync(log).size;
    const again = ok(runBin("wal-ctl", [masterIni, "setup"]), "setup as the server user");
    assert.doesNotMatch(again.stderr, /cannot write logfile/);
    assert.ok(statSync(log).size > size, "the second run must append to the logfile");
  });

  test("setup without a connection comments out the postgresql.auto.conf override and says so", () => {
    const auto = readFileSync(join(mdata, "postgresql.auto.conf"), "utf8");
    assert.match(auto, /^# archive_mode = 'off'/m);
    assert.match(auto, /^restore_command = 'x %f %p'$/m);
    const log = readFileSync(join(base, "master.log"), "utf8");
    assert.match(log, /postgresql\.auto\.conf sets archive_mode = 'off'/);
    assert.match(log, /commented out archive_mode in .*postgresql\.auto\.conf/);
    // No server runs in master_data: nothing is restarted (master_restart_cmd would start it).
    assert.match(log, /the master is not running \(no postmaster in .*\): .*nothing was restarted or reloaded/);
  });
});
