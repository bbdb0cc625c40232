import { posix } from "node:path";
import { cpus } from "node:os";
import { formatLocation } from "../../config/load";
import type { Context } from "../../context";
import { IoError } from "../../errors";
import { codecFor } from "../../repo/codec";
import { MANIFEST_SUFFIX, RepoLayout } from "../../repo/layout";
import { listRepoSets, writeSetInfo } from "../../repo/sets";
import { ManifestWriter, openManifest } from "../../repo/manifest";
import { storeTree, type StoreShape, type StoreStats } from "../../repo/store";
import type { BackupInfo } from "../../slavedir/backup-sets";
import type { StorageDriver } from "../../storage/driver";
import { driverFor } from "../../storage/open";
import { readJson, writeBytes } from "../../storage/bytes";
import { keepInBackup } from "./exclude";
import type { SetSink } from "./sink";

/** pg_control is read after everything else, as pg_basebackup does (required from a standby). */
const PG_CONTROL = "global/pg_control";

/**
 * The repository's shape for new sets. Block size and frame size: see
 * docs/block-repository-measurements.md (64 KiB blocks keep a 1 GiB relation segment's manifest
 * entry at 16,384 blocks; 1 MiB frames compress nearly as well as whole files).
 */
export function repoShape(ctx: Context): StoreShape {
  const level = ctx.config.get("compress_level");
  return {
    blockSize: 64 * 1024,
    frameSize: 1024 * 1024,
    packSize: 64 * 1024 * 1024,
    codec: codecFor(
      ctx.config.choice("compress_type"),
      level === undefined || level === "" ? undefined : Number(level),
    ),
    parallel: Math.min(ctx.config.int("backup_parallel"), Math.max(1, cpus().length * 2)),
  };
}

/** The block repository of this config (`backup_repo`) and the storage it is on. */
export function openRepo(ctx: Context): { driver: StorageDriver; layout: RepoLayout; where: string } {
  const loc = ctx.config.requireLocation("backup_repo", "backup");
  return { driver: driverFor(loc, ctx.config), layout: new RepoLayout(loc.path), where: formatLocation(loc) };
}

/** A new set's name: the time it began, UTC (sorts as times; a clash gets `-N`). */
function setName(now: Date): string {
  return now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d{3}Z$/, "Z");
}

/**
 * The `repo` format's sink: the data directory stored into the repository against the newest
 * set (blocks it already has are referenced), its manifest written last: the set exists once
 * `finish` resolves, never before. `abort` discards the manifest; packs already written stay
 * until an expire removes what no set references.
 */
export async function repoSink(
  ctx: Context,
): Promise<SetSink & { abort(): Promise<void>; stats(): StoreStats | undefined }> {
  const { driver, layout, where } = openRepo(ctx);
  const shape = repoShape(ctx);
  await driver.pathCreate(layout.setsDir);
  await driver.pathCreate(layout.packsDir);
  // The repository's block size is its own, recorded by its first backup: a later default
  // never splits one repository into two block sizes (which would store everything again).
  const format = await readJson<{ format?: string; version?: number; blockSize?: number }>(driver, layout.formatFile);
  if (format === undefined) {
    await writeBytes(
      driver,
      layout.formatFile,
      Buffer.from(`${JSON.stringify({ format: "walmgr-repo", version: 1, blockSize: shape.blockSize })}\n`),
      { exclusive: true },
    );
  } else if (format.format !== "walmgr-repo" || format.version !== 1 || typeof format.blockSize !== "number") {
    throw new IoError(
      `${posix.join(where, "format")} is not a block repository's format record this version reads`,
      "point backup_repo at an empty folder or a repository of walmgr-ts",
    );
  } else shape.blockSize = format.blockSize;
  const sets = await listRepoSets(driver, layout);
  const newest = sets[sets.length - 1];
  // After the newest, whatever the clock says (stepped back, or a master's and a standby's
  // clocks apart): "newest" is by name, and retention keeps the newest.
  const base =
    newest !== undefined && setName(new Date()) <= newest ? newest.replace(/-\d+$/, "") : setName(new Date());
  let name = base;
  for (let k = 1; name <= (newest ?? "") || (await driver.info(layout.manifestPath(name))) !== undefined; k++) {
    name = `${base}-${k}`;
  }
  const writer = await ManifestWriter.create(driver, layout.manifestPath(name), {
    format: "walmgr-repo-manifest",
    v: 1,
    set: name,
    blockSize: shape.blockSize,
  });
  let stored: StoreStats | undefined;
  return {
    where: `${where} (set ${name})`,
    publishesOnFinish: true,
    stats: () => stored,
    copy: async (source, _sysid, onProgress) => {
      const ref = newest === undefined ? undefined : await openManifest(driver, layout.manifestPath(newest));
      if (ref !== undefined && ref.header.blockSize !== shape.blockSize) {
        throw new IoError(
          `set ${newest} has blocks of ${ref.header.blockSize} bytes, this version writes ${shape.blockSize}`,
        );
      }
      stored = await storeTree(driver, layout, source, keepInBackup, shape, ref?.entries, (e) => writer.add(e), {
        onProgress,
        last: [PG_CONTROL],
      });
      ctx.log.info(
        `stored ${stored.files} files (${mib(stored.bytes)} MiB) into ${where}: ${mib(stored.newBytes)} MiB new, ${mib(stored.reusedBytes)} MiB as in set ${newest ?? "(none)"}, ${mib(stored.zeroBytes)} MiB zeros; ${mib(stored.storedBytes)} MiB written in ${stored.packs.length} pack(s)`,
      );
      return { files: stored.files, bytes: stored.bytes };
    },
    finish: async (labelfile, spcmapfile, info: BackupInfo) => {
      const s = stored;
      const setInfo = {
        ...info,
        labelfile,
        ...(spcmapfile ? { spcmapfile } : {}),
        reference: newest ?? null,
        compress: shape.codec.name,
        storedBytes: s?.storedBytes ?? 0,
        newBytes: s?.newBytes ?? 0,
        reusedBytes: s?.reusedBytes ?? 0,
        zeroBytes: s?.zeroBytes ?? 0,
        packs: s?.packs.length ?? 0,
      };
      const ok = await writer.commit(setInfo);
      if (!ok) throw new IoError(`set ${name} appeared in ${where} while this backup wrote it`);
      // A copy of the end line for listing and retention (the manifest stays the truth).
      await writeSetInfo(driver, layout, name, setInfo);
      ctx.log.info(`backup set ${name} written: ${posix.join(where, "sets", `${name}${MANIFEST_SUFFIX}`)}`);
    },
    abort: () => writer.abort(),
  };
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1);
}
