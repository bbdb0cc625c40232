import { readFileSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import { ioError, isErrno, LockHeldError } from "./errors";
import { mkdirPrivate } from "./storage/local";
import { processAlive, writeFileDurable } from "./storage/durable";

/** What a pidfile says about the process named in it. */
export type PidfileState =
  | { kind: "absent" }
  | { kind: "running"; pid: number }
  | { kind: "stale"; pid: number; why: string }
  | { kind: "invalid"; text: string };

/** Programs whose pid a sync daemon pidfile may hold (checked against /proc/PID/cmdline). */
const OUR_PROGRAMS = /wal-sync|wal-ctl/;

/**
 * True when `pid` is alive and, where /proc tells, is one of our executables: after a reboot a
 * stale pidfile may name a pid some other program now has.
 */
export function isOurProcess(pid: number): boolean {
  if (!processAlive(pid)) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return true; // no /proc (or not ours to read): alive is all we know
  }
  return OUR_PROGRAMS.test(cmdline);
}

/** Reads a pidfile and says whether the process it names runs. */
export function readPidfile(path: string): PidfileState {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return { kind: "absent" };
    throw ioError("cannot read pidfile", path, err);
  }
  const pid = Number.parseInt(text.trim(), 10);
  if (!Number.isInteger(pid) || pid <= 0 || String(pid) !== text.trim()) return { kind: "invalid", text };
  if (!processAlive(pid)) return { kind: "stale", pid, why: `process ${pid} is gone` };
  if (!isOurProcess(pid)) return { kind: "stale", pid, why: `process ${pid} is not a walmgr-ts sync daemon` };
  return { kind: "running", pid };
}

/**
 * Takes `path` for this process: created exclusively (link of a complete, fsynced temp file), so
 * two daemons starting together cannot both win. A pidfile naming a live daemon is refused (exit
 * 4, naming the pid); one whose process is gone is reported through `onStale` and taken over.
 * Returns the release function (removes the file only while it still holds our pid).
 */
export function acquirePidfile(path: string, onStale: (msg: string) => void, pid = process.pid): () => void {
  mkdirPrivate(dirname(path));
  for (let attempt = 0; attempt < 3; attempt++) {
    if (writeFileDurable(path, Buffer.from(`${pid}\n`), { exclusive: true, mode: 0o644 })) {
      return () => releasePidfile(path, pid);
    }
    const st = readPidfile(path);
    if (st.kind === "running") {
      throw new LockHeldError(
        `a sync daemon is already running (pid ${st.pid}, pidfile ${path})`,
        `stop it first (wal-ctl CONFIG stop, or kill ${st.pid}); a second daemon is never started`,
      );
    }
    if (st.kind === "absent") continue;
    const what = st.kind === "stale" ? `${st.why}` : `it holds ${JSON.stringify(st.text.slice(0, 40))}, not a pid`;
    onStale(`stale pidfile ${path} (${what}): taking it over`);
    // Remove only what we judged stale: another starter may have replaced it meanwhile.
    try {
      const now = readFileSync(path, "utf8");
      if (st.kind === "stale" ? now.trim() === String(st.pid) : now === st.text) unlinkSync(path);
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw ioError("cannot remove stale pidfile", path, err);
    }
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
