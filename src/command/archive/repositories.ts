import { posix } from "node:path";
import { formatLocation, parseLocation, type Config, type Location } from "../../config/load";
import { ConfigError, IoError, WalmgrError } from "../../errors";
import { WalArchive, type PushResult } from "../../storage/archive";
import { driverFor } from "../../storage/open";
import type { WalName } from "../../wal/names";

/** One place WAL is archived to: completed_wals, or one of also_archive_to's slave directories. */
export interface Repository {
  /** "completed_wals" or "also_archive_to[N]" (1-based), for messages. */
  name: string;
  loc: Location;
  archive: WalArchive;
}

/**
 * Every repository the master archives to: completed_wals first, then each slave directory of
 * also_archive_to (`/path`, `host:/path` or `s3://bucket/prefix`, comma-separated), whose WAL
 * goes to its `logs.complete` as walmgr's layout has it.
 */
export function archiveRepositories(config: Config, timeout?: number): Repository[] {
  const main = config.requireLocation("completed_wals", "wal-archive");
  return [repository("completed_wals", main, config, timeout), ...alsoArchiveTo(config, main, timeout)];
}

/**
 * The repositories of also_archive_to alone (none when it is unset), refused when one is
 * `completed` (the main repository) or named twice.
 */
export function alsoArchiveTo(config: Config, completed: Location, timeout?: number): Repository[] {
  const out: Repository[] = [];
  const seen = [formatLocation(completed)];
  const extra = (config.get("also_archive_to") ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  extra.forEach((raw, i) => {
    const root = parseLocation(raw, config.baseDir);
    const loc = { ...root, path: posix.join(root.path, "logs.complete") };
    const name = `also_archive_to[${i + 1}]`;
    if (seen.includes(formatLocation(loc))) {
      throw new ConfigError(
        `${config.where("also_archive_to")}: ${raw} is already a repository (${formatLocation(loc)})`,
        "name each slave directory once",
      );
    }
    seen.push(formatLocation(loc));
    out.push(repository(name, loc, config, timeout));
  });
  return out;
}

function repository(name: string, loc: Location, config: Config, timeout: number | undefined): Repository {
  const driver = driverFor(loc, config, timeout === undefined ? {} : { timeout });
  return { name, loc, archive: new WalArchive(driver, loc.path) };
}

/**
 * Archives into several repositories as one: `pushFile` resolves only once the file is durable
 * in every one of them, and fails (naming the repository) when any one fails; what the others
 * stored stays, and PostgreSQL's retry finds it identical there and completes the rest.
 */
export class MultiArchive {
  constructor(readonly repos: Repository[]) {}

  /** For messages: the repositories' folders. */
  get completedDir(): string {
    return this.repos.map((r) => formatLocation(r.loc)).join(", ");
  }

  /** Where `name` goes, for messages (every repository). */
  path(name: string): string {
    return this.repos.map((r) => r.archive.path(name)).join(", ");
  }

  async pushFile(wal: WalName, src: string): Promise<{ result: PushResult; bytes: number }> {
    if (this.repos.length === 1) return (this.repos[0] as Repository).archive.pushFile(wal, src);
    const settled = await Promise.allSettled(this.repos.map((r) => r.archive.pushFile(wal, src)));
    const failed = settled
      .map((s, i) => ({ s, repo: this.repos[i] as Repository }))
      .filter((x): x is { s: PromiseRejectedResult; repo: Repository } => x.s.status === "rejected");
    const first = failed[0];
    if (first !== undefined) {
      const err = first.s.reason as unknown;
      const held = this.repos.length - failed.length;
      const msg = `${wal.name} not archived to ${first.repo.name} (${formatLocation(first.repo.loc)}): ${(err as Error).message}${failed.length > 1 ? ` (and ${failed.length - 1} more repositories failed)` : ""}; ${held} of ${this.repos.length} repositories hold it`;
      throw err instanceof WalmgrError ? new WalmgrError(msg, err.exitCode, err.hint) : new IoError(msg);
    }
    const values = settled.map((s) => (s as PromiseFulfilledResult<{ result: PushResult; bytes: number }>).value);
    return {
      result: values.some((v) => v.result === "stored") ? "stored" : "identical",
      bytes: values[0]?.bytes ?? 0,
    };
  }
}
