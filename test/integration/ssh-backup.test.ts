/**
 * Base backups to a slave on another host (the test sshd), on real PostgreSQL 15: a file
 * rewritten within the same second as its copy in the previous set (same size) reaches the new
 * set, while the delta stays small; kill -9 mid-copy (rsync running) leaves temp sets that the
 * next backup removes and logs; SIGTERM while the new set is renamed into place.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { runUntilPause, signalPaused } from "../helpers/crash";
import { ok, runBin, spawnBin, waitFor, type RunResult } from "../helpers/env";
import { createRemotePair, runSlaveBin, stopRemotePair, type RemotePair } from "../helpers/remote";
import { writeFileAs } from "../helpers/walmgr";

let p: RemotePair;

const hidden = (): string[] => readdirSync(p.slaveDir).filter((n) => n.startsWith(".walmgr-tmp."));
const setNames = (): string[] =>
  readdirSync(p.slaveDir)
    .filter((n) => /^data\.master(\.\d+)?$/.test(n))
    .sort();

function sentBytes(res: RunResult): number {
  const m = /, (\d+) bytes sent,/.exec(res.stderr);
  assert.ok(m, `no 'bytes sent' in:\n${res.stderr}`);
  return Number(m[1]);
}

/** At least one set is listed (from the master, over ssh) and every set verifies on the slave host. */
function assertUsable(what: string): void {
  const rows = JSON.parse(
    ok(runBin("wal-ctl", [p.masterIni, "listbackups", "--json"]), `listbackups ${what}`).stdout,
  ) as {
    name: string;
  }[];
  assert.ok(rows.length >= 1, `${what}: no set listed (hidden: ${hidden().join(", ")})`);
  ok(runSlaveBin("wal-ctl", [p.slaveIni, "verify"]), `verify ${what}`);
}

before(async () => {
  p = await createRemotePair("sshbackup");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t AS SELECT g AS id, 0 AS n FROM generate_series(1, 10000) g");
});

after(() => {
  if (p) stopRemotePair(p);
});

test("a file rewritten within the second of its previous copy, same size, reaches the new set", async (t) => {
  // PostgreSQL ignores unknown files in its data directory; the backup copies them like any.
  const probe = join(p.master.dataDir, "walmgr_probe");
  writeFileAs(probe, "A".repeat(8192));
  const first = sentBytes(ok(runBin("wal-backup", [p.masterIni]), "first backup"));
  const copy = join(p.slaveDir, "data.master", "walmgr_probe");
  assert.equal(readFileSync(copy, "utf8").slice(0, 4), "AAAA");
  // The previous set's copy has the file's mtime (rsync --times). Rewrite it with the same size
  // and give it another instant of the same whole second, as a write right after the copy would.
  const mtime = statSync(probe).mtimeMs;
  const second = Math.floor(mtime / 1000);
  const frac = mtime / 1000 - second < 0.5 ? 0.9 : 0.1;
  writeFileSync(probe, "B".repeat(8192));
  utimesSync(probe, second + frac, second + frac);
  assert.equal(Math.floor(statSync(copy).mtimeMs / 1000), second, "the copy's mtime is in the same second");
  await p.master.query("UPDATE t SET n = n + 1 WHERE id <= 100");
  await p.master.query("CHECKPOINT");
  const res = ok(runBin("wal-backup", [p.masterIni]), "second backup");
  const got = readFileSync(copy, "utf8");
  assert.equal(
    `${got.slice(0, 4)}… (${got.length} bytes)`,
    "BBBB… (8192 bytes)",
    "the new set must hold the new content",
  );
  // Still a delta transfer: unchanged files are not sent again.
  const again = sentBytes(res);
  t.diagnostic(`first backup sent ${first} bytes, second ${again}`);
  assert.ok(again * 4 < first, `second backup sent ${again} bytes, first ${first}`);
  assertUsable("after the second backup");
});

test("kill -9 mid-copy over ssh three times: the next backup removes the temp sets and says so; SIGTERM at its rename", async () => {
  if (setNames().length === 0) ok(runBin("wal-backup", [p.masterIni]), "a first set (when run alone)");
  const killed: number[] = [];
  for (let i = 0; i < 3; i++) {
    const before = new Set(hidden());
    const run = spawnBin("wal-backup", [p.masterIni, "--clear-stale-lock"]);
    const tmp = await waitFor<string | undefined>(
      "rsync to copy files",
      () => {
        // The new temp set (not a set being removed: .walmgr-tmp.data.master.N.removing.PID).
        const n = hidden().find((h) => !before.has(h) && /^\.walmgr-tmp\.data\.master\.\d+$/.test(h));
        return n !== undefined && existsSync(join(p.slaveDir, n, "base")) ? n : undefined;
      },
      60_000,
      5,
    );
    run.child.kill("SIGKILL");
    await run.exited;
    killed.push(Number((tmp ?? "").slice((tmp ?? "").lastIndexOf(".") + 1)));
  }
  // The next backup removes them (and says so); stopped by SIGTERM while its new set is renamed
  // into place, it finishes the rename first (no signal-time removal races it over ssh).
  const run = await runUntilPause("wal-backup", [p.masterIni, "--clear-stale-lock"], "shifted");
  const end = await signalPaused(run, "SIGTERM");
  assert.equal(end.signal, "SIGTERM", run.output());
  assert.deepEqual(hidden(), [], "no temp set is left");
  assert.deepEqual(setNames(), ["data.master", "data.master.0"], "the new set is in place, the old one listed");
  assert.ok(!existsSync(join(p.slaveDir, "logs.complete", "BACKUPLOCK")), "BACKUPLOCK released");
  const log = readFileSync(join(p.masterBase, "master.log"), "utf8");
  for (const pid of killed) {
    assert.match(log, new RegExp(`removed \\S*/\\.walmgr-tmp\\.data\\.master\\.${pid}: left behind by a backup`));
  }
  assertUsable("after the temp sets were removed and SIGTERM at the rename");
});
