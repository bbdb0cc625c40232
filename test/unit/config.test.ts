/**
 * Config loading: walmgr's sample files, role detection, ConfigParser's INI dialect,
 * interpolation, type checks, defaults, locations and derived slave sub-directories.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { MAX_INTERPOLATED_LENGTH, MAX_INTERPOLATION_DEPTH } from "../../src/config/ini";
import { configStem, loadConfig, MAX_CONFIG_FILE_SIZE, parseLocation, type Config } from "../../src/config/load";
import { ConfigError, ExitCode } from "../../src/errors";
import { binPath } from "../helpers/env";

// The two samples of walmgr.1.txt, exactly as printed there (minus the manual's page indent).
const SAMPLE_MASTER = `[wal-master]
logfile              = master.log
pidfile              = master.pid
master_db            = dbname=template1
master_data          = /var/lib/postgresql/8.0/main
master_config        = /etc/postgresql/8.0/main/postgresql.conf
slave                = slave:/var/lib/postgresql/walshipping
completed_wals       = %(slave)s/logs.complete
partial_wals         = %(slave)s/logs.partial
full_backup          = %(slave)s/data.master
loop_delay           = 10.0
use_xlog_functions   = 1
compression          = 1
`;

const SAMPLE_SLAVE = `[wal-slave]
logfile              = slave.log
slave_data           = /var/lib/postgresql/8.0/main
slave_stop_cmd       = /etc/init.d/postgresql-8.0 stop
slave_start_cmd      = /etc/init.d/postgresql-8.0 start
slave                = /var/lib/postgresql/walshipping
completed_wals       = %(slave)s/logs.complete
partial_wals         = %(slave)s/logs.partial
full_backup          = %(slave)s/data.master
keep_backups         = 5
backup_datadir       = yes
`;

let dir: string;
let counter = 0;

/** Writes `text` to a new .ini file in the test folder and returns its path. */
function ini(text: string, name?: string): string {
  const file = join(dir, name ?? `cfg-${++counter}.ini`);
  writeFileSync(file, text);
  return file;
}

function load(text: string): Config {
  return loadConfig(ini(text));
}

/** Asserts that `fn` throws a ConfigError (exit code 3) whose message contains every string in `parts`. */
function throwsConfig(fn: () => unknown, parts: string[]): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    assert.equal(err.exitCode, ExitCode.CONFIG);
    for (const p of parts) assert.ok(err.message.includes(p), `message ${JSON.stringify(err.message)} lacks ${p}`);
    return true;
  });
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-unit-"));
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("sample configs from walmgr.1.txt", () => {
  test("master.ini loads unchanged as the master role", () => {
    const file = ini(SAMPLE_MASTER, "master.ini");
    const cfg = loadConfig(file);
    assert.equal(cfg.role, "master");
    assert.equal(cfg.section, "wal-master");
    assert.equal(cfg.file, file);
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.get("master_db"), "dbname=template1");
    assert.equal(cfg.get("master_data"), "/var/lib/postgresql/8.0/main");
    assert.equal(cfg.path("master_config"), "/etc/postgresql/8.0/main/postgresql.conf");
    assert.deepEqual(cfg.location("slave"), { host: "slave", path: "/var/lib/postgresql/walshipping" });
    assert.equal(cfg.get("completed_wals"), "slave:/var/lib/postgresql/walshipping/logs.complete");
    assert.deepEqual(cfg.location("completed_wals"), {
      host: "slave",
      path: "/var/lib/postgresql/walshipping/logs.complete",
    });
    assert.deepEqual(cfg.location("partial_wals"), {
      host: "slave",
      path: "/var/lib/postgresql/walshipping/logs.partial",
    });
    assert.deepEqual(cfg.location("full_backup"), {
      host: "slave",
      path: "/var/lib/postgresql/walshipping/data.master",
    });
    assert.equal(cfg.float("loop_delay"), 10);
    assert.equal(cfg.bool("use_xlog_functions"), true);
    assert.equal(cfg.bool("compression"), true);
    assert.equal(cfg.path("logfile"), join(dir, "master.log"));
    assert.equal(cfg.path("pidfile"), join(dir, "master.pid"));
    assert.equal(cfg.jobName, "master");
  });

  test("slave.ini loads unchanged as the slave role", () => {
    const cfg = loadConfig(ini(SAMPLE_SLAVE, "slave.ini"));
    assert.equal(cfg.role, "slave");
    assert.equal(cfg.section, "wal-slave");
    assert.deepEqual(cfg.warnings, []);
    assert.equal(cfg.get("slave_stop_cmd"), "/etc/init.d/postgresql-8.0 stop");
    assert.equal(cfg.get("slave_start_cmd"), "/etc/init.d/postgresql-8.0 start");
    assert.equal(cfg.path("slave_data"), "/var/lib/postgresql/8.0/main");
    assert.deepEqual(cfg.location("slave"), { path: "/var/lib/postgresql/walshipping" });
    assert.deepEqual(cfg.location("completed_wals"), { path: "/var/lib/postgresql/walshipping/logs.complete" });
    assert.deepEqual(cfg.location("partial_wals"), { path: "/var/lib/postgresql/walshipping/logs.partial" });
    assert.deepEqual(cfg.location("full_backup"), { path: "/var/lib/postgresql/walshipping/data.master" });
    assert.equal(cfg.int("keep_backups"), 5);
    assert.equal(cfg.bool("backup_datadir"), true);
    assert.equal(cfg.path("logfile"), join(dir, "slave.log"));
  });
});

