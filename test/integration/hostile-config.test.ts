/**
 * Hostile or broken input from the operator's side: config files that try to exhaust the
 * process, damaged backup metadata, passwords in connection strings, stray arguments. Each
 * spawns the real executables as the server user; no PostgreSQL server is needed (connections
 * go to a socket folder where no server listens).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { binPath, makeTempDir, mkdirAs, removeTempDir, run, runBin, type RunResult } from "../helpers/env";
import { writeFileAs } from "../helpers/walmgr";

let base: string;
let slave: string;
const SEG = "000000010000000000000001";

/** A stack trace line (`    at fn (file:1:2)`): bad input must never produce one. */
const STACK_LINE = /^\s+at\s/m;

function noStack(res: RunResult): void {
  assert.doesNotMatch(res.stderr, STACK_LINE, `stack trace on stderr:\n${res.stderr}`);
  assert.doesNotMatch(res.stdout, STACK_LINE, `stack trace on stdout:\n${res.stdout}`);
}

before(() => {
  base = makeTempDir("hostile");
  slave = join(base, "slave");
  for (const d of ["logs.complete", "logs.partial"]) mkdirAs(join(slave, d));
});

after(() => removeTempDir(base));

describe("config interpolation bombs exit 3 at once, naming the key", () => {
  /** Runs `bin` and returns the result with how long it took; a runaway process is killed at 20 s. */
  function timed(bin: string, args: string[]): RunResult & { ms: number } {
    // Outside the clock: as root with a clone the server user cannot read, the first binPath
    // copies the package to a readable folder (seconds, not the program's time).
    binPath(bin);
    const t0 = Date.now();
    // SIGKILL: the old code ignored SIGTERM while it was expanding.
    const res = runBin(bin, args, { timeout: 20_000, killSignal: "SIGKILL" });
    return { ...res, ms: Date.now() - t0 };
  }

  function bombIni(name: string, lines: string[]): string {
    const file = join(base, name);
    writeFileAs(file, `[wal-slave]\nslave = ${slave}\nslave_data = ${base}/sdata\n${lines.join("\n")}\n`);
    return file;
  }

  const doubling = Array.from({ length: 40 }, (_, i) => `k${i + 1} = %(k${i})s%(k${i})s`);
  const chain = Array.from({ length: 2000 }, (_, i) => `c${i} = %(c${i + 1})s`);

  for (const [what, lines, key] of [
    ["a 40-key doubling bomb", ["k0 = x", ...doubling], "k11"],
    ["a 2,000-key chain", [...chain, "c2000 = end"], "c0"],
  ] as const) {
    test(`${what}: wal-restore and wal-archive exit 3 within 3 s naming file, section and key`, () => {
      const file = bombIni(`bomb-${key}.ini`, [...lines]);
      const src = join(base, `src-${key}`);
      writeFileAs(src, "wal");
      for (const [bin, args] of [
        ["wal-restore", [file, SEG, join(base, `out-${key}`)]],
        ["wal-archive", [file, src, SEG]],
      ] as const) {
        const res = timed(bin, [...args]);
        assert.equal(
          res.status,
          3,
          `${bin}: exit ${String(res.status)} (signal ${String(res.signal)}) after ${res.ms} ms\n${res.stderr}`,
        );
        assert.ok(res.ms < 3000, `${bin} took ${res.ms} ms`);
        assert.ok(res.stderr.includes(`${file}:`), res.stderr);
        assert.match(res.stderr, new RegExp(`\\[wal-slave\\] ${key}: .*more than 10 deep`));
        noStack(res);
      }
      assert.ok(!existsSync(join(base, `out-${key}`)));
      assert.ok(!existsSync(join(slave, "logs.complete", SEG)));
    });
  }
});

