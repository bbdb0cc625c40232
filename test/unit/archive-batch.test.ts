import assert from "node:assert/strict";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { readySegments } from "../../src/command/archive/batch";
import { AckRecords } from "../../src/command/archive/acks";
import { fileStamp } from "../../src/config/load";

const base = mkdtempSync(join(tmpdir(), "batch-unit-"));
after(() => rmSync(base, { recursive: true, force: true }));

test("readySegments: complete segments marked ready, oldest first, %p and other kinds left out, at most limit", () => {
  const walDir = join(base, "pg_wal");
  const status = join(walDir, "archive_status");
  mkdirSync(status, { recursive: true });
  for (const n of [
    "000000010000000000000005.ready",
    "000000010000000000000003.ready",
    "000000010000000000000004.ready",
    "000000010000000000000002.done",
    "00000002.history.ready",
    "000000010000000000000006.00000028.backup.ready",
    "000000010000000000000007.partial.ready",
    "000000020000000000000007.ready",
    "junk.ready",
  ])
    writeFileSync(join(status, n), "");
  const cur = "000000010000000000000003";
  const all = readySegments(join(walDir, cur), cur, 10);
  assert.equal(all.statusDir, status);
  assert.deepEqual(
    all.wals.map((w) => w.name),
    ["000000010000000000000004", "000000010000000000000005", "000000020000000000000007"],
  );
  assert.deepEqual(
    readySegments(join(walDir, cur), cur, 1).wals.map((w) => w.name),
    ["000000010000000000000004"],
  );
  assert.deepEqual(readySegments(join(walDir, cur), cur, 0).wals, []);
  // Run by hand on a file outside pg_wal: no archive_status beside it, no batch.
  assert.deepEqual(readySegments(join(base, cur), cur, 10).wals, []);
});

/** A pg_wal with `names` as segments (ready), a config file, and records opened on them. */
function walWithRecords(tag: string, names: string[]): { walDir: string; statusDir: string; open: () => AckRecords } {
  const walDir = join(base, tag, "pg_wal");
  const statusDir = join(walDir, "archive_status");
  mkdirSync(statusDir, { recursive: true });
  for (const n of names) {
    writeFileSync(join(walDir, n), "x");
    writeFileSync(join(statusDir, `${n}.ready`), "");
  }
  const ini = join(base, tag, "master.ini");
  writeFileSync(ini, "[wal-master]\n");
  const open = (): AckRecords => {
    const acks = AckRecords.open(walDir, statusDir, ini, fileStamp(statSync(ini, { bigint: true })), {
      evenAsRoot: true,
    });
    assert.ok(acks);
    return acks;
  };
  return { walDir, statusDir, open };
}

/** A process that lives until killed, for markers to name. */
function liveProcess(): { pid: number; kill: () => Promise<void> } {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  const gone = new Promise<void>((r) => child.once("exit", () => r()));
  return {
    pid: child.pid ?? 0,
    kill: async () => {
      child.kill("SIGKILL");
      await gone;
    },
  };
}

const S1 = "000000010000000000000001";
const S2 = "000000010000000000000002";

test("push markers: one live holder at a time, taken over once its process is gone", async () => {
  const { walDir, open } = walWithRecords("claim", [S1, S2]);
  const a = open();
  const p = liveProcess();
  try {
    assert.equal(a.claimPush(S1, p.pid, 10), true);
    assert.equal(readFileSync(join(walDir, ".walmgr-archived", `${S1}.push`), "utf8"), `${p.pid} 10\n`);
    assert.equal(open().claimPush(S1, process.pid, 10), false, "a live holder keeps it");
    assert.equal(a.pushing(S1), true);
    assert.equal(a.pushing(S2), false);
  } finally {
    await p.kill();
  }
  assert.equal(a.pushing(S1), false, "a dead holder holds nothing");
  assert.equal(open().claimPush(S1, process.pid, 10), true, "taken over");
  assert.equal(a.pushOwner(S1), process.pid);
});

test("push markers: a holder whose seconds ran out holds nothing (a reused pid cannot hold a segment)", () => {
  const { walDir, open } = walWithRecords("expiry", [S1]);
  const a = open();
  assert.equal(a.claimPush(S1, process.pid, 2), true);
  assert.equal(a.pushing(S1), true);
  const marker = join(walDir, ".walmgr-archived", `${S1}.push`);
  const past = new Date(Date.now() - 3000);
  utimesSync(marker, past, past);
  assert.equal(a.pushing(S1), false);
  assert.equal(open().claimPush(S1, process.pid, 2), true);
});

test("push markers: handed over atomically; dropped only by their holder; swept once dead or no longer ready", async () => {
  const { walDir, statusDir, open } = walWithRecords("hand", [S1, S2]);
  const a = open();
  const dir = join(walDir, ".walmgr-archived");
  const p = liveProcess();
  try {
    assert.equal(a.claimPush(S1, process.pid, 10), true);
    assert.equal(a.claimPush(S2, process.pid, 10), true);
    a.handPush(S1, p.pid, 10);
    a.handPush(S2, p.pid, 10);
    assert.equal(a.pushOwner(S1), p.pid);
    a.dropPush(S1, process.pid);
    assert.ok(existsSync(join(dir, `${S1}.push`)), "not ours any more: kept");
    a.dropPush(S1, p.pid);
    assert.ok(!existsSync(join(dir, `${S1}.push`)));
    // S2's segment marked done: its marker goes with the next sweep even while its holder lives.
    writeFileSync(join(statusDir, `${S1}.ready`), "");
    rmSync(join(statusDir, `${S2}.ready`));
    assert.equal(a.claimPush(S1, p.pid, 10), true);
    open().sweep();
    assert.ok(!existsSync(join(dir, `${S2}.push`)), "no longer ready: swept");
    assert.ok(existsSync(join(dir, `${S1}.push`)), "live and ready: kept");
  } finally {
    await p.kill();
  }
  open().sweep();
  assert.ok(!existsSync(join(dir, `${S1}.push`)), "holder gone: swept");
});

test("records: kept only for the very file pushed; a config change removes records but leaves markers to their holders", () => {
  const { walDir, open } = walWithRecords("record", [S1, S2]);
  const dir = join(walDir, ".walmgr-archived");
  const a = open();
  assert.equal(a.vouch(), true);
  const before = statSync(join(walDir, S1));
  a.record(S1, before);
  assert.equal(a.holds(S1), true);
  // S2 replaced between the push and its record (the old file moved aside, as a data
  // directory restored over is): no record.
  const pushed = statSync(join(walDir, S2));
  renameSync(join(walDir, S2), join(walDir, `${S2}.old`));
  writeFileSync(join(walDir, S2), "y");
  a.record(S2, pushed);
  assert.ok(!existsSync(join(dir, S2)), "a record of another file than the one pushed is dropped");
  assert.equal(a.claimPush(S2, process.pid, 10), true);
  // The config edited: a run under the new stamp removes every record, not the marker.
  const ini = join(base, "record", "master.ini");
  writeFileSync(ini, "[wal-master]\n; edited\n");
  assert.equal(a.current(), false);
  const b = open();
  b.sweep();
  assert.ok(!existsSync(join(dir, S1)), "records of the old stamp removed");
  assert.ok(existsSync(join(dir, `${S2}.push`)), "the marker stays its holder's");
  assert.equal(a.vouch(), false, "the old run may make no more records");
});
