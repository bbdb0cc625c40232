import { readFileSync, readlinkSync, realpathSync } from "node:fs";
import { basename, join } from "node:path";
import { ioError, isErrno } from "../errors";
import { processAlive } from "../proc";

export interface PostmasterInfo {
  pid: number;
  dataDir: string;
  port: number;
  socketDir: string;
  /** "starting", "stopping", "ready" or "standby" (PostgreSQL 10+). */
  status: string;
}

/**
 * True when `pid` is, as far as /proc tells, a PostgreSQL postmaster whose data directory is
 * `dataDir`: its program is postgres (or postmaster) and its working directory (the postmaster
 * changes into its data directory) is `dataDir`. A pid from a stale postmaster.pid may have been
 * reused by any other process, even another cluster's postgres. What /proc does not let us read
 * (no /proc, or another user's process) is given the benefit of the doubt: alive counts as running.
 */
export function isPostmasterOf(pid: number, dataDir: string): boolean {
  if (!processAlive(pid)) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return processAlive(pid); // no /proc here, or the process is gone this instant
  }
  const argv0 = cmdline.split("\0")[0] ?? "";
  if (!/^(postgres|postmaster)\b/.test(basename(argv0)) && !argv0.startsWith("postgres:")) return false;
  let cwd: string;
  try {
    cwd = readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return true; // another user's process: its program is all we can see
  }
  try {
    return cwd === realpathSync(dataDir);
  } catch {
    return cwd === dataDir;
  }
}

/**
 * Reads postmaster.pid; undefined when no postmaster is running for `dataDir` (no file, or the
 * process it names is gone or is not a postgres for this data directory).
 */
export function readPostmaster(dataDir: string): PostmasterInfo | undefined {
  const file = join(dataDir, "postmaster.pid");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) return undefined;
    throw ioError("cannot read", file, err);
  }
  const lines = text.split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0 || !isPostmasterOf(pid, dataDir)) return undefined;
  return {
    pid,
    dataDir: lines[1] ?? dataDir,
    port: Number.parseInt(lines[3] ?? "5432", 10),
    socketDir: lines[4] ?? "",
    status: (lines[7] ?? "").trim(),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until no postmaster runs in `dataDir` (a stop command may return before the server is
 * down: an init script that only signals it). Returns the server still running after
 * `timeoutMs`, or undefined once it is gone.
 */
export async function waitStopped(dataDir: string, timeoutMs: number): Promise<PostmasterInfo | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pm = readPostmaster(dataDir);
    if (!pm || Date.now() >= deadline) return pm;
    await sleep(100);
  }
}

/** PG_VERSION of a data directory as a major number (15), or undefined. */
export function dataDirVersion(dataDir: string): number | undefined {
  try {
    return Number.parseInt(readFileSync(join(dataDir, "PG_VERSION"), "utf8").trim(), 10);
  } catch {
    return undefined;
  }
}
