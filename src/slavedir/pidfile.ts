import { chownSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { ioError, isErrno, LockHeldError } from "../errors";
import { breakStaleLock, sweepDeadGuards } from "./lock";
import { namesConfig, ourProgram, processAlive, procInfo } from "../proc";
import { LocalDriver, mkdirPrivate } from "../storage/local/driver";
import { writeFileDurable } from "../storage/durable";

/**
 * What a pidfile says about the process named in it. `running`: provably the sync daemon of
 * this config; `stale`: provably not (gone, another user's, another program, a later process
 * with a reused pid); `unknown`: alive, but /proc cannot tell (never signalled, never replaced).
 */
export type PidfileState =
  | { kind: "absent" }
  | { kind: "running"; pid: number }
  | { kind: "stale"; pid: number; why: string }
  | { kind: "unknown"; pid: number; why: string }
  | { kind: "invalid"; text: string };

/** Programs that run the sync daemon (`wal-sync CONFIG --daemon`, `wal-ctl CONFIG syncdaemon`). */
export const DAEMON_PROGRAMS = ["wal-sync", "wal-ctl"] as const;

/** The pidfile is written right after start; /proc's start time is exact to about a second. */
const START_SLACK_MS = 2_000;

/** True when the arguments ask for the daemon: --daemon, --detach, -d (alone or in a cluster), syncdaemon. */
function daemonArgs(args: string[]): boolean {
  return args.some(
    (a) => a === "--daemon" || a === "--detach" || a === "syncdaemon" || /^-[A-Za-z]*d[A-Za-z]*$/.test(a),
  );
}

/**
 * Whether `pid`, named in the pidfile `path` (whose owner and mtime are `file`), is the sync
 * daemon of `configFile`, for certain: alive; owned by the pidfile's owner (never another
 * user's process); running wal-sync/wal-ctl (the program itself, not a word anywhere in its
 * command line) as a daemon on this very config file (same file, relative paths taken from its
 * working directory); and started before the pidfile was written (not a later process that got
 * the pid again).
 */
export function identifyDaemon(
  pid: number,
  file: { uid: number; mtimeMs: number },
  configFile: string,
): { kind: "running" } | { kind: "stale" | "unknown"; why: string } {
  if (!processAlive(pid)) return { kind: "stale", why: `process ${pid} is gone` };
  const proc = procInfo(pid);
  if (!proc) return { kind: "unknown", why: `process ${pid} is alive but /proc/${pid} cannot be read` };
  const cmd = JSON.stringify(proc.argv.join(" ").slice(0, 100));
  if (proc.uid !== file.uid) {
    return { kind: "stale", why: `process ${pid} belongs to uid ${proc.uid}, the pidfile to uid ${file.uid} (${cmd})` };
  }
  const prog = ourProgram(proc.argv, DAEMON_PROGRAMS);
  if (!prog || !daemonArgs(prog.args)) {
    return { kind: "stale", why: `process ${pid} is not a walmgr-ts sync daemon (it runs ${cmd})` };
  }
  if (!namesConfig(proc, prog.args, configFile)) {
    return {
      kind: "stale",
      why: `process ${pid} is a sync daemon for another config file than ${configFile} (${cmd})`,
    };
  }
  if (proc.startMs > file.mtimeMs + START_SLACK_MS) {
    return { kind: "stale", why: `process ${pid} started after the pidfile was written: its pid was reused` };
  }
  return { kind: "running" };
}

/** Reads a pidfile and says whether the process it names is the sync daemon of `configFile`. */
export function readPidfile(path: string, configFile: string): PidfileState {
  let text: string;
  let st: { uid: number; mtimeMs: number };
  try {
    text = readFileSync(path, "utf8");
    st = statSync(path);
  } catch (err) {
    if (isErrno(err, "ENOENT")) return { kind: "absent" };
    throw ioError("cannot read pidfile", path, err);
  }
  const pid = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0 || String(pid) !== text.trim()) return { kind: "invalid", text };
  const who = identifyDaemon(pid, st, configFile);
  return who.kind === "running" ? { kind: "running", pid } : { kind: who.kind, pid, why: who.why };
}

/**
 * Takes `path` for this process: created exclusively (link of a complete, fsynced temp file), so
 * two daemons starting together cannot both win. A pidfile naming this config's live daemon is
 * refused (exit 4, naming the pid), and so is one naming a process /proc cannot tell about; one
 * whose process is provably not the daemon is reported through `onStale` and taken over (of
 * several starters, exactly one removes it). As root the pidfile belongs to root, whatever
 * the folder's owner, so its owner is the daemon's. Returns the release function (removes the
 * file only while it still holds our pid).
 */
export async function acquirePidfile(
  path: string,
  configFile: string,
  onStale: (msg: string) => void,
  pid = process.pid,
): Promise<() => void> {
  mkdirPrivate(dirname(path));
  for (let attempt = 0; attempt < 5; attempt++) {
    if (writeFileDurable(path, Buffer.from(`${pid}\n`), { exclusive: true, mode: 0o644 })) {
      const uid = process.geteuid?.();
      if (uid !== undefined && statSync(path).uid !== uid) chownSync(path, uid, process.getegid?.() ?? 0);
      // Guards of starters killed while taking over a stale pidfile: litter now.
      await sweepDeadGuards(new LocalDriver(), path, DAEMON_PROGRAMS);
      return () => releasePidfile(path, pid);
    }
    let raw: Buffer;
    try {
      raw = readFileSync(path);
    } catch (err) {
      if (isErrno(err, "ENOENT")) continue;
      throw ioError("cannot read pidfile", path, err);
    }
    const st = readPidfile(path, configFile);
    if (st.kind === "absent") continue;
    if (st.kind === "running" || st.kind === "unknown") {
      throw new LockHeldError(
        `a sync daemon is already running (pid ${st.pid}, pidfile ${path})${st.kind === "unknown" ? `: ${st.why}` : ""}`,
        st.kind === "running"
          ? `stop it first (wal-ctl CONFIG stop, or kill ${st.pid}); a second daemon is never started`
          : `if process ${st.pid} is not this config's sync daemon, remove ${path}`,
      );
    }
    const what = st.kind === "stale" ? st.why : `it holds ${JSON.stringify(st.text.slice(0, 40))}, not a pid`;
    onStale(`stale pidfile ${path} (${what}): taking it over`);
    // Remove only what we judged stale, and only one starter at a time (see lock.ts).
    await breakStaleLock(new LocalDriver(), path, raw, { programs: DAEMON_PROGRAMS });
  }
  throw new LockHeldError(`cannot take the pidfile ${path}: another process keeps creating it`);
}

/** Removes `path` if it still holds `pid`. */
export function releasePidfile(path: string, pid = process.pid): void {
  try {
    if (readFileSync(path, "utf8").trim() === String(pid)) unlinkSync(path);
  } catch {
    // gone already
  }
}
