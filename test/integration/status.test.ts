/**
 * `wal-ctl status` on real PostgreSQL 15, one pair for the whole file: archiving that fails
 * (archive_command = 'false') shows as a growing .ready backlog and pg_stat_archiver failing
 * now, in --json (valid against schemas/status.schema.json) and in --prometheus (read back by
 * Prometheus' own parser); restored, the backlog drains. On the slave, a restored standby's
 * replay position and lag; `pause` shows the PAUSE file and the standby paused, and so does the
 * server's own pg_wal_replay_pause(); a BACKUPLOCK naming a dead process shows as stale.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Ajv2020 from "ajv/dist/2020";
import type { Status } from "../../src/monitor/status-report";
import { REPO_ROOT, removeTempDir, runBin, waitFor, ok } from "../helpers/env";
import { createReplayingPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;

const validate = new Ajv2020({ allErrors: true }).compile<Status>(
  JSON.parse(readFileSync(join(REPO_ROOT, "schemas", "status.schema.json"), "utf8")) as object,
);

/** `status --json` of `ini`, checked against the schema. */
function status(ini: string): Status {
  const res = ok(runBin("wal-ctl", [ini, "status", "--json"]), "status --json");
  const s = JSON.parse(res.stdout) as unknown;
  assert.ok(
    validate(s),
    `status --json does not fit the schema: ${JSON.stringify(validate.errors, null, 1)}\n${res.stdout}`,
  );
  return s;
}

const PARSE = `
import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps([{"name": s.name, "labels": s.labels, "value": s.value}
    for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]))
`;

/** `status --prometheus` of `ini`, read by Prometheus' own parser: name → samples. */
function prometheus(ini: string): Map<string, { labels: Record<string, string>; value: number }[]> {
  const text = ok(runBin("wal-ctl", [ini, "status", "--prometheus"]), "status --prometheus").stdout;
  const res = spawnSync("/usr/bin/python3", ["-c", PARSE], { input: text, encoding: "utf8" });
  assert.equal(res.status, 0, `the Prometheus parser refused:\n${res.stderr}\n${text}`);
  const out = new Map<string, { labels: Record<string, string>; value: number }[]>();
  for (const s of JSON.parse(res.stdout) as { name: string; labels: Record<string, string>; value: number }[]) {
    out.set(s.name, [...(out.get(s.name) ?? []), s]);
  }
  return out;
}

/** Polls `status --json` of `ini` until `ready` holds for it; returns that status. */
async function statusWhen(what: string, ini: string, ready: (s: Status) => boolean, ms = 60_000): Promise<Status> {
  let last: Status | undefined;
  await waitFor(
    what,
    () => {
      last = status(ini);
      return ready(last);
    },
    ms,
  );
  assert.ok(last);
  return last;
}

let round = 0;
/** A little WAL and a segment switch on the master; returns the tag of the rows written. */
async function switchWal(): Promise<string> {
  const tag = `r${++round}`;
  await p.master.query("INSERT INTO t (tag) VALUES ($1)", [tag]);
  await p.master.query("SELECT pg_switch_wal()");
  return tag;
}

async function setArchiveCommand(value: string | undefined): Promise<void> {
  await p.master.query(
    value === undefined ? "ALTER SYSTEM RESET archive_command" : `ALTER SYSTEM SET archive_command = '${value}'`,
  );
  await p.master.query("SELECT pg_reload_conf()");
  const want = value ?? "";
  await waitFor(`archive_command to be reloaded`, async () => {
    const now = await p.master.value<string>("SHOW archive_command");
    return value === undefined ? now !== "false" : now === want;
  });
}