describe("role detection", () => {
  test("[walmgr] with master_data is a master", () => {
    const cfg = load("[walmgr]\nmaster_data = /srv/pg\nwalmgr_data = /srv/ship\n");
    assert.equal(cfg.role, "master");
    assert.equal(cfg.section, "walmgr");
  });

  test("[walmgr] without master_data is a slave", () => {
    const cfg = load("[walmgr]\nslave_data = /srv/pg\nwalmgr_data = /srv/ship\n");
    assert.equal(cfg.role, "slave");
    assert.equal(cfg.section, "walmgr");
  });

  test("[walmgr] derives the slave sub-directories from walmgr_data", () => {
    const cfg = load("[walmgr]\nslave_data = /srv/pg\nwalmgr_data = /srv/ship\n");
    assert.equal(cfg.get("completed_wals"), "/srv/ship/logs.complete");
    assert.equal(cfg.get("partial_wals"), "/srv/ship/logs.partial");
    assert.equal(cfg.get("full_backup"), "/srv/ship/data.master");
  });

  test("two role sections in one file are refused", () => {
    throwsConfig(() => load("[wal-master]\nmaster_data = /a\n[wal-slave]\nslave_data = /b\n"), ["more than one"]);
  });

  test("a file without a known section is refused and the sections found are named", () => {
    throwsConfig(() => load("[something]\nslave = /x\n"), ["[something]"]);
  });
});

describe("INI dialect (Python ConfigParser)", () => {
  test("`key: value` works like `key = value`", () => {
    const cfg = load("[wal-slave]\nslave: /srv/ship\nslave_data:/srv/pg\nkeep_backups : 3\n");
    assert.equal(cfg.get("slave"), "/srv/ship");
    assert.equal(cfg.get("slave_data"), "/srv/pg");
    assert.equal(cfg.int("keep_backups"), 3);
  });

  test("the first delimiter splits key and value; later = and : belong to the value", () => {
    const cfg = load("[wal-master]\nmaster_db = dbname=template1 host=/tmp\nslave: host:/srv/ship\n");
    assert.equal(cfg.get("master_db"), "dbname=template1 host=/tmp");
    assert.deepEqual(cfg.location("slave"), { host: "host", path: "/srv/ship" });
  });

  test("indented continuation lines are joined with a newline", () => {
    const cfg = load("[wal-master]\nslave = /srv/ship\nperiodic_command = echo one\n    echo two\n\techo three\n");
    assert.equal(cfg.get("periodic_command"), "echo one\necho two\necho three");
    assert.equal(cfg.get("slave"), "/srv/ship");
  });

  test("inline ` ;` comments are stripped; a `;` without space before it is kept", () => {
    const cfg = load(
      "[wal-master]\nslave = /srv/ship ; the slave dir\nloop_delay = 5.0\t; seconds\nmaster_db = dbname=a;b\n",
    );
    assert.equal(cfg.get("slave"), "/srv/ship");
    assert.equal(cfg.float("loop_delay"), 5);
    assert.equal(cfg.get("master_db"), "dbname=a;b");
  });

  test("# and ; comment lines, blank lines and CRLF line ends are ignored", () => {
    const cfg = load("# a comment\r\n; another\r\n\r\n[wal-slave]\r\n# slave = /wrong\r\nslave = /srv/ship\r\n");
    assert.equal(cfg.get("slave"), "/srv/ship");
    assert.deepEqual(cfg.warnings, []);
  });

  test("a comment after a section header is ignored", () => {
    const cfg = load("[wal-slave]   ; the standby\nslave = /srv/ship\n");
    assert.equal(cfg.section, "wal-slave");
    assert.equal(cfg.get("slave"), "/srv/ship");
  });

  test("keys are case-insensitive", () => {
    const cfg = load("[wal-slave]\nSlave = /srv/ship\nKEEP_BACKUPS = 2\n");
    assert.equal(cfg.get("slave"), "/srv/ship");
    assert.equal(cfg.int("keep_backups"), 2);
    assert.deepEqual(cfg.warnings, []);
  });

  test("a setting before any section header is a ConfigError naming the file and line", () => {
    const file = ini("slave = /srv/ship\n[wal-slave]\n");
    throwsConfig(() => loadConfig(file), [file, ":1"]);
  });
});

