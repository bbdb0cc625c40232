/**
 * `status --prometheus`: the formatter's output read back by Prometheus' own Python parser
 * (python3-prometheus-client), so a format slip (escaping, a family without TYPE, a sample
 * outside its family) fails here rather than in a node_exporter log.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import Ajv2020 from "ajv/dist/2020";
import type { Status } from "../../src/monitor/status-report";
import { escapeLabelValue, formatPrometheus } from "../../src/monitor/prometheus";

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number | string;
}
interface MetricFamily {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

const PARSE = `
import json, math, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    out.append({"name": f.name, "type": f.type, "help": f.documentation, "samples": [
        {"name": s.name, "labels": s.labels, "value": s.value if math.isfinite(s.value) else str(s.value)}
        for s in f.samples]})
print(json.dumps(out))
`;

/** Parses Prometheus text with prometheus_client's parser (a parse error fails the test). */
function parse(text: string): MetricFamily[] {
  const res = spawnSync("/usr/bin/python3", ["-c", PARSE], { input: text, encoding: "utf8" });
  assert.equal(res.status, 0, `the Prometheus parser refused the output:\n${res.stderr}\n${text}`);
  return JSON.parse(res.stdout) as MetricFamily[];
}

function samples(families: MetricFamily[], name: string): Sample[] {
  return families.flatMap((f) => f.samples.filter((s) => s.name === name));
}

function value(families: MetricFamily[], name: string, labels: Record<string, string> = {}): number | string {
  const found = samples(families, name).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.equal(found.length, 1, `one sample ${name} ${JSON.stringify(labels)}: ${JSON.stringify(found)}`);
  return found[0]?.value ?? NaN;
}

const NOW = Date.parse("2026-01-02T03:04:05.000Z");
const ago = (s: number): string => new Date(NOW - s * 1000).toISOString();

/** A master's status with every part filled in. */
function masterStatus(job = "main"): Status {
  return {
    role: "master",
    job,
    time: new Date(NOW).toISOString(),
    daemon: {
      state: "running",
      pid: 42,
      pidfile: "/run/walmgr.pid",
      detail: "running (pid 42)",
      heartbeat: ago(3),
      loopDelay: 1,
      mode: "record",
      failures: 0,
    },
    lastSync: { name: "000000010000000000000007", offset: 8192, lsn: "0/7002000", time: ago(2), secondsAgo: 2 },
    master: { lsn: "0/7003000", bytesBehind: 4096, asOf: ago(0) },
    standbys: [
      {
        name: "alpha",
        restartPoint: "000000010000000000000005",
        updated: ago(60),
        ageSeconds: 60,
        state: "live",
        behindSegments: 1,
        behindBytes: 16777216,
      },
      {
        name: "beta",
        restartPoint: null,
        updated: null,
        ageSeconds: null,
        state: "expired",
        behindSegments: null,
        behindBytes: null,
      },
    ],
    repositories: [
      {
        name: "completed_wals",
        location: "/slave/logs.complete",
        newestSegment: "000000010000000000000006",
        behindSegments: 0,
      },
      {
        name: "also_archive_to[1]",
        location: "backup:/walshipping/logs.complete",
        behindSegments: null,
        error: "down",
      },
    ],
    newestSegment: "000000010000000000000006",
    archiver: {
      ready: { count: 3, oldest: "000000010000000000000007", oldestAgeSeconds: 12.5 },
      stats: {
        archivedCount: 6,
        lastArchivedWal: "000000010000000000000006",
        lastArchivedTime: ago(100),
        failedCount: 4,
        lastFailedWal: "000000010000000000000007",
        lastFailedTime: ago(1),
        statsReset: ago(3600),
        failingNow: true,
      },
    },
    slaveDir: {
      location: "/slave",
      newestSegment: { name: "000000010000000000000006", bytes: 16777216, mtime: ago(100), ageSeconds: 100 },
      partial: {
        name: "000000010000000000000007",
        bytes: 16777216,
        mtime: ago(2),
        ageSeconds: 2,
        shippedBytes: 8192,
        lsn: "0/7002000",
      },
      controlFiles: {
        PAUSE: { present: true, path: "/slave/logs.complete/PAUSE", mtime: ago(30), ageSeconds: 30 },
        STOP: { present: false, path: "/slave/logs.complete/STOP" },
        BACKUPLOCK: {
          present: true,
          path: "/slave/logs.complete/BACKUPLOCK",
          mtime: ago(7200),
          ageSeconds: 7200,
          holder: { pid: 999999, host: "db1", started: ago(7200), command: "wal-backup master.ini" },
          verdict: "stale",
          stale: true,
          why: "process 999999 is gone",
        },
      },
      freeDisk: { path: "/slave", freeBytes: 5e9, totalBytes: 2e10 },
    },
    backups: {
      location: "/slave/data.master",
      count: 2,
      totalBytes: 300,
      withoutMetadata: 0,
      newest: { name: "data.master", startTime: ago(3600), stopTime: ago(3500), bytes: 100, ageSeconds: 3600 },
      oldest: { name: "data.master.0", startTime: ago(90000), stopTime: ago(89000), bytes: 200, ageSeconds: 90000 },
    },
  };
}