before(async () => {
  p = await createReplayingPair("status");
});

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("status shows archiving trouble, replay, pauses and a stale lock", async (t) => {
  await t.test("archiving fails: the .ready backlog grows and pg_stat_archiver says failing now", async () => {
    const healthy = status(p.masterIni);
    assert.equal(healthy.archiver?.stats?.failingNow, false);
    assert.ok((healthy.archiver?.stats?.archivedCount ?? 0) > 0, "archived before");
    await setArchiveCommand("false");
    await switchWal();
    const first = await statusWhen(
      "archiving to fail",
      p.masterIni,
      (s) => (s.archiver?.ready?.count ?? 0) > 0 && s.archiver?.stats?.failingNow === true,
    );
    const stats = first.archiver?.stats;
    assert.ok((stats?.failedCount ?? 0) > 0, JSON.stringify(stats));
    assert.match(stats?.lastFailedWal ?? "", /^[0-9A-F]{24}$/);
    assert.ok((first.archiver?.ready?.oldestAgeSeconds ?? -1) >= 0);
    assert.match(first.archiver?.ready?.oldest ?? "", /^[0-9A-F]{24}$/);
    const before = first.archiver?.ready?.count ?? 0;
    await switchWal();
    await switchWal();
    const later = await statusWhen("the backlog to grow", p.masterIni, (s) => (s.archiver?.ready?.count ?? 0) > before);
    assert.equal(later.archiver?.stats?.failingNow, true);

    const m = prometheus(p.masterIni);
    const ready = m.get("walmgr_archive_ready_count")?.[0];
    assert.ok((ready?.value ?? 0) > 0, JSON.stringify(ready));
    assert.deepEqual([ready?.labels.job, ready?.labels.role], ["master", "master"]);
    assert.equal(m.get("walmgr_archiver_failing")?.[0]?.value, 1);
    assert.ok((m.get("walmgr_archiver_failed_total")?.[0]?.value ?? 0) > 0);

    const text = ok(runBin("wal-ctl", [p.masterIni, "status"]), "status").stdout;
    assert.match(text, /archiving: +FAILING NOW: [0-9A-F]{24} failed at /);
    assert.match(text, /ready backlog: +\d+ file\(s\) wait to be archived, the oldest \([0-9A-F]{24}\) for /);

    const both = runBin("wal-ctl", [p.masterIni, "status", "--json", "--prometheus"]);
    assert.equal(both.status, 2, both.stderr);
    assert.match(both.stderr, /--json and --prometheus/);
  });

  await t.test("archiving restored: the backlog drains", async () => {
    await setArchiveCommand(undefined);
    const s = await statusWhen(
      "the backlog to drain",
      p.masterIni,
      (now) => now.archiver?.ready?.count === 0 && now.archiver.stats?.failingNow === false,
      30_000,
    );
    assert.equal(s.archiver?.ready?.oldest, null);
    const text = ok(runBin("wal-ctl", [p.masterIni, "status"]), "status").stdout;
    assert.match(text, /archiving: +ok: last archived/);
    assert.match(text, /ready backlog: +nothing waits to be archived/);
  });

  await t.test("the slave: the standby's replay, the slave directory, the backups", async () => {
    const tag = await switchWal();
    await waitFor(
      "the standby to replay the archived segments",
      async () => Number(await p.slave.value<string>("SELECT count(*) FROM t WHERE tag = $1", [tag])) === 1,
      30_000,
      100,
    );
    const s = status(p.slaveIni);
    const r = s.replay;
    assert.equal(r?.running, true, JSON.stringify(r));
    assert.equal(r?.inRecovery, true);
    assert.ok((r?.standby ?? "").length > 0, "named by its standby name");
    assert.match(r?.replayLsn ?? "", /^[0-9A-F]+\/[0-9A-F]+$/);
    assert.ok(r?.lastReplayTime, "a transaction was replayed");
    assert.ok((r?.replayLagSeconds ?? -1) >= 0);
    assert.equal(typeof r?.behindArchiveBytes, "number");
    assert.equal(r?.paused, false);
    assert.equal(r?.pauseState, "not paused");
    assert.equal(s.slaveDir?.controlFiles.PAUSE.present, false);
    assert.equal(s.slaveDir?.controlFiles.BACKUPLOCK.present, false);
    assert.match(s.slaveDir?.newestSegment?.name ?? "", /^[0-9A-F]{24}$/);
    assert.equal(s.slaveDir?.newestSegment?.name, s.newestSegment);
    assert.ok((s.slaveDir?.freeDisk.freeBytes ?? 0) > 0, JSON.stringify(s.slaveDir?.freeDisk));
    assert.equal(s.backups?.count, 1);
    assert.equal(s.backups?.newest?.name, "data.master");
    assert.ok((s.backups?.totalBytes ?? 0) > 1_000_000, "a set of a fresh cluster is some MB");
    assert.equal(s.archiver, undefined, "no archiver part on the slave");
  });

  await t.test("pause: the PAUSE file and the standby paused; the server's own pause too", async () => {
    ok(runBin("wal-ctl", [p.slaveIni, "pause"]), "pause");
    const s = status(p.slaveIni);
    assert.equal(s.slaveDir?.controlFiles.PAUSE.present, true);
    assert.ok((s.slaveDir?.controlFiles.PAUSE.ageSeconds ?? -1) >= 0);
    assert.equal(s.replay?.paused, true);
    assert.equal(s.replay?.pauseFile, true);
    // wal-restore holds WAL back; the server itself is not paused.
    assert.equal(s.replay?.serverPauseState, "not paused");
    assert.equal(s.replay?.pauseState, "PAUSE file");
    assert.match(
      ok(runBin("wal-ctl", [p.slaveIni, "status"]), "status").stdout,
      /PAUSE PRESENT for .*\n(.|\n)*PAUSED \(PAUSE file\)/,
    );
    const m = prometheus(p.slaveIni);
    assert.equal(m.get("walmgr_standby_paused")?.[0]?.value, 1);
    assert.equal(m.get("walmgr_control_file_present")?.find((x) => x.labels.file === "PAUSE")?.value, 1);
    ok(runBin("wal-ctl", [p.slaveIni, "continue"]), "continue");

    await p.slave.query("SELECT pg_wal_replay_pause()");
    // Paused once the startup process reaches the next record: give it one.
    await switchWal();
    const paused = await statusWhen(
      "the server's pause to take hold",
      p.slaveIni,
      (now) => now.replay?.serverPauseState === "paused",
    );
    assert.equal(paused.replay?.paused, true);
    assert.equal(paused.replay?.pauseFile, false);
    assert.equal(paused.replay?.pauseState, "paused");
    await p.slave.query("SELECT pg_wal_replay_resume()");
  });

  await t.test("a BACKUPLOCK naming a dead process is stale, from both sides", () => {
    const dead = spawnSync("true").pid;
    const lock = join(p.slaveDir, "logs.complete", "BACKUPLOCK");
    writeFileAs(
      lock,
      `${JSON.stringify({ pid: dead, host: hostname(), started: new Date().toISOString(), command: "wal-backup master.ini" })}\n`,
    );
    try {
      for (const ini of [p.slaveIni, p.masterIni]) {
        const l = status(ini).slaveDir?.controlFiles.BACKUPLOCK;
        assert.equal(l?.present, true);
        assert.equal(l?.stale, true, JSON.stringify(l));
        assert.equal(l?.verdict, "stale");
        assert.equal(l?.holder?.pid, dead);
        assert.match(l?.why ?? "", /gone/);
      }
      assert.equal(prometheus(p.masterIni).get("walmgr_backup_lock_stale")?.[0]?.value, 1);
      assert.match(ok(runBin("wal-ctl", [p.slaveIni, "status"]), "status").stdout, /BACKUPLOCK PRESENT .*STALE/);
    } finally {
      rmSync(lock, { force: true });
    }
  });
});