describe("interpolation", () => {
  test("%(name)s expands from the same section and from [DEFAULT]", () => {
    const cfg = load(
      "[DEFAULT]\nbase = /srv\nversion = 15\n[wal-slave]\nslave = %(base)s/ship\nslave_data = %(base)s/pg/%(version)s/main\n",
    );
    assert.equal(cfg.get("slave"), "/srv/ship");
    assert.equal(cfg.get("slave_data"), "/srv/pg/15/main");
    assert.equal(cfg.get("completed_wals"), "/srv/ship/logs.complete");
  });

  test("the section's own value wins over [DEFAULT]", () => {
    const cfg = load("[DEFAULT]\nslave = /default\n[wal-slave]\nslave = /own\nslave_data = %(slave)s/pg\n");
    assert.equal(cfg.get("slave_data"), "/own/pg");
  });

  test("references are case-insensitive and chain", () => {
    const cfg = load("[wal-slave]\nslave = /srv/ship\nfull_backup = %(SLAVE)s/sets\nslave_data = %(full_backup)s/x\n");
    assert.equal(cfg.get("slave_data"), "/srv/ship/sets/x");
  });

  test("%% is a literal percent sign", () => {
    const cfg = load("[wal-master]\nslave = /srv/ship\nperiodic_command = date +%%s >> %(slave)s/100%%.log\n");
    assert.equal(cfg.get("periodic_command"), "date +%s >> /srv/ship/100%.log");
  });

  test("%% inside a referenced value stays a single %", () => {
    const cfg = load("[DEFAULT]\npct = 50%%\n[wal-master]\nslave = /s\nperiodic_command = echo %(pct)s\n");
    assert.equal(cfg.get("periodic_command"), "echo 50%");
  });

  test("a reference cycle is a ConfigError naming both keys", () => {
    const file = ini("[wal-slave]\nslave = %(slave_data)s/x\nslave_data = %(slave)s/y\n");
    throwsConfig(() => loadConfig(file), [file, "[wal-slave]", "slave", "slave_data"]);
    throwsConfig(() => loadConfig(file), ["'slave'", "'slave_data'"]);
  });

  test("a self reference is a ConfigError", () => {
    throwsConfig(() => load("[wal-slave]\nslave = %(slave)s/x\n"), ["'slave'"]);
  });

  test("an unknown reference is a ConfigError naming both keys", () => {
    const file = ini("[wal-slave]\nslave = %(nosuchkey)s/x\n");
    throwsConfig(() => loadConfig(file), [file, "[wal-slave]", "'slave'", "'nosuchkey'"]);
  });
});