describe("the interpolated values of a config add up to at most 1 MiB", () => {
  test("many keys each referring to a long value: every executable exits 3 at once, naming the key where the total crossed 1 MiB", () => {
    // Each value stays below the per-value cap (64 KiB); together they would build 40 × 65,000
    // characters (and a 1 MiB file of such keys, gigabytes).
    const long = "a".repeat(65_000);
    const refs = Array.from({ length: 40 }, (_, i) => `k${i} = %(long)s`);
    const file = join(base, "total.ini");
    const head = `[wal-slave]\nslave = ${slave}\nslave_data = ${base}/sdata\n`;
    writeFileAs(file, `${head}long = ${long}\n${refs.join("\n")}\n`);
    // The key where the running total passes 1 MiB, in the file's order.
    let total = slave.length + `${base}/sdata`.length + long.length;
    let crossed = "";
    for (let i = 0; i < 40 && crossed === ""; i++) {
      total += long.length;
      if (total > 1024 * 1024) crossed = `k${i}`;
    }
    const src = join(base, "src-total");
    writeFileAs(src, "wal");
    for (const [bin, args] of [
      ["wal-restore", [file, SEG, join(base, "out-total")]],
      ["wal-archive", [file, src, SEG]],
      ["wal-ctl", [file, "status"]],
    ] as const) {
      binPath(bin);
      const t0 = Date.now();
      const res = runBin(bin, [...args], { timeout: 20_000, killSignal: "SIGKILL" });
      const ms = Date.now() - t0;
      assert.equal(res.status, 3, `${bin}: exit ${String(res.status)} after ${ms} ms\n${res.stderr.slice(-2000)}`);
      assert.ok(ms < 3000, `${bin} took ${ms} ms`);
      assert.match(
        res.stderr,
        new RegExp(
          `${file}:\\d+ \\[wal-slave\\] ${crossed}: the interpolated values of the file add up to more than 1048576 characters`,
        ),
      );
      noStack(res);
    }
    assert.ok(!existsSync(join(base, "out-total")));
    assert.ok(!existsSync(join(slave, "logs.complete", SEG)));
  });
});

describe("a CONFIG that is not a regular file is refused at once", () => {
  // A FIFO used to hang every executable in a blocking open() before any file-type check; a
  // master whose archive_command named one could not even be stopped with pg_ctl -m fast.
  test("a FIFO, a directory and a device: each executable exits 3 within 3 s, nothing written", () => {
    const fifo = join(base, "fifo.ini");
    assert.equal(run("mkfifo", [fifo]).status, 0);
    const src = join(base, "src-fifo");
    writeFileAs(src, "wal");
    for (const [what, cfg] of [
      ["a FIFO", fifo],
      ["a directory", slave],
      ["a device", "/dev/zero"],
    ] as const) {
      for (const [bin, args] of [
        ["wal-restore", [cfg, SEG, join(base, "out-fifo")]],
        ["wal-archive", [cfg, src, SEG]],
        ["wal-sync", [cfg]],
        ["wal-backup", [cfg]],
        ["wal-ctl", [cfg, "status"]],
      ] as const) {
        binPath(bin);
        const t0 = Date.now();
        const res = runBin(bin, [...args], { timeout: 20_000, killSignal: "SIGKILL" });
        const ms = Date.now() - t0;
        assert.equal(
          res.status,
          3,
          `${bin} with ${what}: exit ${String(res.status)} (signal ${String(res.signal)}) after ${ms} ms\n${res.stderr}`,
        );
        assert.ok(ms < 3000, `${bin} with ${what} took ${ms} ms`);
        assert.match(
          res.stderr,
          new RegExp(`${cfg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} is ${what}, not a regular file`),
        );
        noStack(res);
      }
    }
    assert.ok(!existsSync(join(base, "out-fifo")));
    assert.ok(!existsSync(join(slave, "logs.complete", SEG)));
  });
});

