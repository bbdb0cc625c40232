/**
 * Backup/restore torture on real PostgreSQL 15: `kill -9` of `wal-backup` and of
 * `wal-ctl restore` at random moments, round after round. After each kill the operator's next
 * command (the same command again) completes, `listbackups` shows at least one set, `verify`
 * passes, nothing hidden is left behind, and after each restore the standby holds every row.
 *
 * Half the kills come after a random delay, half exactly at a named step (the hooks the crash
 * tests use), chosen at random: most steps of putting a set in place are renames, too quick for
 * a timed kill to land in.
 *
 * The moments are random but replayable: the seed is printed, and WALMGR_TORTURE_SEED=<n>
 * replays a run; WALMGR_TORTURE_ROUNDS=<n> sets the number of rounds (default 20, half backups,
 * half restores). Delays are drawn from 0 to 1.1 times the shortest clean run seen so far, so
 * kills land anywhere from the start to the end on a fast or a slow machine.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { after, before, test } from "node:test";
import { RESTORE_CRASH_POINTS } from "../../src/command/restore/journal";
import { runUntilPause, signalPaused } from "../helpers/crash";
import { ok, removeTempDir, runBin, sleep, spawnBin, waitFor } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";
import { seededRandom } from "../helpers/seeded";

const SEED = Number(process.env.WALMGR_TORTURE_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ROUNDS = Number(process.env.WALMGR_TORTURE_ROUNDS ?? 20);
const ROWS = "SELECT tag, count(*)::text AS n FROM t GROUP BY tag ORDER BY tag";

let p: Pair;
const random = seededRandom(SEED);
/** The shortest clean run seen (ms): measured in `before`, lowered by every clean rerun. */
let backupMs = 0;
let restoreMs = 0;

/** Where wal-backup can be stopped (WALMGR_TEST_PAUSE_AT) in every round: copied, old set moved, new set in. */
const BACKUP_POINTS = ["copied", "shifted", "committed"];
const pick = <T>(from: readonly T[]): T => {
  const x = from[Math.floor(random() * from.length)];
  if (x === undefined) throw new Error("nothing to pick from");
  return x;
};

/** Hidden names our tools use beside the sets and beside the data directory: none may be left. */
function leftovers(): string[] {
  return [p.base, p.slaveDir].flatMap((d) =>
    readdirSync(d)
      .filter((n) => n.startsWith(".walmgr-restore.") || n.startsWith(".walmgr-tmp.") || n.startsWith(".walmgr-gone."))
      .map((n) => join(d, n)),
  );
}

const setNames = (): string[] =>
  readdirSync(p.slaveDir)
    .filter((n) => /^data\.master(\.\d+)?$/.test(n))
    .sort();

/** At least one set is listed and `verify` passes (every listed set is complete). */
function assertUsable(what: string): string[] {
  const rows = JSON.parse(
    ok(runBin("wal-ctl", [p.slaveIni, "listbackups", "--json"]), `listbackups ${what}`).stdout,
  ) as {
    name: string;
  }[];
  assert.ok(rows.length >= 1, `${what}: listbackups shows no set`);
  ok(runBin("wal-ctl", [p.slaveIni, "verify"]), `verify ${what}`);
  return rows.map((r) => r.name);
}