describe("names skytools defines (job_name, service_name, host_name, config_dir, config_file)", () => {
  test("%(job_name)s is the config file's name without its extension, not the section name", () => {
    const cfg = loadConfig(ini("[wal-master]\nslave = /s\nlogfile = /var/log/%(job_name)s.log\n", "site-a.ini"));
    assert.equal(cfg.get("logfile"), "/var/log/site-a.log");
    assert.equal(cfg.jobName, "site-a");
    assert.deepEqual(cfg.warnings, []);
  });

  test("the base name is cut as Python's os.path.splitext cuts it", () => {
    assert.equal(configStem("/etc/walmgr/master.ini"), "master");
    assert.equal(configStem("/etc/walmgr/a.b.ini"), "a.b");
    assert.equal(configStem("/etc/walmgr/noext"), "noext");
    assert.equal(configStem("/etc/walmgr/.ini"), ".ini");
    assert.equal(configStem("/etc/walmgr/..ini"), "..ini");
    assert.equal(configStem("/etc/walmgr/x."), "x");
  });

  test("%(service_name)s is the section, %(host_name)s this host, %(config_dir)s and %(config_file)s the file", () => {
    const file = ini(
      "[wal-slave]\nslave = /s\nstandby_name = %(service_name)s.%(host_name)s\nslave_data = %(config_dir)s/data\n" +
        "slave_config_dir = %(config_file)s.d\n",
      "names.ini",
    );
    const cfg = loadConfig(file);
    assert.equal(cfg.get("standby_name"), `wal-slave.${hostname()}`);
    assert.equal(cfg.get("slave_data"), `${dir}/data`);
    assert.equal(cfg.get("slave_config_dir"), `${file}.d`);
    assert.deepEqual(cfg.warnings, []);
  });

  test("in [DEFAULT] they expand for the role section, as ConfigParser reads [DEFAULT] for it", () => {
    const cfg = loadConfig(ini("[DEFAULT]\nlog = /log/%(service_name)s\n[walmgr]\nwalmgr_data = %(log)s\n", "d.ini"));
    assert.equal(cfg.get("walmgr_data"), "/log/walmgr");
  });

  test("the file's own value wins, in the section or in [DEFAULT], and feeds the log lines' name", () => {
    const own = loadConfig(ini("[wal-master]\nslave = /s/%(job_name)s\njob_name = shipper\n", "own.ini"));
    assert.equal(own.get("slave"), "/s/shipper");
    assert.equal(own.jobName, "shipper");
    const dflt = loadConfig(ini("[DEFAULT]\nhost_name = db1\n[wal-master]\nslave = /s/%(host_name)s\n", "dflt.ini"));
    assert.equal(dflt.get("slave"), "/s/db1");
    assert.deepEqual(dflt.warnings, []);
  });

  test("their values are taken as they are: a % in the folder's name is not a reference", () => {
    const sub = join(dir, "50%(x)s done");
    mkdirSync(sub);
    const file = join(sub, "pct.ini");
    writeFileSync(file, "[wal-slave]\nslave = %(config_dir)s/ship\n");
    assert.equal(loadConfig(file).get("slave"), `${sub}/ship`);
  });

  test("setting one of them is not an unknown key", () => {
    const cfg = load("[wal-master]\nslave = /s\nservice_name = x\nhost_name = y\nconfig_dir = z\nconfig_file = f\n");
    assert.deepEqual(cfg.warnings, []);
  });
});

describe("~ in paths (os.path.expanduser, as skytools read file names)", () => {
  const home = (): string => join(dir, "home");
  let saved: string | undefined;
  before(() => {
    mkdirSync(home(), { recursive: true });
    saved = process.env.HOME;
    process.env.HOME = home();
  });
  after(() => {
    if (saved === undefined) delete process.env.HOME;
    else process.env.HOME = saved;
  });

  test("~/… and ~ in a path setting are the running user's home", () => {
    const cfg = load("[wal-slave]\nslave = /s\nslave_data = ~/pg/main\nlogfile = ~/log/slave.log\nslave_pg_xlog = ~\n");
    assert.equal(cfg.path("slave_data"), join(home(), "pg/main"));
    assert.equal(cfg.path("logfile"), join(home(), "log/slave.log"));
    assert.equal(cfg.path("slave_pg_xlog"), home());
  });

  test("a local slave = ~/… and the sub-directories derived from it are under the home", () => {
    const cfg = load("[wal-slave]\nslave = ~/ship\n");
    assert.deepEqual(cfg.location("slave"), { path: join(home(), "ship") });
    assert.deepEqual(cfg.location("completed_wals"), { path: join(home(), "ship/logs.complete") });
  });

  test("~ that interpolation brings to the front is expanded too (after interpolation, like Python)", () => {
    const cfg = load("[DEFAULT]\nbase = ~/walmgr\n[wal-slave]\nslave = /s\nslave_data = %(base)s/data\n");
    assert.equal(cfg.path("slave_data"), join(home(), "walmgr/data"));
  });

  test("~name/… is the home of user name (from the passwd database)", () => {
    const me = userInfo();
    const cfg = load(`[wal-slave]\nslave = /s\nslave_data = ~${me.username}/data\n`);
    assert.equal(cfg.path("slave_data"), join(me.homedir, "data"));
  });

  test("~name of no user is a ConfigError naming file, section, key and the name", () => {
    const file = ini("[wal-slave]\nslave = /s\nslave_data = ~no-such-user-xq/data\n");
    throwsConfig(() => loadConfig(file), [file, "[wal-slave]", "slave_data", "no-such-user-xq"]);
    throwsConfig(() => load("[wal-slave]\nslave = /s\nslave_data = ~-x/data\n"), ["slave_data", "'-x'"]);
  });

  test("~ elsewhere is left alone: mid-path, in commands (the shell expands it), on a remote host", () => {
    const cfg = load(
      "[wal-slave]\nslave = host:~/ship\nslave_data = /a/~b\nslave_start_cmd = ~/bin/start\nstandby_name = ~x\n",
    );
    assert.deepEqual(cfg.location("slave"), { host: "host", path: "~/ship" });
    assert.equal(cfg.path("slave_data"), "/a/~b");
    assert.equal(cfg.get("slave_start_cmd"), "~/bin/start");
    assert.equal(cfg.get("standby_name"), "~x");
  });
});

