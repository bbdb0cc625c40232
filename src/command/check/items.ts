import { hostname } from "node:os";
import { posix } from "node:path";
import type { Config } from "../../config/load";
import { ExitCode, WalmgrError } from "../../errors";
import { pgCommandLine } from "../../pg/postgresql-conf";
import { binPath } from "../../paths";
import { writeBytes } from "../../storage/bytes";
import type { StorageDriver } from "../../storage/driver";
import { describeHolder, judgeHolder, parseLockInfo } from "../../lock";
import { BACKUP_PROGRAMS, type ControlFiles } from "../../control";
import { readBytes } from "../../storage/bytes";
import type { CheckItem } from "./report";

/** The error's own exit code (transport, I/O …), I/O when it has none. */
export function codeOf(err: unknown): CheckItem["code"] {
  return err instanceof WalmgrError ? err.exitCode : ExitCode.IO;
}

/** The message of whatever was thrown, on one line. */
export function why(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).replace(/\s*\n\s*/g, " ");
}

/**
 * Whether the command line PostgreSQL runs (`actual`) is this project's `program` with this
 * config file: the exact line setup writes, or any line that runs `program` from this
 * installation with `config` and all of `placeholders` (an operator may add options or a wrapper).
 */
export function commandMatches(actual: string, program: string, config: Config, placeholders: string): boolean {
  const expected = pgCommandLine([binPath(program), config.file], placeholders);
  if (actual.trim() === expected) return true;
  const unquoted = actual.replace(/'/g, "").replace(/%%/g, "%");
  return (
    unquoted.includes(binPath(program)) &&
    unquoted.includes(config.file) &&
    placeholders.split(" ").every((p) => unquoted.includes(p))
  );
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
