import { dirname, resolve } from "node:path";
import type { Context } from "../../context";
import { IoError } from "../../errors";
import { WalArchive } from "../../storage/archive";
import { driverFor } from "../../storage/open";
import { requireWalName } from "../../wal/names";
import { archiveBatch, readySegments } from "./batch";

/**
 * archive_command (walmgr's xarchive): copies `srcPath` (relative to the data directory, which
 * is PostgreSQL's working directory) into completed_wals as `name`. Resolves only when the file
 * and its checksum are durable there. Needs no database connection.
 */
export async function archivePush(ctx: Context, srcPath: string, name: string): Promise<void> {
  const wal = requireWalName(name);
  const loc = ctx.config.requireLocation("completed_wals", "wal-archive");
  const driver = driverFor(loc, ctx.config);
  const src = resolve(srcPath);
  const dir = await driver.info(loc.path);
  if (!dir?.isDirectory) {
    throw new IoError(
      `completed_wals ${loc.path} does not exist (${ctx.config.where("completed_wals")})`,
      "create the slave directory layout with `wal-ctl CONFIG setup`",
    );
  }
  const archive = new WalArchive(driver, loc.path);
  // Batch archiving: only for a complete segment PostgreSQL passed from pg_wal (a .history,
  // .backup or .partial %p is archived alone, as PostgreSQL orders those itself).
  const ready =
    wal.kind === "segment"
      ? readySegments(src, wal.name, ctx.config.int("archive_batch"))
      : { statusDir: "", wals: [] };
  if (ctx.dryRun) {
    ctx.out(`[not really] archive ${src} as ${archive.path(wal.name)}`);
    for (const b of ready.wals)
      ctx.out(`[not really] archive ready ${b.name} as ${archive.path(b.name)}, then mark it done`);
    return;
  }
  // Over ssh one helper session serves one request at a time: workers there would only queue.
  const parallel = loc.host === undefined ? Math.max(1, ctx.config.int("archive_parallel")) : 1;
  // %p is one of the `parallel` copies in flight; with 1, the batch follows it.
  const own = archive.pushFile(wal, src);
  if (parallel === 1) await own.catch(() => undefined);
  const rest =
    ready.wals.length > 0
      ? archiveBatch(ctx, archive, dirname(src), ready.statusDir, ready.wals, Math.max(1, parallel - 1))
      : undefined;
  // %p decides the exit: the batch is waited for (never left half-done behind an exit) but its
  // failures are only logged.
  const settled = await Promise.allSettled([own, rest]);
  if (settled[0].status === "rejected") throw settled[0].reason;
  const { result, bytes } = settled[0].value;
  ctx.log.info(
    result === "stored"
      ? `archived ${wal.name} (${bytes} bytes) to ${loc.path}`
      : `${wal.name} was already archived with identical content in ${loc.path}`,
  );
}
