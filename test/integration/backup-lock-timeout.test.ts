/**
 * On real PostgreSQL 15: a master's backup whose WAL is never archived (archive_command fails)
 * fails after backup_archive_timeout / --archive-timeout instead of waiting for good, releasing
 * BACKUPLOCK and keeping no half set; and restore holds BACKUPLOCK while it takes its set, so a
 * restore and a backup refuse each other (exit 4) in either order, changing nothing.
 *
 * WALMGR_TEST_PAUSE_AT=<point> makes an executable stop itself (SIGSTOP) at that point
 * (src/test-pause.ts): "copied" in a backup (BACKUPLOCK held), "restore-staged"
 * in a restore (the set taken, BACKUPLOCK held). WALMGR_TEST_CRASH_AT=stale-lock-removed kills a
 * clearer of a stale lock right after it removed the lock, before it removed its guard.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CrashPoint } from "../../src/command/restore/journal";
import { runUntilPause, signalPaused } from "../helpers/crash";
import { ok, removeTempDir, runBin, waitFor } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
let masterIniText: string;

const lockFile = (): string => join(p.slaveDir, "logs.complete", "BACKUPLOCK");
const sets = (): string[] =>
  readdirSync(p.slaveDir)
    .filter((n) => /^data\.master(\.\d+)?$/.test(n))
    .sort();
const hidden = (): string[] => readdirSync(p.slaveDir).filter((n) => n.startsWith(".walmgr-"));
const setStart = (name: string): string =>
  (JSON.parse(readFileSync(join(p.slaveDir, name, ".walmgr-backup.json"), "utf8")) as { startTime: string }).startTime;

async function archiveCommand(value: string | undefined): Promise<void> {
  await p.master.query(
    value === undefined ? "ALTER SYSTEM RESET archive_command" : `ALTER SYSTEM SET archive_command = '${value}'`,
  );
  await p.master.query("SELECT pg_reload_conf()");
}

before(async () => {
  p = await createPair("lock-timeout");
  masterIniText = readFileSync(p.masterIni, "utf8");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (v int)");
  await p.master.query("INSERT INTO t SELECT generate_series(1, 100)");
  ok(runBin("wal-backup", [p.masterIni]), "a first backup");
});

after(() => {
  if (p) stopPair(p);
  if (p) removeTempDir(p.base);
});

test("archive_command failing: the backup fails after backup_archive_timeout, releases BACKUPLOCK, keeps no half set", async () => {
  const before = setStart("data.master");
  await archiveCommand("false");
  try {
    writeFileAs(p.masterIni, `${masterIniText}\nbackup_archive_timeout = 3\n`);
    const started = Date.now();
    // Bounded here: a backup that waits for good is killed (SIGTERM) after 60 s, and fails the test.
    const res = runBin("wal-backup", [p.masterIni], { timeout: 60_000 });
    assert.equal(
      res.status,
      9,
      `exit ${res.status} (signal ${res.signal}) after ${Date.now() - started} ms\n${res.stderr}`,
    );
    assert.match(res.stderr, /was not archived within 3 s \(backup_archive_timeout\)/);
    assert.match(res.stderr, /pg_stat_archiver: last archived .*, last failed [0-9A-F]{24} at /);
    assert.match(res.stderr, /archive_command = "false"/);
    assert.match(res.stderr, /last_failed_wal/);
    assert.ok(!existsSync(lockFile()), "BACKUPLOCK is released");
    assert.deepEqual(sets(), ["data.master"], "no new set is listed");
    assert.equal(setStart("data.master"), before, "the listed set is the one from before");
    assert.deepEqual(hidden(), [], "no half set is left hidden beside the sets");

    // The option wins over the setting, for one run.
    const opt = runBin("wal-backup", [p.masterIni, "--archive-timeout", "1.5"], { timeout: 60_000 });
    assert.equal(opt.status, 9, opt.stderr);
    assert.match(opt.stderr, /was not archived within 1\.5 s/);
    const ctl = runBin("wal-ctl", [p.masterIni, "backup", "--archive-timeout", "1"], { timeout: 60_000 });
    assert.equal(ctl.status, 9, ctl.stderr);
    assert.equal(runBin("wal-backup", [p.masterIni, "--archive-timeout", "0"]).status, 2, "0 s is refused");
    assert.deepEqual(sets(), ["data.master"]);
    assert.ok(!existsSync(lockFile()));
  } finally {
    writeFileAs(p.masterIni, masterIniText);
    await archiveCommand(undefined);
  }
  // Archiving works again: the next backup (default timeout) completes.
  await waitFor(
    "the archiver to catch up",
    async () =>
      (await p.master.value<string>(
        "SELECT count(*)::text FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
      )) === "0",
    60_000,
  );
  ok(runBin("wal-backup", [p.masterIni]), "a backup once archiving works");
  assert.notEqual(setStart("data.master"), before);
});

test("restore while a backup holds BACKUPLOCK: exit 4 naming the backup, nothing moved", async () => {
  const backup = await runUntilPause("wal-backup", [p.masterIni], "copied");
  try {
    const res = runBin("wal-ctl", [p.slaveIni, "restore"]);
    assert.equal(res.status, 4, res.stderr);
    assert.match(res.stderr, /cannot restore now: another backup holds .*BACKUPLOCK: pid \d+ .*wal-backup/);
    assert.ok(existsSync(join(p.slaveDir, "data.master", "backup_label")), "the newest set is where it was");
    assert.ok(!existsSync(p.slaveData), "nothing was restored");
    assert.deepEqual(
      readdirSync(p.base).filter((n) => n.startsWith(".walmgr-restore.")),
      [],
      "no journal, no restore lock",
    );
    assert.deepEqual(
      hidden().filter((n) => n.startsWith(".walmgr-restore.")),
      [],
      "no set claimed",
    );
  } finally {
    const end = await signalPaused(backup, "SIGCONT");
    assert.equal(end.status, 0, backup.output());
  }
});

test("a backup while a restore holds BACKUPLOCK: exit 4 naming the restore; the restore then finishes", async () => {
  const dst = join(p.base, "restored");
  const restore = await runUntilPause("wal-ctl", [p.slaveIni, "restore", "data.master", dst], "restore-staged");
  let end: { status: number | null } | undefined;
  try {
    const held = JSON.parse(readFileSync(lockFile(), "utf8")) as { pid: number; command: string };
    assert.equal(held.pid, restore.child.pid, "the restore holds BACKUPLOCK");
    const res = runBin("wal-backup", [p.masterIni]);
    assert.equal(res.status, 4, res.stderr);
    assert.match(res.stderr, /a restore taking a backup set holds .*BACKUPLOCK: pid \d+ .*restore of a backup set/);
    const ctl = runBin("wal-ctl", [p.masterIni, "backup", "--clear-stale-lock"]);
    assert.equal(ctl.status, 4, `a live restore's lock is never cleared: ${ctl.stderr}`);
    assert.ok(existsSync(lockFile()));
  } finally {
    end = await signalPaused(restore, "SIGCONT");
  }
  assert.equal(end.status, 0, restore.output());
  assert.ok(existsSync(join(dst, "PG_VERSION")), "the restore finished");
  assert.ok(!existsSync(lockFile()), "and released BACKUPLOCK");
  ok(runBin("wal-backup", [p.masterIni]), "a backup after the restore");
});

test("a restore killed while it holds BACKUPLOCK: its rerun, or a backup, clears the dead restore's lock", async () => {
  const killedAt = (dst: string): void => {
    const res = runBin("wal-ctl", [p.slaveIni, "restore", "data.master", dst], {
      env: { WALMGR_TEST_CRASH_AT: "journal" satisfies CrashPoint },
    });
    assert.equal(res.signal, "SIGKILL", res.stderr);
    assert.ok(existsSync(lockFile()), "the dead restore's BACKUPLOCK is left");
  };
  const first = join(p.base, "killed-1");
  killedAt(first);
  const rerun = ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master", first]), "the rerun");
  assert.match(rerun.stderr, /stale .*BACKUPLOCK .*: process \d+ is gone; clearing it/);
  assert.ok(existsSync(join(first, "PG_VERSION")));
  assert.ok(!existsSync(lockFile()));

  const second = join(p.base, "killed-2");
  killedAt(second);
  // A backup clears a dead restore's lock by itself: nothing of a backup's is left to clear up.
  ok(runBin("wal-backup", [p.masterIni]), "a backup after the killed restore");
  ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master", second]), "the rerun after the backup");
  assert.ok(existsSync(join(second, "PG_VERSION")));
  assert.ok(!existsSync(lockFile()));
});

test("a clearer killed right after it removed a stale BACKUPLOCK leaves its guard: the next backup sweeps it", () => {
  const completed = join(p.slaveDir, "logs.complete");
  const guards = (): string[] => readdirSync(completed).filter((n) => n.startsWith(".walmgr-break."));
  const gone = spawnSync("true").pid;
  writeFileAs(
    lockFile(),
    `${JSON.stringify({ pid: gone, host: hostname(), started: "2024-01-01T00:00:00Z", command: "wal-backup killed" })}\n`,
  );
  const killed = runBin("wal-backup", [p.masterIni, "--clear-stale-lock"], {
    env: { WALMGR_TEST_CRASH_AT: "stale-lock-removed" satisfies CrashPoint },
  });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  assert.ok(!existsSync(lockFile()), "the stale lock was removed");
  assert.equal(guards().length, 1, "and the clearer's guard is left");
  ok(runBin("wal-backup", [p.masterIni]), "the next backup");
  assert.deepEqual(guards(), [], "which sweeps the dead clearer's guard");
});
