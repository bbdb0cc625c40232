/** `status`'s text: the gathered report (monitor/status-report.ts) as rows for a person. */
import type { SyncLockStatus } from "../../monitor/sync-lock";
import { formatAge } from "../../slavedir/standbys";
import { formatBytes } from "../../progress";
import { STUCK_AFTER_SECONDS } from "../../monitor/archiver";
import type { BackupsStatus } from "../../monitor/backups";
import type { ControlFileStatus, SlaveDirStatus } from "../../monitor/slave-dir";
import type { ArchiverStatus, ReplayStatus, Status } from "../../monitor/status-report";

/** 1536 → "1.5 KiB", 512 → "512 bytes": status's look of the one formatBytes. */
const sizeText = (n: number): string => formatBytes(n, { small: "bytes", digits: "one" });

function archiverRows(a: ArchiverStatus, row: (k: string, v: string) => void): void {
  const st = a.stats;
  if (st === null) {
    row("archiving", `pg_stat_archiver not read: ${a.statsError ?? "master_db is not set"}`);
  } else {
    const counts = `${st.archivedCount} archived, ${st.failedCount} failed since ${st.statsReset ?? "the stats reset"}`;
    if (st.failingNow) {
      row("archiving", `FAILING NOW: ${st.lastFailedWal ?? "?"} failed at ${st.lastFailedTime ?? "?"} (${counts})`);
    } else {
      const last = st.lastArchivedWal ? `last archived ${st.lastArchivedWal} at ${st.lastArchivedTime ?? "?"}` : "";
      row("archiving", `ok${last ? `: ${last}` : ""} (${counts})`);
    }
  }
  const r = a.ready;
  if (r === null) {
    row("ready backlog", `not read: ${a.readyError ?? "?"}`);
  } else if (r.count === 0) {
    row("ready backlog", "nothing waits to be archived");
  } else {
    const stuck =
      st !== null && !st.failingNow && (r.oldestAgeSeconds ?? 0) > STUCK_AFTER_SECONDS
        ? "; PostgreSQL records no failure: is archive_command hanging, or the archiver not running?"
        : "";
    row(
      "ready backlog",
      `${r.count} file(s) wait to be archived, the oldest (${r.oldest ?? "?"}) for ${formatAge(r.oldestAgeSeconds ?? NaN)}${stuck}`,
    );
  }
}

/** The sync lock's row: who holds it, and whether that is another master's sync (then what to do). */
function syncLockText(l: SyncLockStatus): string {
  if (l.present === null) return `unknown (${l.error ?? "?"})`;
  if (!l.present) return "free (no sync holds it)";
  const h = l.holder;
  if (!h) return `${l.path} names no holder`;
  const what = [
    h.masterData !== undefined ? `${h.host}:${h.masterData}` : undefined,
    h.timeline !== undefined ? `timeline ${h.timeline}` : undefined,
  ].filter((x) => x !== undefined);
  const who = `pid ${h.pid} on ${h.host} (${h.command}), started ${h.started}${what.length ? `, shipping ${what.join(", ")}` : ""}`;
  const state =
    l.verdict === "stale"
      ? `STALE (${l.why ?? "?"}): the next sync clears it`
      : l.verdict === "live"
        ? "running"
        : `cannot tell whether it runs: ${l.why ?? "?"}`;
  if (l.foreign === undefined) return `held by ${who}; ${state}`;
  const stop = h.config !== undefined ? `\`wal-ctl ${h.config} stop\` on ${h.host}` : `stop it on ${h.host}`;
  return (
    `HELD BY ANOTHER MASTER'S SYNC: ${who}; ${state}; ${l.foreign}. This master's sync is refused (exit 4) while it holds it: ` +
    `${stop}${l.verdict === "stale" ? "" : `, or kill ${h.pid} there`}`
  );
}

function controlText(name: string, c: ControlFileStatus): string {
  if (c.present === null) return `${name} unknown (${c.error ?? "?"})`;
  if (!c.present) return `${name} absent`;
  return `${name} PRESENT${c.ageSeconds !== undefined ? ` for ${formatAge(c.ageSeconds)}` : ""}`;
}

