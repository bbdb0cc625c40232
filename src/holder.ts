/**
 * Who holds a lock, and whether that holder is provably gone: the identity every lock file of the
 * slave directory carries (pid, host, start, command, the process start time and boot id that
 * identify the process exactly). Below storage, so that a driver that keeps locks of its own
 * (the S3 driver's claims) judges holders the same way as lock.ts; it reads only this machine's
 * /proc (proc.ts).
 */
import { hostname } from "node:os";
import { bootId, ourProgram, processAlive, processStart, procInfo } from "./proc";

/** Who holds a lock. `pstart` and `boot` are missing in locks written by older versions. */
export interface LockInfo {
  pid: number;
  host: string;
  /** When the lock was taken (ISO time). */
  started: string;
  command: string;
  /** The holder's /proc/PID/stat start time (clock ticks since boot). */
  pstart?: string;
  /** The holder's boot id (/proc/sys/kernel/random/boot_id). */
  boot?: string;
  /** What kind of holder (the sync lock: "daemon" or "once"). */
  role?: string;
  /** The sync lock: the holder's config file. */
  config?: string;
  /** The sync lock: the master data directory the holder ships from. */
  masterData?: string;
  /**
   * The sync lock: the timeline the holder's master was on when it last looked (set by the
   * holder once it knows it, after taking the lock; missing in locks of older versions).
   */
  timeline?: number;
  /** The sync lock: the database system identifier of the holder's master (pg_control). */
  systemId?: string;
}

/** What a sync lock's holder ships from: written into its lock so that others can tell whose it is. */
export type SyncLockSource = Pick<LockInfo, "config" | "masterData" | "timeline" | "systemId">;

/** Is the holder alive? `unknown`: cannot be told from here (another host, unreadable /proc, free text). */
export interface Verdict {
  state: "live" | "stale" | "unknown";
  why: string;
}

/** A lock body for this process (`source`: what a sync ships from). */
export function selfLockInfo(command: string, role?: string, source: SyncLockSource = {}): LockInfo {
  const pstart = processStart(process.pid);
  const boot = bootId();
  return {
    pid: process.pid,
    host: hostname(),
    started: new Date().toISOString(),
    command,
    ...(pstart !== undefined ? { pstart } : {}),
    ...(boot !== undefined ? { boot } : {}),
    ...(role !== undefined ? { role } : {}),
    ...withoutUndefined(source),
  };
}

function withoutUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function lockBody(info: LockInfo): Buffer {
  return Buffer.from(`${JSON.stringify(info)}\n`);
}

/** The holder a lock file names, or undefined for anything else (walmgr.py's empty or free-text BACKUPLOCK). */
export function parseLockInfo(raw: string): LockInfo | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LockInfo>;
    if (typeof v.pid === "number" && Number.isInteger(v.pid) && v.pid > 0 && typeof v.host === "string") {
      return {
        pid: v.pid,
        host: v.host,
        started: String(v.started ?? "?"),
        command: String(v.command ?? "?"),
        ...(typeof v.pstart === "string" ? { pstart: v.pstart } : {}),
        ...(typeof v.boot === "string" ? { boot: v.boot } : {}),
        ...(typeof v.role === "string" ? { role: v.role } : {}),
        ...(typeof v.config === "string" ? { config: v.config } : {}),
        ...(typeof v.masterData === "string" ? { masterData: v.masterData } : {}),
        ...(typeof v.timeline === "number" && Number.isInteger(v.timeline) && v.timeline > 0
          ? { timeline: v.timeline }
          : {}),
        ...(typeof v.systemId === "string" && /^\d+$/.test(v.systemId) ? { systemId: v.systemId } : {}),
      };
    }
  } catch {
    // not ours
  }
  return undefined;
}

export function describeHolder(info: LockInfo | undefined, raw: string): string {
  if (!info) return `unreadable holder (${JSON.stringify(raw.slice(0, 80))})`;
  const src = [
    info.masterData !== undefined ? `master data ${info.masterData}` : undefined,
    info.timeline !== undefined ? `timeline ${info.timeline}` : undefined,
    info.systemId !== undefined ? `system ${info.systemId}` : undefined,
  ].filter((x) => x !== undefined);
  return `pid ${info.pid} on ${info.host}, started ${info.started}, command: ${info.command}${src.length ? `, shipping ${src.join(", ")}` : ""}`;
}

/** Slack between a lock's ISO start and /proc's start time (whole-second boot time, clock steps). */
const START_SLACK_MS = 2_000;

/**
 * Whether the holder a lock names is alive, exactly: the holder must be on this host, alive,
 * the same process that wrote the lock (its start time), and one of `programs`. Anything that
 * cannot be checked from here (another host, an unreadable /proc entry, free text) is `unknown`:
 * never stale.
 */
export function judgeHolder(info: LockInfo | undefined, programs: readonly string[]): Verdict {
  if (!info) return { state: "unknown", why: "the lock does not name its holder" };
  const pid = info.pid;
  if (info.host !== hostname()) {
    return {
      state: "unknown",
      why: `the holder runs on ${info.host}, not on this host: it cannot be checked from here`,
    };
  }
  const boot = bootId();
  if (info.boot !== undefined && boot !== undefined && info.boot !== boot) {
    return { state: "stale", why: `the host has rebooted since process ${pid} took the lock` };
  }
  if (!processAlive(pid)) return { state: "stale", why: `process ${pid} is gone` };
  if (pid === process.pid && info.pstart !== undefined && info.pstart === processStart(process.pid)) {
    return { state: "live", why: "this process holds it" };
  }
  const proc = procInfo(pid);
  if (!proc) return { state: "unknown", why: `process ${pid} is alive but /proc/${pid} cannot be read` };
  if (info.pstart !== undefined && info.pstart !== proc.starttime) {
    return { state: "stale", why: `pid ${pid} now belongs to another process (started later than the lock's holder)` };
  }
  const taken = Date.parse(info.started);
  if (info.pstart === undefined && Number.isFinite(taken) && proc.startMs > taken + START_SLACK_MS) {
    return {
      state: "stale",
      why: `pid ${pid} now belongs to a process started ${new Date(proc.startMs).toISOString()}, after the lock was taken`,
    };
  }
  if (!ourProgram(proc.argv, programs)) {
    return {
      state: "stale",
      why: `process ${pid} is not ${programs.join("/")} (it runs ${JSON.stringify(proc.argv.join(" ").slice(0, 80))})`,
    };
  }
  return { state: "live", why: `process ${pid} is alive` };
}
