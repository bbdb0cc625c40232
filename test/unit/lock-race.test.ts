/**
 * Clearing a stale lock is a race among the processes that find it: each must re-check what it
 * removes, or two clearers both end up holding the lock. Many processes clear the same stale
 * BACKUPLOCK (and the same stale sync lock in partial_wals) at the same instant, over and over:
 * exactly one holds it afterwards, every other one is refused with exit 4.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

const ROUNDS = 40;
const CLEARERS = 6;

let scripts: string;

/**
 * The child: `node DIR/wal-backup LIBDIR` (named like our program, as a real clearer is). For
 * each line `[LOCKPATH, START_AT]` on stdin it waits for START_AT, so that all clearers collide,
 * then takes the lock with stale-lock clearing and answers "got" (and keeps it: the process
 * lives on) or "no CODE".
 */
const CHILD = `
const lib = process.argv[2];
const path = require("node:path");
const { LocalDriver } = require(lib + "/storage/local/driver.js");
const { acquireBackupLock, ControlFiles } = require(lib + "/slavedir/control.js");
function syncLock(lockPath) {
  const { tryTakeLock, lockBody, selfLockInfo } = require(lib + "/slavedir/lock.js");
  return tryTakeLock(new LocalDriver(), lockPath, lockBody(selfLockInfo("race", "once")), {
        programs: ["wal-sync", "wal-ctl", "wal-backup"], breakStale: true,
      }).then((r) => { if (!r.taken) throw Object.assign(new Error("held"), { exitCode: 4 }); });
}
function go(lockPath) {
  const take = path.basename(lockPath) === "BACKUPLOCK"
    ? acquireBackupLock(new ControlFiles(new LocalDriver(), path.dirname(lockPath)), "race", { breakStale: true })
    : syncLock(lockPath);
  take.then(
    () => process.stdout.write("got\\n"),
    (err) => process.stdout.write("no " + String(err.exitCode) + "\\n"),
  );
}
require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const [lockPath, startAt] = JSON.parse(line);
  // Sleep until just before START_AT, then spin to it: all clearers start within a millisecond.
  setTimeout(() => {
    while (Date.now() < startAt) {}
    go(lockPath);
  }, Math.max(0, startAt - Date.now() - 10));
});
`;

before(() => {
  scripts = mkdtempSync(join(tmpdir(), "walmgr-race-"));
  writeFileSync(join(scripts, "wal-backup"), CHILD);
});

after(() => rmSync(scripts, { recursive: true, force: true }));

function deadPid(): number {
  const res = spawnSync("/bin/sh", ["-c", "echo $$"], { encoding: "utf8" });
  return Number(res.stdout.trim());
}

/** A clearer process and its answers, one per round. */
class Clearer {
  readonly child: ChildProcess;
  private buffered = "";
  private waiting: ((line: string) => void) | undefined;

  constructor(lib: string) {
    this.child = spawn(process.execPath, [join(scripts, "wal-backup"), lib], { stdio: ["pipe", "pipe", "inherit"] });
    this.child.stdout?.on("data", (b: Buffer) => {
      this.buffered += b.toString();
      this.deliver();
    });
    this.child.once("close", (code, signal) => {
      this.buffered += `exited ${String(code ?? signal)}\n`.repeat(ROUNDS);
      this.deliver();
    });
  }

  private deliver(): void {
    const nl = this.buffered.indexOf("\n");
    if (nl < 0 || !this.waiting) return;
    const line = this.buffered.slice(0, nl);
    this.buffered = this.buffered.slice(nl + 1);
    const w = this.waiting;
    this.waiting = undefined;
    w(line);
  }

  ask(lockPath: string, startAt: number): Promise<string> {
    const answer = new Promise<string>((resolve) => (this.waiting = resolve));
    this.child.stdin?.write(`${JSON.stringify([lockPath, startAt])}\n`);
    this.deliver();
    return answer;
  }
}

async function race(lockName: string): Promise<void> {
  const lib = join(__dirname, "..", "..", "src");
  // A live process that is no backup (the old code took any live pid for the holder).
  const unrelated = spawn("sleep", ["120"], { stdio: "ignore" });
  const clearers = Array.from({ length: CLEARERS }, () => new Clearer(lib));
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const dir = mkdtempSync(join(tmpdir(), "walmgr-race-dir-"));
      const lockPath = join(dir, lockName);
      const pid = round % 2 === 0 ? deadPid() : (unrelated.pid ?? 0);
      const stale = `${JSON.stringify({ pid, host: hostname(), started: "2024-01-01T00:00:00.000Z", command: "old" })}\n`;
      writeFileSync(lockPath, stale);
      // The first round waits for the clearers to load; later ones only for the message to arrive.
      const startAt = Date.now() + (round === 0 ? 1500 : 60);
      try {
        const lines = await Promise.all(clearers.map((c) => c.ask(lockPath, startAt)));
        const winners = clearers.filter((_, i) => lines[i] === "got");
        assert.equal(winners.length, 1, `round ${round}: exactly one clearer holds ${lockName}: ${lines.join(", ")}`);
        assert.deepEqual(
          lines.filter((l) => l !== "got"),
          Array.from({ length: CLEARERS - 1 }, () => "no 4"),
          `round ${round}: the others are refused with exit 4`,
        );
        const held = JSON.parse(readFileSync(lockPath, "utf8")) as { pid: number };
        assert.equal(held.pid, winners[0]?.child.pid, `round ${round}: the lock names the one that got it`);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    for (const c of clearers) c.child.kill("SIGKILL");
    unrelated.kill("SIGKILL");
  }
}
test(`${CLEARERS} concurrent --clear-stale-lock on a stale BACKUPLOCK: exactly one takes it (${ROUNDS} rounds)`, async () => {
  await race("BACKUPLOCK");
});

test(`${CLEARERS} concurrent syncs on a stale sync lock: exactly one takes it (${ROUNDS} rounds)`, async () => {
  await race(".walmgr-sync-lock");
});