describe("damaged input is a clear error, never a stack trace with exit 70", () => {
  test("a master_db URL with '/' in the password exits 3 naming master_db, without the password", () => {
    const ini = join(base, "slashpw.ini");
    writeFileAs(
      ini,
      `[wal-master]\nmaster_db = postgresql://postgres:pa/Sl4shSecret@localhost:1/postgres\nmaster_data = ${base}/nodata\nslave = ${slave}\n`,
    );
    const res = runBin("wal-backup", [ini]);
    assert.equal(res.status, 3, res.stderr);
    assert.match(res.stderr, /slashpw\.ini \[wal-master\] master_db: cannot use connection string/);
    assert.match(res.stderr, /percent-encode/);
    assert.ok(!res.stderr.includes("Sl4shSecret"), res.stderr);
    noStack(res);
    assert.ok(!existsSync(join(slave, "logs.complete", "BACKUPLOCK")), "the backup lock must be released");
  });

  describe("backup sets", () => {
    let ini: string;
    let full: string;
    const label = (wal: string): string =>
      `START WAL LOCATION: 0/2000028 (file ${wal})\nSTART TIME: 2026-01-02 03:04:05 UTC\nLABEL: walmgr-ts\n`;

    /** A set with a backup_label, a data file, metadata and a manifest that matches. */
    function makeSet(name: string, wal: string): string {
      const set = join(full, "..", name);
      mkdirAs(join(set, "base"));
      writeFileAs(join(set, "backup_label"), label(wal));
      writeFileAs(join(set, "base", "1"), `data of ${name}`);
      const files: Record<string, { size: number; sha256: string }> = {};
      for (const rel of ["backup_label", "base/1"]) {
        const buf = readFileSync(join(set, rel));
        files[rel] = { size: buf.length, sha256: createHash("sha256").update(buf).digest("hex") };
      }
      writeFileAs(join(set, ".walmgr-manifest.json"), JSON.stringify({ files }));
      writeFileAs(
        join(set, ".walmgr-backup.json"),
        JSON.stringify({ label: "walmgr-ts", startWal: wal, startTime: "2026-01-02T03:04:05Z", bytes: 1048576 }),
      );
      return set;
    }

    before(() => {
      const dir = join(base, "sets");
      full = join(dir, "data.master");
      mkdirAs(dir);
      ini = join(base, "sets.ini");
      writeFileAs(ini, `[wal-slave]\nslave = ${dir}\nslave_data = ${base}/sdata\n`);
      makeSet("data.master", "000000010000000000000009");
      makeSet("data.master.0", "000000010000000000000005");
      makeSet("data.master.1", "000000010000000000000002");
      // data.master.0: truncated metadata; data.master.1: a manifest that is not one.
      writeFileSync(join(full + ".0", ".walmgr-backup.json"), '{"label": "walm');
      writeFileSync(join(full + ".1", ".walmgr-manifest.json"), "\0\0garbage");
    });

    test("listbackups lists every set, marks the damaged one, names its file and exits 9", () => {
      const res = runBin("wal-ctl", [ini, "listbackups"]);
      assert.equal(res.status, 9, res.stderr);
      noStack(res);
      assert.match(
        res.stderr,
        new RegExp(`backup metadata ${full}\\.0/\\.walmgr-backup\\.json is damaged: not valid JSON`),
      );
      const lines = res.stdout.split("\n");
      assert.ok(
        lines.some((l) => /^data\.master\s.*000000010000000000000009/.test(l)),
        res.stdout,
      );
      assert.ok(
        lines.some((l) => /^data\.master\.0 \(DAMAGED \.walmgr-backup\.json\).*000000010000000000000005/.test(l)),
        res.stdout,
      );
      assert.ok(
        lines.some((l) => /^data\.master\.1\s.*000000010000000000000002/.test(l)),
        res.stdout,
      );

      const json = runBin("wal-ctl", [ini, "listbackups", "--json"]);
      assert.equal(json.status, 9);
      const rows = JSON.parse(json.stdout) as { name: string; problem?: string }[];
      assert.deepEqual(
        rows.map((r) => [r.name, r.problem !== undefined]),
        [
          ["data.master", false],
          ["data.master.0", true],
          ["data.master.1", false],
        ],
      );
    });

    test("verify checks the other sets, fails for the damaged manifest naming its file, exits 9", () => {
      const res = runBin("wal-ctl", [ini, "verify"]);
      assert.equal(res.status, 9, res.stderr);
      noStack(res);
      assert.match(res.stdout, /data\.master: 2 files checked/);
      assert.match(res.stdout, /data\.master\.0: 2 files checked/);
      assert.match(res.stderr, new RegExp(`backup manifest ${full}\\.1/\\.walmgr-manifest\\.json is damaged`));
      assert.doesNotMatch(res.stdout, /all backup sets verified/);
      // The sound set's files verify alone; it still fails, naming the WAL it needs and lacks
      // (this folder has no archived WAL at all).
      const one = runBin("wal-ctl", [ini, "verify", "data.master"]);
      assert.equal(one.status, 9, one.stderr);
      assert.match(one.stdout, /data\.master: 2 files checked/);
      assert.match(one.stdout, /000000010000000000000009 is missing/);
      assert.doesNotMatch(one.stdout, /does not match|data\.master\.[01]/);
    });
  });
});

describe("damaged state files in partial_wals are treated as absent", () => {
  test("status exits 0 with garbage in the sync, daemon and periodic state files", () => {
    const dir = join(base, "badstate");
    mkdirAs(join(dir, "logs.complete"));
    mkdirAs(join(dir, "logs.partial"));
    for (const f of [".walmgr-sync-state", ".walmgr-daemon-state", ".walmgr-periodic-state"]) {
      writeFileAs(join(dir, "logs.partial", f), '{"name": "0000');
    }
    const ini = join(base, "badstate.ini");
    writeFileAs(ini, `[wal-master]\nslave = ${dir}\nmaster_data = ${base}/nodata\nperiodic_command = true\n`);
    for (const args of [["status"], ["status", "--json"]]) {
      const res = runBin("wal-ctl", [ini, ...args]);
      assert.equal(res.status, 0, res.stderr);
      noStack(res);
    }
  });
});