/** Switches WAL and waits for the standby to hold exactly the master's rows. */
async function standbyHoldsEveryRow(what: string): Promise<void> {
  await p.master.query("SELECT pg_switch_wal()");
  const want = JSON.stringify(await p.master.query(ROWS));
  let got = "";
  await waitFor(
    `${what}: the standby to hold every row`,
    async () => {
      got = JSON.stringify(await p.slave.query(ROWS));
      return got === want;
    },
    60_000,
    100,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\nwant ${want}\ngot  ${got}`);
  });
  assert.equal(await p.slave.value<boolean>("SELECT pg_is_in_recovery()"), true, `${what}: it is a standby`);
}

function timed(what: string, name: string, args: string[]): { ms: number; stderr: string } {
  const t0 = Date.now();
  const res = ok(runBin(name, args), what);
  return { ms: Date.now() - t0, stderr: res.stderr };
}

/** Starts `name args`, kills it with SIGKILL after `delayMs` (unless it ended first); says how it ended. */
async function killAfter(name: string, args: string[], delayMs: number): Promise<string> {
  const s = spawnBin(name, args);
  const ended = await Promise.race([s.exited, sleep(delayMs).then(() => undefined)]);
  if (ended) return `ended by itself (exit ${String(ended.status)}) before the kill`;
  s.child.kill("SIGKILL");
  const end = await s.exited;
  return end.signal === "SIGKILL" ? `killed after ${delayMs} ms` : `ended (exit ${String(end.status)})`;
}

before(async () => {
  p = await createPair("torture");
  // A standby that asks again quickly for WAL that is not there yet (restored sets keep this).
  writeFileAs(
    join(p.master.dataDir, "postgresql.conf"),
    `${readFileSync(join(p.master.dataDir, "postgresql.conf"), "utf8")}\nwal_retrieve_retry_interval = 200ms\n`,
  );
  // Three sets: a restore killed after it finished and its rerun consume two, one stays listed.
  writeFileAs(p.masterIni, `${readFileSync(p.masterIni, "utf8")}\nkeep_backups = 3\n`);
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial, tag text)");
  await p.master.query("INSERT INTO t (tag) SELECT 'first' FROM generate_series(1, 100)");
  backupMs = timed("the first backup", "wal-backup", [p.masterIni]).ms;
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "the first restore");
  await standbyHoldsEveryRow("the first restore");
  // A restore over a running standby (stop, swap, start) is the one the rounds kill.
  ok(runBin("wal-backup", [p.masterIni]), "a second backup");
  restoreMs = timed("a restore over the standby", "wal-ctl", [p.slaveIni, "restore"]).ms;
  await standbyHoldsEveryRow("a restore over the standby");
});

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("kill -9 of wal-backup and wal-ctl restore at random moments: every rerun completes and loses nothing", async (t) => {
  t.diagnostic(
    `seed ${SEED} (replay with WALMGR_TORTURE_SEED=${SEED}); clean backup ${backupMs} ms, restore ${restoreMs} ms`,
  );
  console.log(`torture seed ${SEED}`);
  const killed = { backup: 0, restore: 0 };
  /** The steps killed restores were at (the journal names the next one). */
  const steps = new Set<string>();
  for (let round = 0; round < ROUNDS; round++) {
    const tag = `round-${round}`;
    await p.master.query("INSERT INTO t (tag) SELECT $1 FROM generate_series(1, $2::int)", [tag, round + 1]);
    if (round % 2 === 0) {
      const args = [p.masterIni, "--clear-stale-lock"];
      let how: string;
      if (random() < 0.5) {
        how = await killAfter("wal-backup", args, Math.floor(random() * backupMs * 1.1));
      } else {
        // Or exactly at one of the moments a set is put in place (stopped there, then killed).
        const point = pick(BACKUP_POINTS);
        const end = await signalPaused(await runUntilPause("wal-backup", args, point), "SIGKILL");
        how = end.signal === "SIGKILL" ? `killed at ${point}` : `ended (exit ${String(end.status)}) at ${point}`;
      }
      if (how.startsWith("killed")) killed.backup++;
      // The operator's next command: the same backup again (a killed backup's lock is stale).
      const rerun = timed(`${tag}: backup after ${how}`, "wal-backup", [p.masterIni, "--clear-stale-lock"]);
      backupMs = Math.min(backupMs, rerun.ms);
      assert.deepEqual(leftovers(), [], `${tag}: backup ${how}; the rerun left hidden files:\n${rerun.stderr}`);
      const sets = assertUsable(`${tag} (backup ${how})`);
      t.diagnostic(`${tag}: backup ${how}; sets ${sets.join(", ")}`);
    } else {
      // Enough sets that a restore which finished before the kill and its rerun leave one.
      while (setNames().length < 3) ok(runBin("wal-backup", [p.masterIni]), `${tag}: a backup to restore`);
      let how: string;
      if (random() < 0.5) {
        how = await killAfter("wal-ctl", [p.slaveIni, "restore"], Math.floor(random() * restoreMs * 1.1));
      } else {
        // Or at one of its named steps: most steps are renames, too quick for a timed kill to hit.
        const point = pick(RESTORE_CRASH_POINTS);
        const end = runBin("wal-ctl", [p.slaveIni, "restore"], { env: { WALMGR_TEST_CRASH_AT: point } });
        how = end.signal === "SIGKILL" ? `killed at ${point}` : `ended (exit ${String(end.status)}) before ${point}`;
      }
      if (how.startsWith("killed")) killed.restore++;
      const journal = join(p.base, ".walmgr-restore.slave-data.json");
      const pending = existsSync(journal)
        ? (JSON.parse(readFileSync(journal, "utf8")) as { step: string; set: string })
        : undefined;
      if (pending) steps.add(pending.step);
      const setsBefore = setNames();
      const rerun = timed(`${tag}: restore after ${how}`, "wal-ctl", [p.slaveIni, "restore"]);
      if (pending) {
        // A restore the kill interrupted is carried on with its set (claimed already, or still
        // in place if the kill came before), not started again with another one.
        assert.match(rerun.stderr, /resuming the interrupted restore/, `${tag}: restore ${how}`);
        assert.deepEqual(
          setNames(),
          setsBefore.filter((n) => n !== basename(pending.set)),
          `${tag}: restore ${how}; the resumed restore took only its own set (${pending.set})`,
        );
      } else {
        restoreMs = Math.min(restoreMs, rerun.ms);
      }
      assert.deepEqual(leftovers(), [], `${tag}: restore ${how}; the rerun left hidden files:\n${rerun.stderr}`);
      const sets = assertUsable(`${tag} (restore ${how})`);
      await standbyHoldsEveryRow(`${tag} (restore ${how})`);
      assert.ok(existsSync(join(p.slaveData, "standby.signal")), `${tag}: the data directory is a standby's`);
      t.diagnostic(`${tag}: restore ${how}; sets ${sets.join(", ")}`);
      // The data directories each restore kept aside: not needed here, and they fill the disk.
      for (const n of readdirSync(p.base).filter((d) => /^slave-data\.\d+$/.test(d))) {
        rmSync(join(p.base, n), { recursive: true, force: true });
      }
    }
  }
  t.diagnostic(
    `kills that landed: ${killed.backup} backups, ${killed.restore} restores, at restore steps ${[...steps].join(", ") || "none"} (seed ${SEED})`,
  );
  // A torture that never killed anything proves nothing: most delays fall inside a run.
  assert.ok(killed.backup >= 1 && killed.restore >= 1, `too few kills landed: ${JSON.stringify(killed)}`);
});