describe("Object's own names (constructor, __proto__, toString …) are plain names", () => {
  test("as keys they are unknown settings (warned about), not Object's properties", () => {
    const cfg = load("[wal-master]\nslave = /s\nconstructor = 1\n__proto__ = 2\nhasOwnProperty = 3\n");
    assert.deepEqual(
      cfg.warnings.map((w) => /unknown setting '([^']+)'/.exec(w)?.[1]),
      ["constructor", "__proto__", "hasownproperty"],
    );
    assert.equal(cfg.get("constructor"), "1");
    assert.equal(cfg.get("__proto__"), "2");
    assert.equal(cfg.get("tostring"), undefined);
    assert.equal(cfg.get("valueOf"), undefined);
  });

  test("as interpolation names they expand when set and are unknown references when not", () => {
    const cfg = load(
      "[DEFAULT]\n__proto__ = p\n[wal-master]\nconstructor = c\nslave = /%(constructor)s/%(__proto__)s\n",
    );
    assert.equal(cfg.get("slave"), "/c/p");
    for (const name of ["tostring", "constructor", "__proto__", "hasownproperty"]) {
      const file = ini(`[wal-master]\nslave = /%(${name})s\n`);
      throwsConfig(() => loadConfig(file), [file, "'slave'", `'${name}'`]);
    }
  });

  test("as section names they are just other sections", () => {
    const cfg = load("[__proto__]\nslave = /x\n[constructor]\na = 1\n[wal-slave]\nslave = /s\n");
    assert.equal(cfg.get("slave"), "/s");
    throwsConfig(() => load("[__proto__]\nslave = /x\n[toString]\n"), ["[__proto__], [toString]"]);
  });

  test("as wal-ctl commands they are unknown commands (exit 2), never a TypeError", () => {
    const file = ini("[wal-master]\nslave = /s\n");
    for (const name of ["toString", "__proto__", "constructor", "hasOwnProperty", "valueOf"]) {
      const r = spawnSync(binPath("wal-ctl"), [file, name], { encoding: "utf8", timeout: 30_000 });
      assert.equal(r.status, ExitCode.USAGE, `${name}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`unknown command "${name}"`));
      assert.doesNotMatch(r.stderr, /TypeError|internal error/);
    }
  });
});

/** `[wal-slave]` + `a0 = %(a1)s` … `a{n-1} = %(a{n})s` + `a{n} = last`: n values holding references. */
function chain(n: number, last = "plain"): string {
  const lines = ["[wal-slave]", "slave = /s"];
  for (let i = 0; i < n; i++) lines.push(`a${i} = %(a${i + 1})s`);
  lines.push(`a${n} = ${last}`);
  return `${lines.join("\n")}\n`;
}

/** Asserts `fn` finishes within `ms` milliseconds (the bombs below once ran for minutes). */
function quick<T>(ms: number, fn: () => T): T {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    const took = performance.now() - t0;
    assert.ok(took < ms, `took ${took.toFixed(0)} ms, limit ${ms} ms`);
  }
}

describe("interpolation limits (depth as Python's ConfigParser, size, file size)", () => {
  test("MAX_INTERPOLATION_DEPTH is Python's 10", () => {
    assert.equal(MAX_INTERPOLATION_DEPTH, 10);
  });

  test("ten nested values holding references load, as in Python", () => {
    const cfg = load(chain(10));
    assert.equal(cfg.get("a0"), "plain");
    assert.equal(load(chain(9, "50%%")).get("a0"), "50%");
  });

  test("an eleventh nested value is a ConfigError naming file, section and key, as in Python", () => {
    const file = ini(chain(11));
    throwsConfig(() => loadConfig(file), [file, "[wal-slave]", "a0", "more than 10 deep", "a0 -> a1 -> a2"]);
    // Python counts a value with only %% as a level too.
    throwsConfig(() => load(chain(10, "50%%")), ["a0", "more than 10 deep"]);
  });

  test("the depth is counted from every key, whichever order they are expanded in", () => {
    // a0..a5 are expanded first (file order), then b0 reaches them from 6 levels up.
    const lines = [chain(5)];
    for (let i = 0; i < 6; i++) lines.push(`b${i} = %(b${i + 1})s`);
    lines.push("b6 = %(a0)s");
    throwsConfig(() => load(lines.join("\n")), ["'b0'", "more than 10 deep", "b6 -> a0"]);
  });

  test("a 40-line doubling bomb is refused at once, naming the key", () => {
    const lines = ["[wal-slave]", "slave = /s", "k0 = x"];
    for (let i = 1; i <= 40; i++) lines.push(`k${i} = %(k${i - 1})s%(k${i - 1})s`);
    const file = ini(`${lines.join("\n")}\n`);
    quick(1000, () => throwsConfig(() => loadConfig(file), [file, "[wal-slave]", "k11", "more than 10 deep"]));
  });

  test("a 2,000-key chain is refused at once", () => {
    quick(1000, () => throwsConfig(() => load(chain(2000)), ["a0", "more than 10 deep"]));
  });

  test("a wide bomb within the depth limit is refused by size, naming the key", () => {
    const lines = ["[wal-slave]", "slave = /s", "k0 = xxxxxxxx"];
    for (let i = 1; i <= 9; i++) lines.push(`k${i} = ${`%(k${i - 1})s`.repeat(64)}`);
    const file = ini(`${lines.join("\n")}\n`);
    quick(1000, () =>
      throwsConfig(() => loadConfig(file), [file, "k3", `more than ${MAX_INTERPOLATED_LENGTH} characters`]),
    );
  });

  test("a value of exactly the size limit loads; one more character does not", () => {
    const half = "y".repeat(MAX_INTERPOLATED_LENGTH / 2);
    assert.equal(
      load(`[wal-slave]\nslave = /s\nh = ${half}\nv = %(h)s%(h)s\n`).get("v")?.length,
      MAX_INTERPOLATED_LENGTH,
    );
    throwsConfig(() => load(`[wal-slave]\nslave = /s\nh = ${half}\nv = %(h)s%(h)sz\n`), ["'v'", "characters"]);
  });

  test("references to empty values cost nothing however many there are (each value is expanded once)", () => {
    const lines = ["[wal-slave]", "slave = /s", "k0 ="];
    for (let i = 1; i <= 10; i++) lines.push(`k${i} = ${`%(k${i - 1})s`.repeat(1000)}`);
    const cfg = quick(2000, () => load(`${lines.join("\n")}\n`));
    assert.equal(cfg.get("k10"), "");
  });

  test(`a config file larger than ${MAX_CONFIG_FILE_SIZE} bytes is a ConfigError naming it`, () => {
    const file = ini(`[wal-slave]\nslave = /s\n${"# padding\n".repeat(MAX_CONFIG_FILE_SIZE / 10 + 1)}`);
    throwsConfig(() => loadConfig(file), [file, "larger than"]);
  });
});

describe("type checks", () => {
  test("a non-number loop_delay names file, section and key", () => {
    const file = ini("[wal-master]\nslave = /s\nloop_delay = fast\n");
    throwsConfig(() => loadConfig(file), [file, "[wal-master]", "loop_delay", "fast"]);
  });

  test("a non-number keep_backups names file, section and key", () => {
    const file = ini("[wal-slave]\nslave = /s\nkeep_backups = five\n");
    throwsConfig(() => loadConfig(file), [file, "[wal-slave]", "keep_backups", "five"]);
  });

  test("a fractional or negative keep_backups is refused", () => {
    throwsConfig(() => load("[wal-slave]\nslave = /s\nkeep_backups = 1.5\n"), ["keep_backups"]);
    throwsConfig(() => load("[wal-slave]\nslave = /s\nkeep_backups = -1\n"), ["keep_backups"]);
  });

  test("a negative loop_delay is refused", () => {
    throwsConfig(() => load("[wal-master]\nslave = /s\nloop_delay = -1\n"), ["loop_delay"]);
  });

  test("a non-boolean use_xlog_functions names file, section and key", () => {
    const file = ini("[wal-master]\nslave = /s\nuse_xlog_functions = maybe\n");
    throwsConfig(() => loadConfig(file), [file, "[wal-master]", "use_xlog_functions", "maybe"]);
  });

  test("booleans accept 1/0, yes/no, true/false, on/off in any case", () => {
    for (const [text, want] of [
      ["1", true],
      ["yes", true],
      ["True", true],
      ["ON", true],
      ["0", false],
      ["no", false],
      ["false", false],
      ["Off", false],
    ] as const) {
      const cfg = load(`[wal-master]\nslave = /s\ncompression = ${text}\n`);
      assert.equal(cfg.bool("compression"), want, text);
    }
  });

  test("a non-number inherited from [DEFAULT] is refused too", () => {
    const file = ini("[DEFAULT]\nkeep_backups = many\n[wal-slave]\nslave = /s\n");
    throwsConfig(() => loadConfig(file), [file, "keep_backups", "many"]);
  });
});

describe("files and keys", () => {
  test("a missing file is a ConfigError naming it", () => {
    const file = join(dir, "does-not-exist.ini");
    throwsConfig(() => loadConfig(file), [file]);
  });

  test("a directory instead of a file is a ConfigError", () => {
    const sub = join(dir, "a-directory.ini");
    mkdirSync(sub);
    throwsConfig(() => loadConfig(sub), [sub]);
  });

  test("an unknown key is a warning that names it", () => {
    const cfg = load("[wal-master]\nslave = /s\nlop_delay = 3\n");
    assert.equal(cfg.warnings.length, 1);
    assert.ok(cfg.warnings[0]?.includes("lop_delay"), cfg.warnings[0]);
  });

  test("a setting of the other role is a warning that names it", () => {
    const cfg = load("[wal-slave]\nslave = /s\nmaster_data = /srv/pg\n");
    assert.equal(cfg.warnings.length, 1);
    assert.ok(cfg.warnings[0]?.includes("master_data"), cfg.warnings[0]);
  });

  test("walmgr's defaults apply when unset", () => {
    const master = load("[wal-master]\nslave = /s\n");
    assert.equal(master.get("loop_delay"), "1.0");
    assert.equal(master.float("loop_delay"), 1.0);
    assert.equal(master.int("keep_backups"), 0);
    assert.equal(master.bool("compression"), false);
    assert.equal(master.bool("use_xlog_functions"), false);
    assert.equal(master.float("command_interval"), 0);
    assert.equal(master.bool("hot_standby"), false);
    const slave = load("[wal-slave]\nslave = /s\n");
    assert.equal(slave.bool("backup_datadir"), true);
    assert.equal(slave.int("keep_backups"), 0);
  });

  test("has() is false for unset and empty keys, true for set ones", () => {
    const cfg = load("[wal-master]\nslave = /s\nmaster_restart_cmd =\n");
    assert.equal(cfg.has("slave"), true);
    assert.equal(cfg.has("master_restart_cmd"), false);
    assert.equal(cfg.has("master_data"), false);
  });

  test("require() of a missing key throws ConfigError naming file, section and key", () => {
    const file = ini("[wal-master]\nslave = /s\n");
    const cfg = loadConfig(file);
    throwsConfig(() => cfg.require("master_data", "backup"), [file, "[wal-master]", "master_data"]);
    throwsConfig(() => cfg.requirePath("master_config", "setup"), [file, "[wal-master]", "master_config"]);
    throwsConfig(() => cfg.requireLocation("pidfile", "syncdaemon"), [file, "[wal-master]", "pidfile"]);
  });

  test("require() of an empty key throws too", () => {
    const file = ini("[wal-master]\nslave = /s\nmaster_data =\n");
    const cfg = loadConfig(file);
    throwsConfig(() => cfg.require("master_data", "backup"), [file, "master_data"]);
  });

  test("require() returns a set value or a default", () => {
    const cfg = load("[wal-master]\nslave = /s\nmaster_data = /srv/pg\n");
    assert.equal(cfg.require("master_data", "backup"), "/srv/pg");
    assert.equal(cfg.require("loop_delay", "syncdaemon"), "1.0");
  });
});

describe("locations and paths", () => {
  test("slave = host:/path is a remote location", () => {
    const cfg = load("[wal-master]\nslave = standby.example.com:/var/lib/ship\n");
    assert.deepEqual(cfg.location("slave"), { host: "standby.example.com", path: "/var/lib/ship" });
    assert.deepEqual(cfg.requireLocation("slave", "sync"), { host: "standby.example.com", path: "/var/lib/ship" });
  });

  test("user@host:/path keeps the user in the host part", () => {
    assert.deepEqual(parseLocation("postgres@standby:/ship", "/etc"), { host: "postgres@standby", path: "/ship" });
  });

  test("slave = /path is a local location", () => {
    const cfg = load("[wal-master]\nslave = /var/lib/ship\n");
    assert.deepEqual(cfg.location("slave"), { path: "/var/lib/ship" });
  });

  test("an absolute path with colons is still local", () => {
    assert.deepEqual(parseLocation("/srv/a:b", "/etc"), { path: "/srv/a:b" });
  });

  test("relative paths resolve against the config file's folder", () => {
    const sub = join(dir, "conf-dir");
    mkdirSync(sub);
    const file = join(sub, "slave.ini");
    writeFileSync(
      file,
      "[wal-slave]\nslave = ship\nslave_data = ./pg/main\nlogfile = logs/slave.log\nslave_pg_xlog = ../xlog\n",
    );
    const cfg = loadConfig(file);
    assert.deepEqual(cfg.location("slave"), { path: join(sub, "ship") });
    assert.equal(cfg.path("slave_data"), join(sub, "pg/main"));
    assert.equal(cfg.requirePath("slave_data", "restore"), join(sub, "pg/main"));
    assert.equal(cfg.path("logfile"), join(sub, "logs/slave.log"));
    assert.equal(cfg.path("slave_pg_xlog"), join(dir, "xlog"));
    assert.deepEqual(cfg.location("completed_wals"), { path: join(sub, "ship/logs.complete") });
    assert.deepEqual(parseLocation("./a:b", "/etc"), { path: "/etc/a:b" });
  });

  test("a relative config file path is made absolute", () => {
    const file = ini("[wal-slave]\nslave = /s\n", "relative.ini");
    const cwd = process.cwd();
    process.chdir(dir);
    try {
      const cfg = loadConfig("relative.ini");
      assert.equal(cfg.file, file);
      assert.equal(cfg.baseDir, dir);
    } finally {
      process.chdir(cwd);
    }
  });

  test("completed_wals, partial_wals, full_backup default to the slave's sub-directories", () => {
    const cfg = load("[wal-slave]\nslave = /srv/ship/\n");
    assert.equal(cfg.get("completed_wals"), "/srv/ship/logs.complete");
    assert.equal(cfg.get("partial_wals"), "/srv/ship/logs.partial");
    assert.equal(cfg.get("full_backup"), "/srv/ship/data.master");
    assert.deepEqual(cfg.location("completed_wals"), { path: "/srv/ship/logs.complete" });
  });

  test("derived sub-directories of a remote slave stay on that host", () => {
    const cfg = load("[wal-master]\nslave = standby:/srv/ship\n");
    assert.deepEqual(cfg.location("completed_wals"), { host: "standby", path: "/srv/ship/logs.complete" });
    assert.deepEqual(cfg.location("partial_wals"), { host: "standby", path: "/srv/ship/logs.partial" });
    assert.deepEqual(cfg.location("full_backup"), { host: "standby", path: "/srv/ship/data.master" });
  });

  test("explicitly set sub-directories are not overridden", () => {
    const cfg = load("[wal-slave]\nslave = /srv/ship\ncompleted_wals = /elsewhere/complete\n");
    assert.equal(cfg.get("completed_wals"), "/elsewhere/complete");
    assert.equal(cfg.get("partial_wals"), "/srv/ship/logs.partial");
  });

  test("with neither slave nor walmgr_data nothing is derived", () => {
    const cfg = load("[wal-slave]\nslave_data = /srv/pg\n");
    assert.equal(cfg.get("completed_wals"), undefined);
    assert.equal(cfg.location("completed_wals"), undefined);
  });
});
