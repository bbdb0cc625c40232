import { hostname } from "node:os";
import { realpathSync } from "node:fs";
import { basename, posix, resolve } from "node:path";
import type { Config } from "../../config/load";
import { ExitCode, WalmgrError } from "../../errors";
import { pgCommandLine } from "../../pg/postgresql-conf";
import { binPath } from "../../paths";
import { readBytes, writeBytes } from "../../storage/bytes";
import type { StorageDriver } from "../../storage/driver";
import { describeHolder, judgeHolder, parseLockInfo } from "../../lock";
import { BACKUP_PROGRAMS, type ControlFiles } from "../../control";
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

/**
 * The slave directory's folder `dir` exists and takes a durable write: a probe file written
 * (temp, fsync, rename, as WAL is) and removed. Through the storage driver, so an ssh or S3 slave
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
    const probe = posix.join(dir, `.walmgr-check.${hostname()}.${process.pid}`);
    await writeBytes(driver, probe, Buffer.from(`walmgr-ts check ${new Date().toISOString()}\n`));
    await driver.remove(probe);
    return { name, status: "OK", detail: `${dir} (${driver.description}) takes a durable write` };
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
