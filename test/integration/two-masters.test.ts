/**
 * A failover with the old master's sync daemon left running, on real PostgreSQL 15 (issue 23,
 * item 5). The old master keeps writing and its daemon keeps shipping timeline 1 into the
 * slave directory the promoted node (timeline 2) now archives into. Then:
 * - `status` on the new master never subtracts positions of two timelines (no negative byte
 *   count), says that the last sync was of timeline 1, and names the sync lock's holder as a
 *   process of another master/timeline;
 * - the new master's one-shot sync is refused (exit 4) naming the holder (host, pid, start, the
 *   old master's data directory and timeline) and what to do;
 * - `verify` warns of two writers (text and JSON), and did not before the failover;
 * - once the old daemon is stopped, the new master's sync works and status is normal.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Ajv2020 from "ajv/dist/2020";
import type { Status } from "../../src/monitor/status-report";
import type { VerifyReport } from "../../src/command/backup/verify";
import { startDaemon, stopDaemon, syncState, waitShipped } from "../helpers/daemon";
import { REPO_ROOT, removeTempDir, runBin, waitFor, ok, type Spawned } from "../helpers/env";
import { createPair, masterIniText, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";
import { parseLsn } from "../../src/wal/names";

let p: Pair;
let d: Spawned | undefined;

const ajv = new Ajv2020({ allErrors: true });
const schema = (name: string): object =>
  JSON.parse(readFileSync(join(REPO_ROOT, "schemas", `${name}.schema.json`), "utf8")) as object;
const validStatus = ajv.compile<Status>(schema("status"));
const validVerify = ajv.compile<VerifyReport>(schema("verify"));

function statusJson(ini: string): Status {
  const res = ok(runBin("wal-ctl", [ini, "status", "--json"]), "status --json");
  const s = JSON.parse(res.stdout) as unknown;
  assert.ok(
    validStatus(s),
    `status --json does not fit its schema: ${JSON.stringify(validStatus.errors)}\n${res.stdout}`,
  );
  return s;
}

function verifyJson(ini: string): VerifyReport {
  const res = runBin("wal-ctl", [ini, "verify", "--json"]);
  const v = JSON.parse(res.stdout) as unknown;
  assert.ok(
    validVerify(v),
    `verify --json does not fit its schema: ${JSON.stringify(validVerify.errors)}\n${res.stdout}`,
  );
  return v;
}

before(async () => {
  p = await createPair("two-masters", {
    master: "use_xlog_functions = 1\nloop_delay = 0.3\npidfile = daemon.pid",
  });
});

after(async () => {
  if (d) await stopDaemon(d);
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("failover with the old master's sync daemon still running: status, sync and verify say so", async () => {
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial PRIMARY KEY, tag text NOT NULL)");
  ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
  ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master"]), "restore (a copy: the set stays for verify)");
  const old = await startDaemon(p);
  d = old;
  await p.master.query("INSERT INTO t (tag) SELECT 'before' FROM generate_series(1, 1000)");
  await waitShipped(p, await p.master.value<string>("SELECT pg_current_wal_lsn()::text"));

  // One master: nothing of two writers.
  const single = verifyJson(p.masterIni);
  assert.equal(single.twoWriters.detected, false, JSON.stringify(single.twoWriters));
  const normal = ok(runBin("wal-ctl", [p.masterIni, "status"]), "status").stdout;
  assert.doesNotMatch(normal, /another master|ANOTHER MASTER|-\d+ bytes/, normal);
  assert.match(normal, /sync lock: +held by pid \d+ .*timeline 1; running/, normal);

  // The failover, with the old master and its daemon left running.
  ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
  const newIni = join(p.base, "newmaster.ini");
  writeFileAs(
    newIni,
    masterIniText(p.slave, p.slaveDir, "use_xlog_functions = 1\npidfile = newdaemon.pid")
      .replace("job_name = master", "job_name = newmaster")
      .replace("logfile = master.log", "logfile = newmaster.log"),
  );
  ok(runBin("wal-ctl", [newIni, "setup"]), "setup on the new master");
  await p.slave.query("INSERT INTO t (tag) SELECT 'new master' FROM generate_series(1, 100)");
  const newLsn = await p.slave.value<string>("SELECT pg_current_wal_lsn()::text");
  assert.match(await p.slave.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())"), /^00000002/);

  // The old master writes on, past the new master's position and for a few seconds after the new
  // timeline's .history appeared; its daemon ships it (timeline 1), its archiver archives it.
  const history = statSync(join(p.slaveDir, "logs.complete", "00000002.history")).mtimeMs;
  const statePath = join(p.slaveDir, "logs.partial", ".walmgr-sync-state");
  await waitFor(
    "the old master's daemon to ship timeline 1 past the new master's position",
    async () => {
      await p.master.query("INSERT INTO t (tag) SELECT 'old master' FROM generate_series(1, 20000)");
      const st = syncState(p);
      return (
        st !== undefined &&
        st.name.startsWith("00000001") &&
        st.lsn !== "" &&
        parseLsn(st.lsn) > parseLsn(newLsn) &&
        statSync(statePath).mtimeMs > history + 3_000
      );
    },
    60_000,
    500,
  );
  const oldSegment = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor("the old master to archive " + oldSegment, () =>
    existsSync(join(p.slaveDir, "logs.complete", oldSegment)),
  );

  // status on the new master: no figure across timelines; the old timeline and the lock's holder named.
  const s = statusJson(newIni);
  assert.ok(s.master, "status must still show the new master's position");
  assert.equal(s.master.timeline, 2);
  assert.equal(s.master.bytesBehind, null, "no byte count between two timelines");
  assert.match(s.master.notComparable ?? "", /timeline 1/);
  assert.equal(s.lastSync?.timeline, 1);
  assert.equal(s.syncLock?.present, true);
  assert.equal(s.syncLock?.holder?.pid, old.child.pid);
  assert.equal(s.syncLock?.holder?.timeline, 1);
  assert.equal(s.syncLock?.holder?.masterData, p.master.dataDir);
  assert.match(s.syncLock?.foreign ?? "", /timeline 1/);
  const text = ok(runBin("wal-ctl", [newIni, "status"]), "status").stdout;
  assert.doesNotMatch(text, /-\d+ bytes/, text);
  assert.match(text, /last sync was of timeline 1 .*this master is on timeline 2/, text);
  assert.match(text, new RegExp(`sync lock:.*pid ${old.child.pid} on ${hostname()}.*timeline 1`), text);
  assert.ok(text.includes(p.masterIni), `status must name the old master's config:\n${text}`);

  // The new master's own sync is refused, and says by whom and what to do.
  const refused = runBin("wal-sync", [newIni]);
  assert.equal(refused.status, 4, `${refused.stdout}\n${refused.stderr}`);
  const why = refused.stderr;
  assert.ok(why.includes(`pid ${old.child.pid}`), why);
  assert.ok(why.includes(hostname()), why);
  assert.ok(why.includes(p.master.dataDir), `the refusal must name the old master's data directory:\n${why}`);
  assert.match(why, /timeline 1\b/, why);
  assert.match(why, /this master is on timeline 2/, why);
  assert.ok(why.includes(`wal-ctl ${p.masterIni} stop`), `the refusal must say how to stop it:\n${why}`);

  // So is the new master's daemon, at its start.
  const daemonRefused = runBin("wal-sync", [newIni, "--daemon"], { timeout: 30_000 });
  assert.equal(daemonRefused.status, 4, `${daemonRefused.stdout}\n${daemonRefused.stderr}`);
  assert.match(
    daemonRefused.stderr,
    new RegExp(`pid ${old.child.pid} on .*timeline 1\\b.*this master is on timeline 2`),
  );

  // verify: two writers.
  const v = verifyJson(newIni);
  assert.equal(v.twoWriters.detected, true, JSON.stringify(v.twoWriters));
  assert.ok(
    v.twoWriters.signs.some((x) => x.kind === "sync-lock"),
    JSON.stringify(v.twoWriters),
  );
  assert.ok(
    v.twoWriters.signs.some((x) => x.kind === "sync-state"),
    JSON.stringify(v.twoWriters),
  );
  const vText = runBin("wal-ctl", [newIni, "verify"]).stdout;
  assert.match(vText, /^WARNING: two masters write into this slave directory/m, vText);

  // The old daemon stopped: the new master's sync works and status is normal again.
  const exit = await stopDaemon(old);
  d = undefined;
  assert.equal(exit.status, 0);
  ok(runBin("wal-sync", [newIni]), "the new master's sync once the old daemon is stopped");
  const after = statusJson(newIni);
  assert.equal(after.lastSync?.timeline, 2);
  assert.equal(after.master?.timeline, 2);
  assert.equal(typeof after.master?.bytesBehind, "number");
  assert.ok((after.master?.bytesBehind ?? -1) >= 0);
  assert.equal(after.master?.notComparable, undefined);
  assert.equal(after.syncLock?.present, false);
  const afterText = ok(runBin("wal-ctl", [newIni, "status"]), "status").stdout;
  assert.doesNotMatch(afterText, /timeline 1|another master|ANOTHER MASTER|-\d+ bytes/, afterText);
  assert.match(afterText, /master at: +\S+: \d+ bytes not shipped yet/, afterText);
});