describe("passwords in connection strings never reach stdout, stderr or the logfile", () => {
  const SECRET = "Qu3rySecret";
  const forms: [string, string][] = [
    ["URL query password", `postgresql:///postgres?host=${"SOCK"}&port=1&password=${SECRET}`],
    ["URL query, percent-encoded key", `postgresql:///postgres?host=${"SOCK"}&port=1&pass%77ord=${SECRET}`],
    ["URL userinfo", `postgresql://postgres:${SECRET}@localhost:1/postgres`],
    ["quoted key=value with spaces", `host=SOCK port=1 dbname=postgres password='it\\'s ${SECRET} here'`],
    ["key=value that does not parse", `host=SOCK port=1 password=${SECRET} dbname`],
  ];
  for (const [what, conninfo] of forms) {
    test(what, () => {
      const tag = what.replace(/\W+/g, "-");
      const sock = join(base, `nosock-${tag}`);
      mkdirAs(sock);
      const dir = join(base, `leak-${tag}`);
      mkdirAs(join(dir, "logs.complete"));
      mkdirAs(join(dir, "logs.partial"));
      // A sync state with an LSN: status then asks the master how far behind the slave is.
      writeFileAs(
        join(dir, "logs.partial", ".walmgr-sync-state"),
        JSON.stringify({ name: SEG, offset: 8192, lsn: "0/1002000", time: new Date().toISOString() }),
      );
      const log = join(base, `leak-${tag}.log`);
      const ini = join(base, `leak-${tag}.ini`);
      writeFileAs(
        ini,
        `[wal-master]\nmaster_db = ${conninfo.replaceAll("SOCK", sock).replaceAll("%", "%%")}\nmaster_data = ${base}/nodata\n` +
          `slave = ${dir}\nlogfile = ${log}\nuse_xlog_functions = 1\n`,
      );
      const runs = [
        runBin("wal-backup", [ini]),
        runBin("wal-backup", [ini, "-n"]),
        runBin("wal-sync", [ini]),
        runBin("wal-ctl", [ini, "status"]),
        runBin("wal-ctl", [ini, "status", "--json"]),
      ];
      const [backup, , sync, status, statusJson] = runs;
      // The backup and the sync really tried (and failed) to use the connection string.
      assert.ok(backup && [3, 7].includes(backup.status ?? -1), backup?.stderr);
      assert.ok(sync && [3, 7].includes(sync.status ?? -1), sync?.stderr);
      assert.equal(status?.status, 0, status?.stderr);
      assert.equal(statusJson?.status, 0, statusJson?.stderr);
      assert.match(status?.stderr ?? "", /cannot ask the master/);
      for (const res of runs) {
        assert.ok(!res.stdout.includes(SECRET), `stdout:\n${res.stdout}`);
        assert.ok(!res.stderr.includes(SECRET), `stderr:\n${res.stderr}`);
        noStack(res);
      }
      const logText = readFileSync(log, "utf8");
      assert.match(logText, /cannot connect to the master|cannot parse connection string|cannot use connection string/);
      assert.ok(!logText.includes(SECRET), `logfile:\n${logText}`);
    });
  }
});

describe("extra positional arguments are refused (exit 2) and nothing is done", () => {
  test("wal-ctl CONFIG pause extra", () => {
    const ini = join(base, "extra.ini");
    writeFileAs(ini, `[wal-slave]\nslave = ${slave}\nslave_data = ${base}/sdata\n`);
    const res = runBin("wal-ctl", [ini, "pause", "extra"]);
    assert.equal(res.status, 2, res.stderr);
    assert.match(res.stderr, /wal-ctl pause: unexpected extra argument "extra"/);
    assert.match(res.stderr, /usage: wal-ctl CONFIG pause/);
    noStack(res);
    assert.ok(!existsSync(join(slave, "logs.complete", "PAUSE")), "pause must not have run");

    const src = join(base, "extra-src");
    writeFileAs(src, "wal");
    const archive = runBin("wal-archive", [ini, src, SEG, "stray"]);
    assert.equal(archive.status, 2, archive.stderr);
    assert.match(archive.stderr, /"stray"/);
    assert.ok(!existsSync(join(slave, "logs.complete", SEG)));
    const restore = runBin("wal-restore", [ini, SEG, join(base, "extra-out"), SEG, "stray"]);
    assert.equal(restore.status, 2, restore.stderr);
    assert.match(restore.stderr, /"stray"/);
  });
});
