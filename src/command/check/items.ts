import { hostname } from "node:os";
import { realpathSync } from "node:fs";
import { basename, posix, resolve } from "node:path";
import type { Config } from "../../config/load";
import { ExitCode, WalmgrError } from "../../errors";
import { pgCommandLine } from "../../pg/postgresql-conf";
import { binPath } from "../../paths";
import { readBytes, writeBytes } from "../../storage/bytes";
import type { StorageDriver } from "../../storage/driver";
import { describeHolder, judgeHolder, parseLockInfo } from "../../slavedir/lock";
import { BACKUP_PROGRAMS, type ControlFiles } from "../../slavedir/control";
import { ourProgram, processAlive, procInfo } from "../../proc";
import { testPause } from "../../test-pause";
import type { CheckItem } from "./report";

/** The error's own exit code (transport, I/O …), I/O when it has none. */
export function codeOf(err: unknown): CheckItem["code"] {
  return err instanceof WalmgrError ? err.exitCode : ExitCode.IO;
}

/** The message of whatever was thrown, on one line. */
export function why(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, " ");
}

/** The words of a shell command line as sh would split them (quotes and backslashes; no expansion). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  let cur: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] ?? "";
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      cur = (cur ?? "") + line.slice(i + 1, end === -1 ? line.length : end);
      i = end === -1 ? line.length : end;
    } else if (c === '"') {
      let j = i + 1;
      let s = "";
      for (; j < line.length && line[j] !== '"'; j++)
        s += line[j] === "\\" && j + 1 < line.length ? line[++j] : line[j];
      cur = (cur ?? "") + s;
      i = j;
    } else if (c === "\\" && i + 1 < line.length) {
      cur = (cur ?? "") + line[++i];
    } else if (/\s/.test(c)) {
      if (cur !== undefined) words.push(cur);
      cur = undefined;
    } else cur = (cur ?? "") + c;
  }
  if (cur !== undefined) words.push(cur);
  return words;
}

/** The same file, through symbolic links and relative paths; false when `a` cannot be resolved. */
function sameFile(a: string, b: string): boolean {
  const real = (f: string): string => {
    try {
      return realpathSync(f);
    } catch {
      return resolve(f);
    }
  };
  return real(a) === real(b);
}

/**
 * Whether the command line PostgreSQL runs (`actual`, as `SHOW` gives it) runs this project's
 * `program` (wal-archive, or `wal-ctl CONFIG xcommand` as walmgr.py wrote it) with this config
 * file and every one of `placeholders`. Wrappers before it (`nice`, `timeout 60`) are allowed,
 * the installation's path is not compared (a copy in /usr/local/bin is as good), the config file
 * is compared through links. `%%` is PostgreSQL's escaped `%`.
 */
export function commandMatches(actual: string, program: string, config: Config, placeholders: string): boolean {
  const words = shellWords(actual.replace(/%%/g, "\u0000")).map((w) => w.split("\u0000").join("%"));
  const x = program === "wal-archive" ? "xarchive" : "xrestore";
  for (let i = 0; i < words.length; i++) {
    const name = basename(words[i] ?? "");
    let cfg: string | undefined;
    let rest: string[] = [];
    if (name === program) {
      cfg = words[i + 1];
      rest = words.slice(i + 2);
    } else if (name === "wal-ctl" && words[i + 2] === x) {
      cfg = words[i + 1];
      rest = words.slice(i + 3);
    }
    if (cfg !== undefined && sameFile(cfg, config.file)) {
      return placeholders.split(" ").every((p) => rest.includes(p));
    }
  }
  return false;
}

/** The command line `setup`/`restore` would write, for the fix text. */
export function expectedCommand(program: string, config: Config, placeholders: string): string {
  return pgCommandLine([binPath(program), config.file], placeholders);
}

/** Probe files are named PROBE_PREFIX + HOST.PID (the check that wrote it). */
const PROBE_PREFIX = ".walmgr-check.";

/**
 * How old a probe of another host (or of a live process here) must be to count as left by a
 * killed check: a check writes and removes its probe within seconds.
 */
export const PROBE_LEASE_MS = 10 * 60_000;

/**
 * Removes the probes killed checks left in `dir` (a check killed between writing and removing
 * its probe), never `mine`: this host's whose process is gone or is no wal-ctl any more, and any
 * older than PROBE_LEASE_MS (another host's processes cannot be looked at from here). Returns
 * the names removed.
 */