test("every metric has HELP and TYPE, a walmgr_ name, and the job and role labels", () => {
  const text = formatPrometheus(masterStatus());
  const families = parse(text);
  assert.ok(families.length > 20, `${families.length} families`);
  for (const f of families) {
    assert.match(f.name, /^walmgr_[a-z_]+$/);
    assert.ok(f.help.length > 0, `${f.name} has help`);
    assert.ok(["gauge", "counter"].includes(f.type), `${f.name}: ${f.type}`);
    assert.ok(text.includes(`# TYPE ${f.type === "counter" ? `${f.name}_total` : f.name} ${f.type}\n`));
    for (const s of f.samples) assert.deepEqual([s.labels.job, s.labels.role], ["main", "master"], s.name);
  }
  // Each family once: a second HELP for one name is a format error other parsers refuse.
  const helps = text.split("\n").filter((l) => l.startsWith("# HELP "));
  assert.equal(new Set(helps.map((l) => l.split(" ")[2])).size, helps.length);
});

test("the values of a master's status, in base units", () => {
  const f = parse(formatPrometheus(masterStatus()));
  assert.equal(value(f, "walmgr_up"), 1);
  assert.equal(value(f, "walmgr_status_time_seconds"), NOW / 1000);
  assert.equal(value(f, "walmgr_archive_ready_count"), 3);
  assert.equal(value(f, "walmgr_archive_ready_oldest_age_seconds"), 12.5);
  assert.equal(value(f, "walmgr_archiver_failed_total"), 4);
  assert.equal(value(f, "walmgr_archiver_archived_total"), 6);
  assert.equal(f.find((x) => x.name === "walmgr_archiver_failed")?.type, "counter");
  assert.equal(value(f, "walmgr_archiver_failing"), 1);
  assert.equal(value(f, "walmgr_archiver_last_failed_timestamp_seconds"), NOW / 1000 - 1);
  assert.equal(value(f, "walmgr_daemon_state", { state: "running" }), 1);
  assert.equal(value(f, "walmgr_daemon_state", { state: "not running" }), 0);
  assert.equal(value(f, "walmgr_daemon_heartbeat_age_seconds"), 3);
  assert.equal(value(f, "walmgr_last_sync_age_seconds"), 2);
  assert.equal(value(f, "walmgr_master_unshipped_bytes"), 4096);
  assert.equal(value(f, "walmgr_newest_segment_age_seconds"), 100);
  assert.equal(value(f, "walmgr_partial_segment_bytes"), 8192);
  assert.equal(value(f, "walmgr_control_file_present", { file: "PAUSE" }), 1);
  assert.equal(value(f, "walmgr_control_file_present", { file: "STOP" }), 0);
  assert.equal(value(f, "walmgr_control_file_age_seconds", { file: "PAUSE" }), 30);
  assert.equal(samples(f, "walmgr_control_file_age_seconds").filter((s) => s.labels.file === "STOP").length, 0);
  assert.equal(value(f, "walmgr_backup_lock_stale"), 1);
  assert.equal(value(f, "walmgr_free_disk_bytes"), 5e9);
  assert.equal(value(f, "walmgr_disk_size_bytes"), 2e10);
  assert.equal(value(f, "walmgr_standby_behind_segments", { standby: "alpha" }), 1);
  assert.equal(value(f, "walmgr_standby_behind_bytes", { standby: "alpha" }), 16777216);
  assert.equal(value(f, "walmgr_standby_live", { standby: "beta" }), 0);
  assert.equal(samples(f, "walmgr_standby_behind_segments").length, 1, "an unknown lag is left out, not NaN");
  assert.equal(value(f, "walmgr_repository_up", { repository: "also_archive_to[1]" }), 0);
  assert.equal(value(f, "walmgr_repository_behind_segments", { repository: "completed_wals" }), 0);
  assert.equal(value(f, "walmgr_backups_count"), 2);
  assert.equal(value(f, "walmgr_backups_bytes"), 300);
  assert.equal(value(f, "walmgr_backup_newest_age_seconds"), 3600);
  assert.equal(value(f, "walmgr_backup_oldest_age_seconds"), 90000);
  assert.equal(value(f, "walmgr_status_error", { part: "slave_dir" }), 0);
});

