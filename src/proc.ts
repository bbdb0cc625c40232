/**
 * What /proc says about a process, to tell for certain whether a pid named in a pidfile or a lock
 * file is the process that wrote it: pids are reused (after a reboot, or after a wrap), and a
 * file in a directory others can write may name any process. Linux only; where /proc is missing
 * or unreadable the answer is `undefined` ("cannot tell"), never a guess.
 */
import { readFileSync, readlinkSync, statSync } from "node:fs";
import { basename, isAbsolute, resolve } from "node:path";
import { isErrno } from "./errors";

export interface ProcInfo {
  pid: number;
  /** The command line, one element per argument. */
  argv: string[];
  /** Effective uid. */
  uid: number;
  /** Field 22 of /proc/PID/stat: start time in clock ticks since boot (with the boot id, unique). */
  starttime: string;
  /** Start time as epoch milliseconds (from the boot time; exact to about a second). */
  startMs: number;
  /** The working directory, when readable (our own user's processes, or as root). */
  cwd?: string;
}

/** Linux's USER_HZ: /proc/PID/stat counts in these ticks on every architecture Node runs on. */
const CLOCK_TICKS = 100;

let bootTimeMs: number | undefined;
function bootTime(): number | undefined {
  if (bootTimeMs === undefined) {
    try {
      const m = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"));
      if (m?.[1]) bootTimeMs = Number(m[1]) * 1000;
    } catch {
      // no /proc
    }
  }
  return bootTimeMs;
}

let bootIdValue: string | null | undefined;
/** This boot's random id (/proc/sys/kernel/random/boot_id): a pid from another boot is another process. */
export function bootId(): string | undefined {
  if (bootIdValue === undefined) {
    try {
      bootIdValue = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || null;
    } catch {
      bootIdValue = null;
    }
  }
  return bootIdValue ?? undefined;
}

/** Field 22 (starttime) of a /proc/PID/stat line; the command name (field 2) may hold spaces and parens. */
export function parseStatStart(stat: string): string | undefined {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const v = fields[19];
  return v !== undefined && /^\d+$/.test(v) ? v : undefined;
}

/** What /proc tells about `pid`, or undefined when it is gone or cannot be read. */
export function procInfo(pid: number): ProcInfo | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const starttime = parseStatStart(stat);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const uid = /^Uid:\s+\d+\s+(\d+)/m.exec(status)?.[1];
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    const boot = bootTime();
    if (starttime === undefined || uid === undefined || boot === undefined) return undefined;
    const argv = cmdline.split("\0");
    if (argv[argv.length - 1] === "") argv.pop();
    let cwd: string | undefined;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      // another user's process (unless we are root)
    }
    return {
      pid,
      argv,
      uid: Number(uid),
      starttime,
      startMs: boot + (Number(starttime) * 1000) / CLOCK_TICKS,
      ...(cwd !== undefined ? { cwd } : {}),
    };
  } catch {
    return undefined;
  }
}

/**
 * When the process `pid` started (clock ticks since boot, /proc/PID/stat field 22), or
 * undefined where that cannot be read (no /proc, or the process is gone). Together with the
 * pid it names a process for certain: a reused pid has another start time.
 */
export function processStart(pid: number): string | undefined {
  try {
    return parseStatStart(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * True while process `pid` exists and has not exited: kill(pid, 0) succeeds or is refused for
 * want of permission (another user's process is still a process), and /proc does not show it
 * as a zombie. Where /proc cannot be read, kill's answer is all there is.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return isErrno(err, "EPERM");
  }
  // A zombie has exited and only waits for its parent to reap it: it holds nothing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return true; // no /proc here, or gone this instant: kill(0) said it was there
  }
}

/**
 * Every program of walmgr-ts that may hold a lock or claim: one per bundle in dist/bin (one per
 * file in src/main/, a unit test checks). A holder whose command line runs none of these is not
 * ours (see ourProgram).
 */
export const WALMGR_PROGRAMS = [
  "wal-archive",
  "wal-archive-ahead",
  "wal-backup",
  "wal-ctl",
  "wal-helper",
  "wal-prefetch",
  "wal-restore",
  "wal-s3-release",
  "wal-sync",
] as const;

/** The base name of the V8 code-cache loader the sh fronts start Node through (src/cli/code-cache.ts). */
const CODE_CACHE_LOADER = "code-cache";

/**
 * Which of `programs` (walmgr-ts executable names, e.g. "wal-sync") the command line runs, and
 * the arguments after it; undefined when it runs none. Only the program position counts: node
 * (possibly with its own options) followed by the script, or the executable itself. A command
 * line that merely contains the name elsewhere (`tail -f wal-sync.log`) is not ours.
 */
export function ourProgram(
  argv: string[],
  programs: readonly string[],
): { program: string; args: string[] } | undefined {
  const name = (p: string | undefined): string => basename(p ?? "").replace(/\.js$/, "");
  const first = name(argv[0]);
  if (programs.includes(first)) return { program: first, args: argv.slice(1) };
  if (!/^node(js)?(\d+)?$/.test(first)) return undefined;
  let i = 1;
  while (i < argv.length && (argv[i] ?? "").startsWith("-")) i++;
  // bin/wal-archive and bin/wal-restore exec `node dist/src/cli/code-cache.js dist/bin/X.js ARGS`
  // (the V8 code-cache loader): the program is the bundle it runs.
  if (name(argv[i]) === CODE_CACHE_LOADER) i++;
  const script = name(argv[i]);
  return programs.includes(script) ? { program: script, args: argv.slice(i + 1) } : undefined;
}

/**
 * True when one of the positional `args` of process `info` names the same file as `configFile`
 * (same device and inode); relative paths are taken from the process's working directory.
 */
export function namesConfig(info: ProcInfo, args: string[], configFile: string): boolean {
  let want: { dev: number; ino: number };
  try {
    want = statSync(configFile);
  } catch {
    return false;
  }
  for (const a of args) {
    if (a.startsWith("-") || a === "") continue;
    if (!isAbsolute(a) && info.cwd === undefined) continue;
    try {
      const st = statSync(isAbsolute(a) ? a : resolve(info.cwd ?? "/", a));
      if (st.dev === want.dev && st.ino === want.ino) return true;
    } catch {
      // not a file
    }
  }
  return false;
}
