/**
 * The shape of a status report: what `status` gathers (command/status/run.ts) and prints as text,
 * as JSON (schemas/status.schema.json) or for Prometheus (prometheus.ts). Its own file, so that
 * the formatters need not import the command that calls them.
 */
import type { PeriodicState } from "../slavedir/periodic-state";
import type { SyncState } from "../slavedir/sync-state";
import type { ArchiverStats, ReadyBacklog } from "./archiver";
import type { BackupsStatus } from "./backups";
import type { SlaveDirStatus } from "./slave-dir";
import type { StandbyReplay } from "./standby-replay";
import type { SyncLockStatus } from "./sync-lock";

/**
 * What `wal-ctl CONFIG status --json` prints (schemas/status.schema.json describes it). Fields
 * are only ever added: scripts rely on the existing ones. A part that cannot be read is
 * reported in its own field (`error`, `…Error`, `reason`), never by failing the command.
 */
export interface Status {
  role: "master" | "slave";
  /** The config's job name (job_name, or the config file's name). */
  job: string;
  /** When this status was gathered (ISO time). */
  time: string;
  daemon: {
    /** running: the pidfile's process is alive (master) or the heartbeat is recent (slave). */
    state: "running" | "stopped" | "stale" | "unknown" | "not running";
    pid?: number;
    host?: string;
    pidfile?: string;
    detail: string;
    heartbeat?: string;
    loopDelay?: number;
    mode?: string;
    failures?: number;
    lastError?: string;
  };
  /**
   * partial_wals/.walmgr-sync-state, with its timeline (from the segment's name for states of
   * older versions) and, on the master, `otherMaster` when it was written by a sync of another
   * master or timeline than this one (an old master's daemon after a failover): why.
   */
  lastSync?: SyncState & { secondsAgo: number; otherMaster?: string };
  /**
   * The master's WAL position (from the database, else the daemon's heartbeat) and how far it
   * is ahead of the last sync. `bytesBehind` is null when that cannot be told, and never
   * negative: positions of another timeline or database system are not compared
   * (`notComparable` says why).
   */
  master?: { lsn: string; bytesBehind: number | null; asOf: string; timeline?: number; notComparable?: string };
  /** partial_wals/.walmgr-sync-lock: who holds it, and on the master whether that is another master's sync. */
  syncLock?: SyncLockStatus;
  periodic?: PeriodicState;
  /** Each standby recorded in completed_wals (see standbys.ts), with its lag. */
  standbys?: StandbyStatus[];
  /** With also_archive_to: each repository, its newest segment and how far it is behind the newest of all. */
  repositories?: RepositoryStatus[];
  /** The newest complete segment in completed_wals, which the lags are measured against. */
  newestSegment?: string;
  /** Master: what waits to be archived, and PostgreSQL's archiver counters. */
  archiver?: ArchiverStatus;
  /** The slave directory (from the master too, when its driver reaches it). */
  slaveDir?: SlaveDirStatus;
  /** Slave: the standby server in slave_data, and how far behind its replay is. */
  replay?: ReplayStatus;
  /** The backup sets in full_backup. */
  backups?: BackupsStatus;
}

/** The master's archiving: the .ready backlog (master_data) and pg_stat_archiver (master_db). */
export interface ArchiverStatus {
  ready: ReadyBacklog | null;
  readyError?: string;
  stats: ArchiverStats | null;
  statsError?: string;
}

/** The standby server's replay, under its standby name. */
export interface ReplayStatus extends StandbyReplay {
  standby: string;
  /** Bytes between its replay position and the end of the newest archived segment (null: unknown). */
  behindArchiveBytes?: number | null;
}

/** One standby recorded in completed_wals, and how far behind it is. */
export interface StandbyStatus {
  name: string;
  /** Its restart point (%r); null when its record cannot be read. */
  restartPoint: string | null;
  host?: string;
  slaveData?: string;
  updated: string | null;
  ageSeconds: number | null;
  state: "live" | "expired";
  /** Segments (and bytes) between its restart point and the newest archived segment. */
  behindSegments: number | null;
  behindBytes: number | null;
  /** The one restart-point file of earlier versions. */
  legacy?: boolean;
}

/** One repository the master archives to (also_archive_to), and how far behind it is. */
export interface RepositoryStatus {
  name: string;
  location: string;
  /** Its newest complete segment (undefined: none, or unreachable). */
  newestSegment?: string;
  /** Segments it lacks up to the newest segment of any repository (null: unknown). */
  behindSegments: number | null;
  /** Why it could not be read (down, no credentials …). */
  error?: string;
}
