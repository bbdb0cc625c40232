import { dirname, join, resolve } from "node:path";
import type { Context } from "../../context";
import { IoError } from "../../errors";
import { formatLocation } from "../../config/load";
import { setCallDeadline } from "../../deadline";
import { archiveRepositories, MultiArchive, type Repository } from "./repositories";
import { requireWalName } from "../../wal/names";
import { readySegments } from "./batch";
import { AckRecords } from "./acks";
import { startPusher } from "./ahead";
import { archiveCallSeconds } from "./call-seconds";

/** The archive_command call (wal-archive, `wal-ctl xarchive`): archivePush within archiveCallSeconds. */
export async function archiveCall(ctx: Context, srcPath: string, name: string): Promise<void> {
  setCallDeadline(archiveCallSeconds(ctx.config), "s3_timeout × (s3_retries + 1)");
  await archivePush(ctx, srcPath, name);
}

/**
 * archive_command (walmgr's xarchive): copies `srcPath` (relative to the data directory, which
 * is PostgreSQL's working directory) into completed_wals as `name`. Resolves only when the file
 * and its checksum are durable there. Needs no database connection.
 */
export async function archivePush(ctx: Context, srcPath: string, name: string): Promise<void> {
  const wal = requireWalName(name);
  const repos = archiveRepositories(ctx.config);
  const src = resolve(srcPath);
  // A repository that cannot be reached now fails in its push below, after the others stored
  // the file; only one that answers "no such folder" (setup never ran) stops the run here.
  const missing = await Promise.all(
    repos.map(async (r) => {
      const st = await r.archive.driver.info(r.loc.path).catch(() => ({ isDirectory: true }));
      return st?.isDirectory ? undefined : r;
    }),
  );
  for (const r of missing) {
    if (r === undefined) continue;
    throw new IoError(
      `${r.name} ${formatLocation(r.loc)} does not exist (${ctx.config.where(r.name === "completed_wals" ? "completed_wals" : "also_archive_to")})`,
      "create the slave directory layout with `wal-ctl CONFIG setup`",
    );
  }
  const [main] = repos as [Repository, ...Repository[]];
  const archive = repos.length === 1 ? main.archive : new MultiArchive(repos);
  // Batch archiving: only for a complete segment PostgreSQL passed from pg_wal (a .history,
  // .backup or .partial %p is archived alone, as PostgreSQL orders those itself).
  // Segments archived ahead by an earlier run and not yet acknowledged are passed over; records
  // PostgreSQL has already seen through (marked done) are swept.
  const walDir = dirname(src);
  const acks =
    wal.kind === "segment" && !ctx.dryRun
      ? AckRecords.open(walDir, join(walDir, "archive_status"), ctx.config.file, ctx.config.stamp)
      : undefined;
  acks?.sweep();
  // Without records (root: PostgreSQL never runs archive_command as root) archiving ahead would
  // only be done again by PostgreSQL's own calls; and a dry run changes nothing.
  const ready =
    wal.kind === "segment" && (acks !== undefined || ctx.dryRun)
      ? readySegments(
          src,
          wal.name,
          ctx.config.int("archive_batch"),
          (n) => (acks?.holds(n) ?? false) || (acks?.pushing(n) ?? false),
        )
      : { statusDir: "", wals: [] };
  if (ctx.dryRun) {
    ctx.out(`[not really] archive ${src} as ${archive.path(wal.name)}`);
    for (const b of ready.wals)
      ctx.out(
        `[not really] archive ready ${b.name} as ${archive.path(b.name)}, then record it for PostgreSQL's own call`,
      );
    return;
  }
  // %p is pushed here; the ready segments after it go to a background pusher (ahead.ts), so
  // this call ends once %p is durable while they are archived meanwhile.
  const own = archive.pushFile(wal, src);
  if (acks !== undefined && ready.wals.length > 0) startPusher(ctx, acks, walDir, ready.wals);
  const { result, bytes } = await own;
  ctx.log.info(
    result === "stored"
      ? `archived ${wal.name} (${bytes} bytes) to ${archive.completedDir}`
      : `${wal.name} was already archived with identical content in ${archive.completedDir}`,
  );
}