export async function sweepProbes(driver: StorageDriver, dir: string, mine: string): Promise<string[]> {
  const removed: string[] = [];
  for (const n of (await driver.list(dir)) ?? []) {
    const m = /^\.walmgr-check\.(.+)\.(\d+)$/.exec(n);
    if (!m || n === mine) continue;
    const pid = Number(m[2]);
    let dead = false;
    if (m[1] === hostname()) {
      const proc = processAlive(pid) ? procInfo(pid) : undefined;
      dead = !processAlive(pid) || (proc !== undefined && ourProgram(proc.argv, ["wal-ctl"]) === undefined);
    }
    const path = posix.join(dir, n);
    if (!dead) {
      const info = await driver.info(path);
      dead = info !== undefined && Date.now() - info.mtimeMs > PROBE_LEASE_MS;
    }
    if (dead && (await driver.remove(path))) removed.push(n);
  }
  return removed;
}

/**
 * The slave directory's folder `dir` exists and takes a durable write: a probe file written
 * (temp, fsync, rename, as WAL is) and removed; probes killed checks left are removed first. Through the storage driver, so an ssh or S3 slave
 * is probed where it is.
 */
export async function probeWritable(driver: StorageDriver, dir: string, dryRun: boolean): Promise<CheckItem> {
  const name = "slave directory writable";
  try {
    const info = await driver.info(dir);
    if (info === undefined || !info.isDirectory) {
      return {
        name,
        status: "FAIL",
        detail: `${dir} (${driver.description}) does not exist`,
        fix: "run 'wal-ctl CONFIG setup' (it creates the layout), or correct completed_wals",
        code: ExitCode.IO,
      };
    }
    if (dryRun) return { name, status: "SKIP", detail: `${dir} exists; not written to (--not-really)` };
    const mine = `${PROBE_PREFIX}${hostname()}.${process.pid}`;
    const swept = await sweepProbes(driver, dir, mine);
    const probe = posix.join(dir, mine);
    await writeBytes(driver, probe, Buffer.from(`walmgr-ts check ${new Date().toISOString()}\n`));
    await testPause("check-probe");
    await driver.remove(probe);
    const also = swept.length === 0 ? "" : `; removed ${swept.length} probe(s) killed checks left: ${swept.join(", ")}`;
    return { name, status: "OK", detail: `${dir} (${driver.description}) takes a durable write${also}` };
  } catch (err) {
    return {
      name,
      status: "FAIL",
      detail: `cannot write to ${dir} (${driver.description}): ${why(err)}`,
      fix: "make the folder writable by the user PostgreSQL archives as (owner, mode, free space, mount), and check that the host is reachable",
      code: codeOf(err),
    };
  }
}

/** BACKUPLOCK: none, held by a running backup, or stale (its holder provably gone). */
export async function backupLockItem(control: ControlFiles): Promise<CheckItem> {
  const name = "BACKUPLOCK";
  const where = control.lockPath();
  let raw: string | undefined;
  try {
    raw = (await readBytes(control.lock.driver, where))?.toString("utf8");
  } catch (err) {
    return { name, status: "FAIL", detail: `cannot read ${where}: ${why(err)}`, code: codeOf(err) };
  }
  if (raw === undefined) return { name, status: "OK", detail: "no backup holds the lock" };
  const info = parseLockInfo(raw);
  const verdict = judgeHolder(info, BACKUP_PROGRAMS);
  const holder = describeHolder(info, raw);
  if (verdict.state === "stale") {
    return {
      name,
      status: "FAIL",
      detail: `stale lock ${where}: ${holder}; ${verdict.why}`,
      fix: "no backup can run until it goes: clear it with 'wal-backup CONFIG --clear-stale-lock' (which then takes a backup)",
      code: ExitCode.LOCK_HELD,
    };
  }
  if (verdict.state === "unknown") {
    return {
      name,
      status: "WARN",
      detail: `${where} is held: ${holder}; ${verdict.why}`,
      fix: "make sure that backup is still running (on its host); if it is not, remove the file",
      code: ExitCode.LOCK_HELD,
    };
  }
  return { name, status: "OK", detail: `a backup is running: ${holder}` };
}
