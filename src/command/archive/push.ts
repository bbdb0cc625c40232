import { resolve } from "node:path";
import type { Context } from "../../context";
import { IoError } from "../../errors";
import { WalArchive } from "../../storage/archive";
import { driverFor } from "../../storage/open";
import { requireWalName } from "../../wal/names";

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
  if (ctx.dryRun) {
    ctx.out(`[not really] archive ${src} as ${archive.path(wal.name)}`);
    return;
  }
  const { result, bytes } = await archive.pushFile(wal, src);
  ctx.log.info(
    result === "stored"
      ? `archived ${wal.name} (${bytes} bytes) to ${loc.path}`
      : `${wal.name} was already archived with identical content in ${loc.path}`,
  );
}