function slaveDirRows(d: SlaveDirStatus, row: (k: string, v: string) => void, more: (v: string) => void): void {
  if (d.error !== undefined) {
    // Everything below would repeat the same error.
    row("slave dir", `${d.location}: UNREADABLE (${d.error})`);
    return;
  }
  row("slave dir", d.location);
  if (d.newestSegment) {
    const n = d.newestSegment;
    row("newest segment", `${n.name}, archived ${formatAge(n.ageSeconds ?? NaN)} ago`);
  } else {
    row("newest segment", d.newestSegmentError !== undefined ? `not read: ${d.newestSegmentError}` : "none archived");
  }
  if (d.partial) {
    const p = d.partial;
    const shipped =
      p.shippedBytes === null ? "" : `, ${p.shippedBytes} bytes shipped${p.lsn ? ` (up to ${p.lsn})` : ""}`;
    row("partial segment", `${p.name}${shipped}, written ${formatAge(p.ageSeconds ?? NaN)} ago`);
    if (p.otherMaster !== undefined) more(`partial segment ${p.otherMaster}`);
  } else if (d.partialError !== undefined) {
    row("partial segment", `not read: ${d.partialError}`);
  }
  const c = d.controlFiles;
  row("control files", [controlText("PAUSE", c.PAUSE), controlText("STOP", c.STOP)].join(", "));
  const lock = c.BACKUPLOCK;
  if (lock.present === true) {
    const h = lock.holder;
    const who = h ? `pid ${h.pid} on ${h.host}, started ${h.started}, command: ${h.command}` : "names no holder";
    const verdict = lock.stale
      ? `STALE (${lock.why ?? "?"}): no backup runs; the next backup clears it with --clear-stale-lock`
      : lock.verdict === "live"
        ? "a backup is running"
        : `cannot tell whether it runs: ${lock.why ?? "?"}`;
    more(`${controlText("BACKUPLOCK", lock)}: ${who}; ${verdict}`);
  } else {
    more(controlText("BACKUPLOCK", lock));
  }
  const f = d.freeDisk;
  row(
    "free disk",
    f.freeBytes === null
      ? `unknown (${f.reason ?? "?"})`
      : `${sizeText(f.freeBytes)} of ${sizeText(f.totalBytes ?? 0)} free (${f.path})`,
  );
}

function replayText(r: ReplayStatus): string {
  if (!r.running) {
    return `${r.standby}: NOT RUNNING (${r.reason ?? "?"})${r.pauseFile ? "; PAUSE file present" : ""}`;
  }
  if (r.inRecovery === undefined) return `${r.standby}: running, replay not read (${r.reason ?? "?"})`;
  if (!r.inRecovery) return `${r.standby}: running, not in recovery (booted), replayed up to ${r.replayLsn ?? "?"}`;
  const parts = [`${r.standby}: running, in recovery, replayed up to ${r.replayLsn ?? "?"}`];
  if (r.lastReplayTime) {
    parts.push(`last transaction replayed committed ${formatAge(r.replayLagSeconds ?? NaN)} ago (${r.lastReplayTime})`);
  } else {
    parts.push("no transaction replayed yet");
  }
  if (r.receiveLsn) parts.push(`received (streaming) up to ${r.receiveLsn}`);
  if (r.behindArchiveBytes != null) parts.push(`${r.behindArchiveBytes} bytes behind the archive`);
  parts.push(r.paused ? `PAUSED (${r.pauseState ?? "?"})` : "not paused");
  return parts.join("; ");
}

function backupsText(b: BackupsStatus): string {
  if (b.error !== undefined) return `${b.location}: not read (${b.error})`;
  if (b.count === 0) return `none in ${b.location}`;
  const set = (s: NonNullable<BackupsStatus["newest"]>): string =>
    `${s.name} started ${s.startTime ?? "?"}${s.ageSeconds !== null ? ` (${formatAge(s.ageSeconds)} ago)` : ""}`;
  const unknown = b.withoutMetadata > 0 ? ` (+${b.withoutMetadata} set(s) of unknown size)` : "";
  const oldest = b.count > 1 && b.oldest ? `; oldest ${set(b.oldest)}` : "";
  return `${b.count} set(s), ${sizeText(b.totalBytes)}${unknown}; newest ${b.newest ? set(b.newest) : "?"}${oldest}`;
}

