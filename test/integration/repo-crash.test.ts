/**
 * backup_format = repo under kill -9 (issue 25's attack tests, first part): a repo backup killed
 * at a random moment, round after round (seeded; the seed is printed, WALMGR_REPO_CRASH_SEED
 * replays it, WALMGR_REPO_CRASH_ROUNDS sets how many), never leaves a set listed that is not
 * whole, never harms the sets listed before, and the next backup succeeds; what killed backups
 * left (packs no set references, half-written temp files) is gone after it; the newest set
 * restores and starts with the master's rows.
 */
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { Cluster, freePort } from "../helpers/cluster";
import { ok, removeTempDir, runBin, sleep, spawnBin, waitFor } from "../helpers/env";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";
import { seededRandom } from "../helpers/seeded";

let p: Pair | undefined;
let restored: Cluster | undefined;

after(() => {
  restored?.stop("immediate");
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("repo backups killed with SIGKILL at random moments: listed sets stay whole, the next backup succeeds and tidies up", async () => {
  const seed = Number(process.env.WALMGR_REPO_CRASH_SEED ?? Date.now() % 1_000_000);
  const rounds = Number(process.env.WALMGR_REPO_CRASH_ROUNDS ?? 8);
  process.stdout.write(`# seed ${seed} (WALMGR_REPO_CRASH_SEED=${seed} replays it), ${rounds} rounds\n`);
  const random = seededRandom(seed);
  p = await createPair("repo-crash", { master: "backup_format = repo\nkeep_backups = 50\nbackup_parallel = 2" });
  const pair = p;
  ok(runBin("wal-ctl", [pair.masterIni, "setup"]), "setup");
  pair.master.pgbench(["-i", "-s", "3", "-q"]);
  ok(runBin("wal-backup", [pair.masterIni]), "first backup");
  const sets = (): string[] =>
    readdirSync(join(pair.slaveDir, "repo", "sets"))
      .filter((n) => n.endsWith(".manifest"))
      .sort();
  const t0 = Date.now();
  ok(runBin("wal-backup", [pair.masterIni]), "a backup to time");
  const span = Date.now() - t0;
  let killed = 0;
  for (let r = 0; r < rounds; r++) {
    await pair.master.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 97 = $1", [r]);
    const before = sets();
    const run = spawnBin("wal-backup", [pair.masterIni, "--clear-stale-lock"]);
    // Up to a bit past a whole backup: some are killed near their end (manifest, info), some finish.
    await sleep(Math.floor(random() * span * 1.3));
    const alive = run.child.exitCode === null;
    if (alive) {
      run.child.kill("SIGKILL");
      killed++;
    }
    await run.exited;
    const now = sets();
    for (const s of before) assert.ok(now.includes(s), `round ${r} (seed ${seed}): ${s} was listed before and is gone`);
    // Whatever is listed now is whole: every block of every set re-read.
    const v = runBin("wal-ctl", [pair.slaveIni, "verify"]);
    assert.equal(
      v.status,
      0,
      `round ${r} (seed ${seed}, ${alive ? "killed" : "finished"}): verify\n${v.stdout}${v.stderr}`,
    );
  }
  process.stdout.write(`# ${killed} of ${rounds} backups killed\n`);
  const last = ok(runBin("wal-backup", [pair.masterIni, "--clear-stale-lock"]), "the backup after the kills");
  assert.match(last.stdout + last.stderr, /backup set \d{8}T\d{6}Z written/);
  // Nothing half-written is left, and every pack is referenced (expire ran after the backup).
  const litter = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith(".walmgr-tmp"));
  assert.deepEqual(litter(join(pair.slaveDir, "repo", "sets")), []);
  for (const d of readdirSync(join(pair.slaveDir, "repo", "packs")))
    assert.deepEqual(litter(join(pair.slaveDir, "repo", "packs", d)), [], `temp files in packs/${d}`);
  assert.match(last.stdout + last.stderr, /removed 0 set\(s\) and \d+ pack\(s\)/);
  ok(runBin("wal-ctl", [pair.slaveIni, "verify"]), "verify at the end");

  const want = await pair.master.value<string>("SELECT sum(abalance)::text FROM pgbench_accounts");
  const target = await pair.master.value<string>("SELECT pg_current_wal_lsn()::text");
  await pair.master.query("SELECT pg_switch_wal()");
  const newest = sets().pop()?.slice(0, -".manifest".length) ?? "";
  const dst = join(pair.base, "restored");
  ok(runBin("wal-ctl", [pair.masterIni, "restore", newest, dst]), "restore the newest set");
  restored = new Cluster(dst, await freePort(), pair.base, join(pair.base, "restored.log"));
  restored.start();
  const c = restored;
  // Restored as a standby of the archive (standby.signal): it replays what was archived.
  await waitFor(
    `the restored set to replay to ${target}`,
    async () => {
      try {
        return (await c.value<boolean>("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", [target])) === true;
      } catch {
        return false;
      }
    },
    120_000,
  );
  assert.equal(await c.value<string>("SELECT sum(abalance)::text FROM pgbench_accounts"), want);
});
