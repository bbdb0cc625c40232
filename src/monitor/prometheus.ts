/**
 * `status --prometheus`: the status in Prometheus' text exposition format (version 0.0.4), for
 * node_exporter's textfile collector. Base units (seconds, bytes), every name prefixed
 * `walmgr_`, every sample labelled with the job and role. A value status does not know is left
 * out rather than written as NaN, so alert rules do not fire on it; what failed to be read is
 * in walmgr_status_error{part}.
 */
import type { Status } from "./status-report";
import type { ControlFileStatus } from "./slave-dir";

type Labels = Record<string, string>;

interface Family {
  help: string;
  type: "gauge" | "counter";
  samples: { labels: Labels; value: number }[];
}

/** A label value as the format wants it: backslash, double quote and newline escaped. */
export function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** HELP text as the format wants it: backslash and newline escaped. */
function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Families in the order they were first added; samples grouped under their family. */
class Exposition {
  private readonly families = new Map<string, Family>();

  constructor(private readonly base: Labels) {}

  /** Adds a sample; skipped when `value` is null or undefined (unknown). */
  add(
    name: string,
    type: Family["type"],
    help: string,
    value: number | boolean | null | undefined,
    labels: Labels = {},
  ): void {
    if (value === null || value === undefined) return;
    let f = this.families.get(name);
    if (f === undefined) {
      f = { help, type, samples: [] };
      this.families.set(name, f);
    }
    f.samples.push({ labels: { ...this.base, ...labels }, value: typeof value === "boolean" ? Number(value) : value });
  }

  gauge(name: string, help: string, value: number | boolean | null | undefined, labels?: Labels): void {
    this.add(name, "gauge", help, value, labels);
  }