/** The slave's status of these tests. */
function slaveStatus(): Status {
  return {
    role: "slave",
    job: "slave",
    time: new Date(NOW).toISOString(),
    daemon: { state: "unknown", detail: "no daemon has shipped here" },
    replay: {
      standby: "alpha",
      running: true,
      inRecovery: true,
      replayLsn: "0/6000000",
      receiveLsn: null,
      lastReplayTime: ago(42),
      replayLagSeconds: 42,
      paused: true,
      pauseState: "PAUSE file",
      serverPauseState: "not paused",
      pauseFile: true,
      behindArchiveBytes: 16777216,
    },
  };
}

test("a slave's standby server: replay lag, bytes behind, paused", () => {
  const s = slaveStatus();
  const f = parse(formatPrometheus(s));
  assert.equal(value(f, "walmgr_standby_up", { standby: "alpha" }), 1);
  assert.equal(value(f, "walmgr_standby_replay_lag_seconds", { standby: "alpha", role: "slave" }), 42);
  assert.equal(value(f, "walmgr_standby_replay_behind_bytes", { standby: "alpha" }), 16777216);
  assert.equal(value(f, "walmgr_standby_paused", { standby: "alpha" }), 1);
  assert.equal(samples(f, "walmgr_archive_ready_count").length, 0, "no archiver part on a slave");

  const down = parse(formatPrometheus({ ...s, replay: { standby: "alpha", running: false, reason: "no server" } }));
  assert.equal(value(down, "walmgr_standby_up", { standby: "alpha" }), 0);
  assert.equal(samples(down, "walmgr_standby_replay_lag_seconds").length, 0);
});

test("label values with quotes, backslashes and newlines are escaped and read back exactly", () => {
  const job = 'we"ird\\job\nname';
  assert.equal(escapeLabelValue(job), 'we\\"ird\\\\job\\nname');
  const s = masterStatus(job);
  s.standbys = [{ ...(s.standbys?.[0] as NonNullable<Status["standbys"]>[number]), name: 'a "b"\\c\nd' }];
  const text = formatPrometheus(s);
  assert.ok(!text.includes('we"ird'), "the raw quote is not in the output");
  const f = parse(text);
  for (const fam of f) for (const x of fam.samples) assert.equal(x.labels.job, job);
  assert.equal(value(f, "walmgr_standby_behind_segments", { standby: 'a "b"\\c\nd' }), 1);
});

test("the statuses of these tests fit schemas/status.schema.json (the schema and the types agree)", () => {
  const schema = JSON.parse(
    readFileSync(join(__dirname, "..", "..", "..", "schemas", "status.schema.json"), "utf8"),
  ) as object;
  const validate = new Ajv2020({ allErrors: true }).compile(schema);
  for (const s of [masterStatus(), slaveStatus()]) {
    assert.ok(validate(s), JSON.stringify(validate.errors, null, 1));
  }
  const bad = { ...masterStatus(), surprise: 1 };
  assert.ok(!validate(bad), "no unknown top-level field");
  const slaveWithArchiver = { ...slaveStatus(), archiver: masterStatus().archiver };
  assert.ok(!validate(slaveWithArchiver), "a slave has no archiver part");
});
