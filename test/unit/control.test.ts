/** The control-file protocol: BACKUPLOCK taken atomically, stale locks, release only our own. */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import {
  acquireBackupLock,
  BACKUP_PROGRAMS,
  BACKUPLOCK,
  ControlFiles,
  PAUSE,
  releaseBackupLock,
  STOP,
  type LockInfo,
} from "../../src/slavedir/control";
import { ExitCode, LockHeldError } from "../../src/errors";
import { judgeHolder, selfLockInfo } from "../../src/slavedir/lock";
import { processAlive } from "../../src/proc";
import { LocalDriver } from "../../src/storage/local/driver";
import { parseWalName } from "../../src/wal/names";

/** acquireBackupLock's verdict on a BACKUPLOCK naming `info`: stale means it may be cleared. */
function lockIsStale(info: LockInfo | undefined): boolean {
  return judgeHolder(info, BACKUP_PROGRAMS).state === "stale";
}

let dir: string;
let control: ControlFiles;
const children: number[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-unit-"));
  control = new ControlFiles(new LocalDriver(), dir);
});

afterEach(() => {
  for (const pid of children.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** A live process whose command line is `node DIR/PROGRAM ARGS` (it just sleeps). */
async function liveProcess(program: string, args: string[]): Promise<number> {
  const scripts = mkdtempSync(join(tmpdir(), "walmgr-unit-prog-"));
  const script = join(scripts, program);
  writeFileSync(script, "setTimeout(() => {}, 60000);\n");
  const child = spawn(process.execPath, [script, ...args], { stdio: "ignore" });
  const pid = child.pid ?? 0;
  children.push(pid);
  // Until it has exec'd, /proc shows the test runner's command line (not the program's): a
  // judge looking then would call the lock stale. Under load (CI beside a benchmark) that took
  // longer than the 2 s this waited before, and the test failed.
  for (let i = 0; !readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(program); i++) {
    if (i >= 3000) throw new Error(`process ${pid} did not show ${program} in its command line within 30 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
  rmSync(scripts, { recursive: true, force: true });
  return pid;
}

function deadPid(): number {
  const res = spawnSync("true");
  const pid = res.pid;
  assert.equal(typeof pid, "number");
  assert.equal(processAlive(pid), false);
  return pid;
}

function lockPath(): string {
  return join(dir, BACKUPLOCK);
}

function readLock(): LockInfo {
  return JSON.parse(readFileSync(lockPath(), "utf8")) as LockInfo;
}

function writeLock(info: Partial<LockInfo>): string {
  const body = `${JSON.stringify(info)}\n`;
  writeFileSync(lockPath(), body);
  return body;
}

function lockHeld(pattern: RegExp[]): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof LockHeldError, `expected LockHeldError, got ${String(err)}`);
    assert.equal(err.exitCode, ExitCode.LOCK_HELD);
    assert.equal(err.exitCode, 4);
    for (const p of pattern) assert.match(err.message, p);
    return true;
  };
}

describe("control files", () => {
  test("names are walmgr's and can never be mistaken for WAL", () => {
    assert.equal(STOP, "STOP");
    assert.equal(PAUSE, "PAUSE");
    assert.equal(BACKUPLOCK, "BACKUPLOCK");
    for (const n of [STOP, PAUSE, BACKUPLOCK]) assert.equal(parseWalName(n), undefined);
  });

  test("create, exists, read, remove", async () => {
    assert.equal(await control.exists(PAUSE), false);
    await control.create(PAUSE);
    assert.equal(await control.exists(PAUSE), true);
    assert.equal(await control.read(PAUSE), "");
    await control.create(STOP, "why\n");
    assert.equal(await control.read(STOP), "why\n");
    assert.equal(await control.remove(PAUSE), true);
    assert.equal(await control.remove(PAUSE), false);
    assert.equal(await control.read(PAUSE), undefined);
    assert.equal(control.path(STOP), join(dir, STOP));
  });
});

describe("BACKUPLOCK", () => {
  test("acquire creates BACKUPLOCK with pid, host, start time and command", async () => {
    const before = Date.now();
    const info = await acquireBackupLock(control, "wal-backup /etc/master.ini");
    assert.equal(info.pid, process.pid);
    assert.equal(info.host, hostname());
    assert.equal(info.command, "wal-backup /etc/master.ini");
    assert.ok(Date.parse(info.started) >= before - 1000);
    assert.deepEqual(readLock(), info);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n !== BACKUPLOCK),
      [],
    );
  });

  test("a second acquire throws LockHeldError naming the holder's pid; the lock is unchanged", async () => {
    const info = await acquireBackupLock(control, "first backup");
    const body = readFileSync(lockPath(), "utf8");
    await assert.rejects(
      acquireBackupLock(control, "second backup"),
      lockHeld([new RegExp(`pid ${process.pid}\\b`), /first backup/]),
    );
    await assert.rejects(acquireBackupLock(control, "second backup", { breakStale: true }), lockHeld([]));
    assert.equal(readFileSync(lockPath(), "utf8"), body);
    assert.deepEqual(readLock(), info);
  });

  test("a live backup on this host is not stale, even with breakStale", async () => {
    const pid = await liveProcess("wal-backup", ["master.ini"]);
    // An older version's lock (no process start time): taken after the holder started.
    const started = new Date().toISOString();
    writeLock({ pid, host: hostname(), started, command: "other" });
    assert.equal(lockIsStale({ pid, host: hostname(), started, command: "y" }), false);
    await assert.rejects(
      acquireBackupLock(control, "me", { breakStale: true }),
      lockHeld([new RegExp(`pid ${pid}\\b`)]),
    );
    assert.equal(readLock().pid, pid);
  });

  test("a live process that is not a backup is stale, and --clear-stale-lock clears it", async () => {
    // The old check (pid alive = held) blocked backups forever and could not be cleared.
    const pid = await liveProcess("tail-f", ["-f", "/dev/null", "wal-backup"]);
    const body = writeLock({ pid, host: hostname(), started: new Date().toISOString(), command: "wal-backup x" });
    await assert.rejects(
      acquireBackupLock(control, "me"),
      lockHeld([/stale/, new RegExp(`pid ${pid}\\b`), /is not wal-backup\/wal-ctl/]),
    );
    assert.equal(readFileSync(lockPath(), "utf8"), body);
    const msgs: string[] = [];
    const info = await acquireBackupLock(control, "me", { breakStale: true, onStale: (m) => msgs.push(m) });
    assert.deepEqual(readLock(), info);
    assert.match(msgs.join("\n"), new RegExp(`stale .*pid ${pid}\\b.*clearing it`));
    assert.deepEqual(
      readdirSync(dir).filter((n) => n !== BACKUPLOCK),
      [],
      "no guard or temporary file is left",
    );
  });

  test("a clearer killed while clearing does not wedge the lock: its guard is stale in turn", async () => {
    const dead = deadPid();
    const body = writeLock({ pid: dead, host: hostname(), started: "2024-01-01T00:00:00Z", command: "crashed" });
    // The guard a clearer takes before removing exactly that body, left by a clearer that died.
    const token = createHash("sha256").update(body).digest("hex").slice(0, 16);
    const guard = join(dir, `.walmgr-break.BACKUPLOCK.${token}`);
    writeFileSync(guard, `${JSON.stringify({ pid: deadPid(), host: hostname(), started: "x", command: "clearer" })}\n`);
    const info = await acquireBackupLock(control, "me", { breakStale: true });
    assert.deepEqual(readLock(), info);
    assert.deepEqual(
      readdirSync(dir).filter((n) => n !== BACKUPLOCK),
      [],
      "the dead clearer's guard (and the guard that cleared it) are gone",
    );
  });

  test("a clearer killed after removing the stale lock leaves a guard nobody breaks again: the next taker sweeps it", async () => {
    const guard = (name: string, info: object): void =>
      writeFileSync(join(dir, name), `${JSON.stringify({ started: "x", command: "clearer", ...info })}\n`);
    // No BACKUPLOCK any more (the dead clearer removed it); its guard, and a guard of that guard.
    guard(".walmgr-break.BACKUPLOCK.0123456789abcdef", { pid: deadPid(), host: hostname() });
    guard(".walmgr-break.walmgr-break.BACKUPLOCK.0123456789abcdef.fedcba9876543210", {
      pid: deadPid(),
      host: hostname(),
    });
    // Kept: a live clearer's (this process), another host's (cannot be checked), another lock's.
    const live = selfLockInfo("clearing");
    guard(".walmgr-break.BACKUPLOCK.1111111111111111", live);
    guard(".walmgr-break.BACKUPLOCK.2222222222222222", { pid: deadPid(), host: "elsewhere.example" });
    guard(".walmgr-break.SYNC_LOCK.3333333333333333", { pid: deadPid(), host: hostname() });
    const info = await acquireBackupLock(control, "me");
    assert.deepEqual(readLock(), info);
    assert.deepEqual(
      readdirSync(dir)
        .filter((n) => n !== BACKUPLOCK)
        .sort(),
      [
        ".walmgr-break.BACKUPLOCK.1111111111111111",
        ".walmgr-break.BACKUPLOCK.2222222222222222",
        ".walmgr-break.SYNC_LOCK.3333333333333333",
      ],
    );
  });

  test("a reused pid is stale: the live wal-backup started after the lock was taken", async () => {
    const pid = await liveProcess("wal-backup", ["master.ini"]);
    // Older lock format: its start time is before the process started.
    const old = { pid, host: hostname(), started: "2024-01-01T00:00:00.000Z", command: "wal-backup" };
    assert.equal(lockIsStale(old), true);
    // Current format: the process start time in the lock differs from the live process's.
    const now = selfLockInfo("wal-backup");
    assert.equal(lockIsStale({ ...now, pid }), true);
    // ... while the very process that wrote it is live.
    assert.equal(lockIsStale(now), false);
    // A lock from before a reboot names no live process, whatever runs under that pid now.
    assert.equal(lockIsStale({ ...now, boot: "another-boot" }), true);
  });

  test("a dead holder on this host is reported as stale and kept without breakStale", async () => {
    const dead = deadPid();
    const body = writeLock({ pid: dead, host: hostname(), started: "2024-01-01T00:00:00Z", command: "crashed" });
    assert.equal(lockIsStale({ pid: dead, host: hostname(), started: "x", command: "y" }), true);
    await assert.rejects(acquireBackupLock(control, "me"), lockHeld([/stale/, new RegExp(`pid ${dead}\\b`)]));
    assert.equal(readFileSync(lockPath(), "utf8"), body);
  });

  test("breakStale clears a stale lock and takes it", async () => {
    const dead = deadPid();
    writeLock({ pid: dead, host: hostname(), started: "2024-01-01T00:00:00Z", command: "crashed" });
    const info = await acquireBackupLock(control, "me", { breakStale: true });
    assert.equal(info.pid, process.pid);
    assert.deepEqual(readLock(), info);
  });

  test("a holder on another host is never stale, even with breakStale", async () => {
    const dead = deadPid();
    const body = writeLock({ pid: dead, host: `${hostname()}-elsewhere`, started: "s", command: "remote" });
    await assert.rejects(
      acquireBackupLock(control, "me", { breakStale: true }),
      lockHeld([new RegExp(`pid ${dead}\\b`), /-elsewhere/]),
    );
    assert.equal(readFileSync(lockPath(), "utf8"), body);
  });

  test("walmgr.py's empty or free-text lock is held, not stale", async () => {
    writeFileSync(lockPath(), "");
    await assert.rejects(acquireBackupLock(control, "me", { breakStale: true }), lockHeld([]));
    assert.equal(readFileSync(lockPath(), "utf8"), "");
    writeFileSync(lockPath(), "backup running\n");
    await assert.rejects(acquireBackupLock(control, "me", { breakStale: true }), lockHeld([/backup running/]));
    assert.equal(lockIsStale(undefined), false);
  });

  test("release removes our own lock; acquire works again afterwards", async () => {
    const info = await acquireBackupLock(control, "me");
    await releaseBackupLock(control, info);
    assert.equal(existsSync(lockPath()), false);
    const again = await acquireBackupLock(control, "me again");
    await releaseBackupLock(control, again);
    assert.equal(existsSync(lockPath()), false);
  });

  test("release leaves another process's lock alone", async () => {
    const info = await acquireBackupLock(control, "me");
    // Someone cleared ours and took it: a different pid.
    const other = writeLock({ pid: process.ppid, host: info.host, started: info.started, command: "other" });
    await releaseBackupLock(control, info);
    assert.equal(readFileSync(lockPath(), "utf8"), other);
    // Same pid but another start: a later lock of a reused pid, not ours either.
    const later = writeLock({ ...info, started: "2999-01-01T00:00:00.000Z" });
    await releaseBackupLock(control, info);
    assert.equal(readFileSync(lockPath(), "utf8"), later);
    // Free text (walmgr.py's lock) is not ours.
    writeFileSync(lockPath(), "");
    await releaseBackupLock(control, info);
    assert.equal(existsSync(lockPath()), true);
  });

  test("release without a lock is not an error", async () => {
    const info: LockInfo = { pid: process.pid, host: hostname(), started: "x", command: "y" };
    await releaseBackupLock(control, info);
    assert.equal(existsSync(lockPath()), false);
  });
});