  text(): string {
    const out: string[] = [];
    for (const [name, f] of this.families) {
      out.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`);
      for (const s of f.samples) {
        const labels = Object.entries(s.labels)
          .map(([k, v]) => `${k}="${escapeLabelValue(v)}"`)
          .join(",");
        out.push(`${name}${labels ? `{${labels}}` : ""} ${formatValue(s.value)}`);
      }
    }
    return out.length > 0 ? `${out.join("\n")}\n` : "";
  }
}

const DAEMON_STATES: Status["daemon"]["state"][] = ["running", "stopped", "stale", "unknown", "not running"];

/** Epoch seconds of an ISO time; undefined when it is missing or not a time. */
function epoch(iso: string | null | undefined): number | undefined {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? t / 1000 : undefined;
}

const finite = (n: number | null | undefined): number | undefined =>
  n !== null && n !== undefined && Number.isFinite(n) ? n : undefined;

/** The status as Prometheus text: one `# HELP`/`# TYPE` pair per metric, then its samples. */
export function formatPrometheus(s: Status): string {
  const x = new Exposition({ job: s.job, role: s.role });
  x.gauge("walmgr_up", "1: walmgr's status was gathered (see walmgr_status_error for parts it could not read).", 1);
  x.gauge("walmgr_status_time_seconds", "When this status was gathered (Unix time).", epoch(s.time));
  // One sample per part this side has (a slave has no archiver part): 0 read, 1 not.
  const errors: [string, boolean, string | undefined][] = [
    ["slave_dir", s.slaveDir !== undefined, s.slaveDir?.error],
    ["newest_segment", s.slaveDir !== undefined, s.slaveDir?.newestSegmentError],
    ["partial_segment", s.slaveDir !== undefined, s.slaveDir?.partialError],
    ["archive_ready", s.archiver !== undefined, s.archiver?.readyError],
    ["archiver_stats", s.archiver !== undefined, s.archiver?.statsError],
    ["backups", s.backups !== undefined, s.backups?.error],
  ];
  const errorHelp = "1: this part of the status could not be read (status shows why).";
  for (const [part, has, err] of errors) {
    if (has) x.gauge("walmgr_status_error", errorHelp, err !== undefined, { part });
  }

  for (const state of DAEMON_STATES) {
    x.gauge("walmgr_daemon_state", "The sync daemon's state: 1 for the current one.", s.daemon.state === state, {
      state,
    });
  }
  x.gauge("walmgr_daemon_failures", "The sync daemon's failed attempts in a row.", s.daemon.failures);
  x.gauge(
    "walmgr_daemon_heartbeat_age_seconds",
    "Seconds since the sync daemon's last heartbeat.",
    s.daemon.heartbeat ? finite((Date.parse(s.time) - Date.parse(s.daemon.heartbeat)) / 1000) : undefined,
  );
  x.gauge(
    "walmgr_last_sync_age_seconds",
    "Seconds since the in-progress segment was last shipped to partial_wals.",
    finite(s.lastSync?.secondsAgo),
  );
  x.gauge(
    "walmgr_master_unshipped_bytes",
    "Bytes of WAL the master has written past what was shipped to the slave.",
    s.master?.bytesBehind,
  );
  if (s.role === "master" && s.syncLock?.present !== null && s.syncLock !== undefined) {
    x.gauge(
      "walmgr_sync_lock_other_master",
      "1: the sync lock is held by a sync of another master or timeline (an old master's daemon after a failover); this master's sync is refused.",
      s.syncLock.foreign !== undefined,
    );
  }

  const a = s.archiver;
  if (a) {
    x.gauge("walmgr_archive_ready_count", "WAL files waiting to be archived (.ready files).", a.ready?.count);
    x.gauge(
      "walmgr_archive_ready_oldest_age_seconds",
      "Seconds the oldest WAL file waiting to be archived has waited (0: none waits).",
      a.ready ? (a.ready.oldestAgeSeconds ?? 0) : undefined,
    );
    const st = a.stats;
    x.add(
      "walmgr_archiver_archived_total",
      "counter",
      "WAL files archived since the archiver's stats reset (pg_stat_archiver).",
      st?.archivedCount,
    );
    x.add(
      "walmgr_archiver_failed_total",
      "counter",
      "archive_command failures since the stats reset (stays 0 while a hanging command holds archiving up).",
      st?.failedCount,
    );
    x.gauge(
      "walmgr_archiver_failing",
      "1: archiving fails right now (the last failure is newer than the last success).",
      st?.failingNow,
    );
    x.gauge(
      "walmgr_archiver_last_archived_timestamp_seconds",
      "When the last WAL file was archived (Unix time).",
      epoch(st?.lastArchivedTime),
    );
    x.gauge(
      "walmgr_archiver_last_failed_timestamp_seconds",
      "When archiving last failed (Unix time).",
      epoch(st?.lastFailedTime),
    );
  }

  if (s.periodic) {
    x.gauge(
      "walmgr_periodic_last_start_timestamp_seconds",
      "When periodic_command last started (Unix time).",
      epoch(s.periodic.started),
    );
    x.gauge(
      "walmgr_periodic_last_exit_status",
      "periodic_command's last exit status.",
      typeof s.periodic.status === "number" ? s.periodic.status : undefined,
    );
  }

  for (const r of s.repositories ?? []) {
    const labels = { repository: r.name, location: r.location };
    x.gauge("walmgr_repository_up", "1: the repository could be read.", r.error === undefined, labels);
    x.gauge(
      "walmgr_repository_behind_segments",
      "Segments the repository lacks up to the newest segment of any repository.",
      r.behindSegments,
      labels,
    );
  }

  for (const sb of s.standbys ?? []) {
    const labels = { standby: sb.name };
    x.gauge(
      "walmgr_standby_live",
      "1: the standby's record is recent (it holds WAL back from purging); 0: expired.",
      sb.state === "live",
      labels,
    );
    x.gauge(
      "walmgr_standby_behind_segments",
      "Segments between the standby's restart point and the newest archived segment.",
      sb.behindSegments,
      labels,
    );
    x.gauge(
      "walmgr_standby_behind_bytes",
      "Bytes between the standby's restart point and the newest archived segment.",
      sb.behindBytes,
      labels,
    );
    x.gauge(
      "walmgr_standby_record_age_seconds",
      "Seconds since the standby last recorded itself.",
      sb.ageSeconds,
      labels,
    );
  }

  const d = s.slaveDir;
  if (d) {
    x.gauge(
      "walmgr_newest_segment_age_seconds",
      "Seconds since the newest complete segment was archived (its mtime).",
      d.newestSegment?.ageSeconds,
    );
    x.gauge(
      "walmgr_partial_segment_bytes",
      "Bytes of the in-progress segment shipped to partial_wals.",
      d.partial ? (d.partial.shippedBytes ?? d.partial.bytes) : undefined,
    );
    x.gauge(
      "walmgr_partial_segment_age_seconds",
      "Seconds since the in-progress segment in partial_wals was written.",
      d.partial?.ageSeconds,
    );
    const files: [string, ControlFileStatus][] = [
      ["PAUSE", d.controlFiles.PAUSE],
      ["STOP", d.controlFiles.STOP],
      ["BACKUPLOCK", d.controlFiles.BACKUPLOCK],
    ];
    for (const [file, c] of files) {
      if (c.present === null) continue;
      x.gauge("walmgr_control_file_present", "1: the control file exists (PAUSE, STOP, BACKUPLOCK).", c.present, {
        file,
      });
      x.gauge("walmgr_control_file_age_seconds", "Seconds since the control file was made.", c.ageSeconds, { file });
    }
    const lock = d.controlFiles.BACKUPLOCK;
    if (lock.present !== null) {
      x.gauge(
        "walmgr_backup_lock_stale",
        "1: BACKUPLOCK names a holder that is provably gone (the next backup needs --clear-stale-lock).",
        lock.stale === true,
      );
    }
    x.gauge(
      "walmgr_free_disk_bytes",
      "Bytes free for the owner on the slave directory's file system.",
      d.freeDisk.freeBytes,
    );
    x.gauge("walmgr_disk_size_bytes", "Size of the slave directory's file system in bytes.", d.freeDisk.totalBytes);
  }

  const r = s.replay;
  if (r) {
    const labels = { standby: r.standby };
    x.gauge(
      "walmgr_standby_up",
      "1: the standby server in slave_data answers.",
      r.running && r.inRecovery !== undefined,
      labels,
    );
    x.gauge("walmgr_standby_in_recovery", "1: the standby server is in recovery (not booted).", r.inRecovery, labels);
    x.gauge(
      "walmgr_standby_replay_lag_seconds",
      "Seconds since the commit of the last transaction the standby replayed (also grows while the master is idle).",
      r.replayLagSeconds,
      labels,
    );
    x.gauge(
      "walmgr_standby_replay_behind_bytes",
      "Bytes between the standby's replay position and the end of the newest archived segment.",
      r.behindArchiveBytes,
      labels,
    );
    x.gauge(
      "walmgr_standby_last_replay_timestamp_seconds",
      "Commit time of the last transaction the standby replayed (Unix time).",
      epoch(r.lastReplayTime),
      labels,
    );
    x.gauge(
      "walmgr_standby_paused",
      "1: replay is held (walmgr's PAUSE file, or the server's own pause).",
      r.paused ?? r.pauseFile,
      labels,
    );
  }

  const b = s.backups;
  if (b && b.error === undefined) {
    x.gauge("walmgr_backups_count", "Backup sets in full_backup.", b.count);
    x.gauge("walmgr_backups_bytes", "Total size of the backup sets (from their metadata).", b.totalBytes);
    x.gauge("walmgr_backup_newest_age_seconds", "Seconds since the newest backup set started.", b.newest?.ageSeconds);
    x.gauge(
      "walmgr_backup_oldest_age_seconds",
      "Seconds since the oldest backup set started (how far back a restore can go).",
      b.oldest?.ageSeconds,
    );
  }
  return x.text();
}
