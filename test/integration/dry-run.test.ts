/** -n/--not-really on every command prints what it would do and changes nothing at all. */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempDir, mkdirAs, removeTempDir, runBin } from "../helpers/env";
import { snapshot } from "../helpers/fs";
import { writeFileAs } from "../helpers/walmgr";

let base: string;

before(() => {
  base = makeTempDir("dryrun");
  const mdata = join(base, "mdata");
  mkdirAs(join(mdata, "pg_wal"));
  writeFileAs(join(mdata, "postgresql.conf"), "# test\nport = 5999\n");
  writeFileAs(join(mdata, "pg_wal", "000000010000000000000003"), "x".repeat(8192));
  writeFileAs(join(base, "seg"), "y".repeat(8192));
  const slave = join(base, "slave");
  mkdirAs(join(slave, "logs.complete"));
  mkdirAs(join(slave, "logs.partial"));
  mkdirAs(join(slave, "data.master"));
  writeFileAs(
    join(slave, "data.master", "backup_label"),
    "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
  );
  writeFileAs(join(slave, "logs.complete", "000000010000000000000002"), "z".repeat(8192));
  writeFileAs(
    join(base, "master.ini"),
    `[wal-master]\nmaster_db = host=${base} port=1 dbname=postgres connect_timeout=2\nmaster_data = ${mdata}\nmaster_config = ${mdata}/postgresql.conf\nmaster_restart_cmd = touch ${base}/restarted\nslave = ${slave}\nconfig_backup = ${base}/not-yet-made\npidfile = ${base}/daemon.pid\nperiodic_command = touch ${base}/periodic-ran\n`,
  );
  writeFileAs(
    join(base, "slave.ini"),
    `[wal-slave]\nslave_data = ${base}/sdata\nslave_start_cmd = touch ${base}/started\nslave = ${slave}\n`,
  );
  writeFileSync(join(base, "marker"), "");
});

after(() => removeTempDir(base));

const cases: [string, string[]][] = [
  ["wal-archive", ["master.ini", "seg", "000000010000000000000009"]],
  ["wal-restore", ["slave.ini", "000000010000000000000002", "restored"]],
  ["wal-ctl", ["master.ini", "setup"]],
  ["wal-ctl", ["master.ini", "stop"]],
  ["wal-ctl", ["slave.ini", "setup"]],
  ["wal-ctl", ["slave.ini", "pause"]],
  ["wal-ctl", ["slave.ini", "boot"]],
  ["wal-ctl", ["slave.ini", "restore"]],
  ["wal-sync", ["master.ini"]],
  ["wal-sync", ["master.ini", "--daemon"]],
  ["wal-sync", ["master.ini", "-d"]],
  ["wal-ctl", ["master.ini", "syncdaemon"]],
  ["wal-ctl", ["master.ini", "periodic"]],
  ["wal-backup", ["master.ini"]],
];

for (const [bin, args] of cases) {
  test(`${bin} -n ${args.slice(1).join(" ")} changes nothing`, () => {
    const before = snapshot(base);
    const full = args.map((a) => (a.endsWith(".ini") || a === "seg" || a === "restored" ? join(base, a) : a));
    const res = runBin(bin, ["-n", ...full], { cwd: base });
    assert.equal(res.status, 0, `${res.stdout}\n${res.stderr}`);
    assert.match(res.stdout, /\[not really\]/, `${bin} -n must print what it would do:\n${res.stdout}\n${res.stderr}`);
    assert.deepEqual(snapshot(base), before);
  });
}