/** The text `status` prints: a row per subject, its continuation lines indented under it. */
export function statusText(s: Status): string {
  const lines: string[] = [];
  const row = (k: string, v: string): number => lines.push(`${`${k}:`.padEnd(17)}${v}`);
  const more = (v: string): number => lines.push(`${"".padEnd(17)}${v}`);
  row("role", s.role);
  row("sync daemon", s.daemon.detail);
  if (s.daemon.mode !== undefined) {
    more(
      `${s.daemon.mode} mode, loop_delay ${s.daemon.loopDelay ?? "?"} s, last heartbeat ${s.daemon.heartbeat ?? "?"}`,
    );
  }
  if (s.daemon.failures) more(`${s.daemon.failures} failed attempt(s) in a row; last: ${s.daemon.lastError ?? "?"}`);
  if (s.lastSync) {
    const at = s.lastSync.lsn ? `up to ${s.lastSync.lsn}` : `${s.lastSync.offset} bytes (whole file)`;
    row("last sync", `${s.lastSync.name} ${at} at ${s.lastSync.time} (${s.lastSync.secondsAgo.toFixed(1)} s ago)`);
    if (s.lastSync.otherMaster !== undefined) more(s.lastSync.otherMaster);
  } else {
    row("last sync", "never (no sync state in partial_wals)");
  }
  if (s.master) {
    const m = s.master;
    row(
      "master at",
      m.notComparable !== undefined
        ? `${m.lsn}${m.timeline !== undefined ? ` on timeline ${m.timeline}` : ""} (as of ${m.asOf}): not compared with the last sync${m.notComparable === s.lastSync?.otherMaster ? " (see above)" : `: ${m.notComparable}`}`
        : `${m.lsn}: ${m.bytesBehind === null ? "?" : m.bytesBehind} bytes not shipped yet (as of ${m.asOf})`,
    );
  }
  if (s.syncLock) row("sync lock", syncLockText(s.syncLock));
  if (s.archiver) archiverRows(s.archiver, row);
  if (s.periodic) {
    const p = s.periodic;
    const how =
      p.ended === undefined
        ? "running or interrupted"
        : p.signal
          ? `killed by ${p.signal}`
          : `status ${p.status ?? "?"}`;
    row("periodic", `last started ${p.started} (${how})`);
  }
  for (const [i, r] of (s.repositories ?? []).entries()) {
    const text = `${r.name} ${r.location}: ${
      r.error !== undefined
        ? `UNREACHABLE (${r.error})`
        : r.newestSegment === undefined
          ? "no segment archived"
          : `newest ${r.newestSegment}, ${r.behindSegments === 0 ? "up to date" : `${r.behindSegments ?? "?"} segment(s) behind`}`
    }`;
    if (i === 0) row("repositories", text);
    else more(text);
  }
  if (s.standbys !== undefined) {
    if (s.standbys.length === 0) row("standbys", "none recorded in completed_wals");
    for (const [i, sb] of s.standbys.entries()) {
      const behind =
        sb.behindSegments === null
          ? "lag unknown"
          : `${sb.behindSegments} segment(s), ${sb.behindBytes ?? 0} bytes behind ${s.newestSegment ?? "?"}`;
      const where = [sb.host, sb.slaveData].filter((x) => x !== undefined).join(":");
      const text =
        `${sb.name}${where ? ` (${where})` : ""}: ${sb.state}, restart point ${sb.restartPoint ?? "unreadable"}, ` +
        `${behind}, recorded ${formatAge(sb.ageSeconds ?? NaN)} ago`;
      if (i === 0) row("standbys", text);
      else more(text);
    }
  }
  if (s.slaveDir) slaveDirRows(s.slaveDir, row, more);
  if (s.replay) row("standby server", replayText(s.replay));
  if (s.backups) row("backups", backupsText(s.backups));
  return lines.join("\n");
}
