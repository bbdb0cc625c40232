/**
 * A live standby is never taken for gone while it still needs WAL, however its WAL reaches it
 * (real PostgreSQL 15, 1 MiB segments, standby_expire = 8 s, keep_backups = 1):
 *
 * - served by the shell front of bin/wal-restore (no Node, so no restore_command call records
 *   anything) while it lags behind recovery_min_apply_delay: its record stays fresh (the
 *   prefetcher's heartbeat), a second backup's purge keeps every segment from its restart point
 *   on, and it reaches every row;
 * - with restore_prefetch = 0 and a delay (20 s) longer than standby_expire: while the startup
 *   process waits out the delay it calls no restore_command at all; a backup taken in that
 *   window keeps the WAL it is about to ask for, and it reaches every row.
 *
 * Before the heartbeat, the first purge logged the standby as expired ("longer than
 * standby_expire") and removed the WAL it was about to ask for; the standby then waited for
 * WAL for ever.
 */
import assert from "node:assert/strict";
import { appendFileSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { ok, removeTempDir, runBin, sleep, waitFor } from "../helpers/env";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

const EXPIRE = 8;
const pairs: Pair[] = [];
/** Every age watcher still running: a failed assertion must not leave one keeping the test alive. */
const watchers = new Set<() => Promise<number>>();

after(async () => {
  for (const stop of watchers) await stop();
  for (const p of pairs) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

interface RecordFile {
  restartpoint: string;
  updated: string;
}

function record(p: Pair): RecordFile | undefined {
  try {
    return JSON.parse(readFileSync(join(p.slaveDir, "logs.complete", ".walmgr-standby.delayed"), "utf8")) as RecordFile;
  } catch {
    return undefined;
  }
}

/** Samples the age of the standby's record every 200 ms until `stop()`; returns the oldest seen. */
function watchAge(p: Pair): { stop: () => Promise<number> } {
  let oldest = 0;
  let on = true;
  const loop = (async (): Promise<void> => {
    while (on) {
      const r = record(p);
      if (r !== undefined) oldest = Math.max(oldest, (Date.now() - Date.parse(r.updated)) / 1000);
      await sleep(200);
    }
  })();
  const stop = async (): Promise<number> => {
    on = false;
    await loop;
    watchers.delete(stop);
    return oldest;
  };
  watchers.add(stop);
  return { stop };
}

async function setUp(name: string, slave: string, delay: string): Promise<Pair> {
  const p = await createPair(name, {
    initdb: ["--wal-segsize=1"],
    master: `keep_backups = 1\nstandby_expire = ${EXPIRE}`,
    slave: `standby_name = delayed\nstandby_expire = ${EXPIRE}\nkeep_backups = 1\n${slave}`,
  });
  pairs.push(p);
  // Copied into the backup, so the restored standby has them; the master ignores the delay.
  appendFileSync(
    join(p.master.dataDir, "postgresql.conf"),
    `recovery_min_apply_delay = '${delay}'\nwal_retrieve_retry_interval = 1s\n`,
  );
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial, tag text)");
  ok(runBin("wal-backup", [p.masterIni]), "first backup");
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore");
  return p;
}

async function count(p: Pair, tag: string): Promise<number> {
  return Number(await p.slave.value<string>("SELECT count(*) FROM t WHERE tag = $1", [tag]));
}

async function commitAndSwitch(p: Pair, tag: string, switches = 1): Promise<void> {
  await p.master.query("INSERT INTO t (tag) VALUES ($1)", [tag]);
  for (let i = 0; i < switches; i++) await p.master.query("SELECT pg_switch_wal()");
}

const segNo = (name: string): number =>
  Number.parseInt(name.slice(8, 16), 16) * 4096 + Number.parseInt(name.slice(16), 16);

/**
 * The purge kept everything the standby needs: every segment of its timeline from its restart
 * point (pg_control, as the server reports it) to the newest archived one.
 */
async function assertKeptFromRestartPoint(p: Pair): Promise<void> {
  const rp = await p.slave.value<string>("SELECT redo_wal_file FROM pg_control_checkpoint()");
  const have = new Set(readdirSync(join(p.slaveDir, "logs.complete")).filter((n) => /^[0-9A-F]{24}$/.test(n)));
  const newest =
    [...have]
      .filter((n) => n.slice(0, 8) === rp.slice(0, 8))
      .sort()
      .pop() ?? rp;
  const missing: string[] = [];
  for (let n = segNo(rp); n <= segNo(newest); n++) {
    const name = `${rp.slice(0, 8)}${Math.floor(n / 4096)
      .toString(16)
      .toUpperCase()
      .padStart(8, "0")}${(n % 4096).toString(16).toUpperCase().padStart(8, "0")}`;
    if (!have.has(name)) missing.push(name);
  }
  assert.deepEqual(missing, [], `WAL the standby needs (from its restart point ${rp} to ${newest}) was purged`);
}

test("served by the shell front while it lags behind its apply delay: never expired, nothing it needs purged", async () => {
  const p = await setUp("liveness-front", "restore_prefetch = 8", "15s");
  const age = watchAge(p);
  // Half a minute of commits, one segment each second: the standby follows 15 s behind, fed
  // from the spool by the shell front.
  for (let i = 0; i < 30; i++) {
    await commitAndSwitch(p, "a");
    if (i % 10 === 9) {
      await p.master.query("CHECKPOINT");
      await p.slave.query("CHECKPOINT").catch(() => undefined); // a restartpoint, once replayed
    }
    await sleep(1000);
  }
  const backup = ok(runBin("wal-backup", [p.masterIni]), "second backup");
  const oldest = await age.stop();
  const log = readFileSync(join(p.base, "slave.log"), "utf8");
  const byNode = log.split("\n").filter((l) => /restored [0-9A-F]{24} from \//.test(l)).length;
  assert.doesNotMatch(backup.stderr, /longer than standby_expire/, "the purge took the standby for gone");
  await assertKeptFromRestartPoint(p);
  await waitFor("the standby to reach every row", async () => (await count(p, "a")) === 30, 90_000, 500);
  assert.ok(oldest < EXPIRE, `the standby's record got ${oldest.toFixed(1)} s old (standby_expire ${EXPIRE} s)`);
  assert.ok(byNode < 20, `the shell front served most segments (Node served ${byNode} of 30+)`);
  // The heartbeat records the standby's own restart point (from pg_control), as %r would.
  await p.slave.query("CHECKPOINT");
  const rp = await p.slave.value<string>("SELECT redo_wal_file FROM pg_control_checkpoint()");
  await waitFor(`the record to name the restart point ${rp}`, () => record(p)?.restartpoint === rp, 10_000, 100);
});

test("restore_prefetch = 0, apply delay longer than standby_expire: kept while it waits, then every row", async () => {
  const p = await setUp("liveness-delay", "restore_prefetch = 0", "20s");
  await commitAndSwitch(p, "warm", 2);
  await waitFor("the standby to catch up", async () => (await count(p, "warm")) === 1, 60_000, 200);
  // One commit, then segments without any: the startup process fetches the commit's segment and
  // waits 20 s before it applies it, calling no restore_command meanwhile.
  const age = watchAge(p);
  const t0 = Date.now();
  await commitAndSwitch(p, "b", 4);
  await sleep(Math.max(0, t0 + 12_000 - Date.now())); // past standby_expire, within the delay
  const backup = ok(runBin("wal-backup", [p.masterIni]), "second backup");
  assert.ok(Date.now() - t0 < 20_000, "the backup ended within the apply delay (the test needs it to)");
  assert.doesNotMatch(backup.stderr, /longer than standby_expire/, "the purge took the standby for gone");
  await assertKeptFromRestartPoint(p);
  await waitFor("the delayed commit to be applied", async () => (await count(p, "b")) === 1, 60_000, 200);
  const oldest = await age.stop();
  assert.ok(oldest < EXPIRE, `the standby's record got ${oldest.toFixed(1)} s old (standby_expire ${EXPIRE} s)`);
  // And it goes on past the WAL the backup's purge could have taken.
  await commitAndSwitch(p, "c");
  await waitFor("the standby to reach the next commit", async () => (await count(p, "c")) === 1, 60_000, 200);
});
