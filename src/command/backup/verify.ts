import { dirname, join, posix } from "node:path";
import type { Context } from "../../context";
import { ExitCode, IoError, WalmgrError } from "../../errors";
import { slaveLayout } from "../../layout";
import { readBytes } from "../../storage/bytes";
import { chunks } from "../../storage/files";
import { hashStream } from "../../storage/sha256";
import { parseManifest } from "../../storage/manifest";
import { BACKUP_MANIFEST, listSets } from "./sets";

/**
 * `verify [SET]`: checks every file of a backup set (all sets when none is named) against the
 * manifest written when it was taken. A missing, resized or changed file is an I/O error (9).
 */
export async function verify(ctx: Context): Promise<void> {
  const layout = slaveLayout(ctx.config, "verify");
  const full = ctx.config.requireLocation("full_backup", "verify");
  const [setArg] = ctx.args;
  const sets = setArg
    ? [
        full.bucket !== undefined && !setArg.startsWith("/")
          ? posix.join(posix.dirname(full.path), setArg)
          : setArg.includes("/")
            ? setArg
            : join(dirname(full.path), setArg),
      ]
    : await listSets(layout.driver, full.path);
  if (sets.length === 0) throw new WalmgrError(`no backup set in ${dirname(full.path)}`, ExitCode.NOT_AVAILABLE);
  const bad: string[] = [];
  const driver = layout.driver;
  for (const set of sets) {
    const file = posix.join(set, BACKUP_MANIFEST);
    let manifest;
    try {
      // Through the storage driver: a set in an object store (or on the slave host) is read where it is.
      const raw = await readBytes(driver, file);
      if (raw === undefined) {
        bad.push(`${set}: no manifest (${BACKUP_MANIFEST})`);
        continue;
      }
      manifest = parseManifest(raw.toString("utf8"), file);
    } catch (err) {
      // One damaged set fails the run, after the others are checked too.
      bad.push(`${set}: ${(err as Error).message}`);
      continue;
    }
    let checked = 0;
    for (const [rel, want] of Object.entries(manifest.files)) {
      const path = posix.join(set, rel);
      try {
        const stream = await driver.newRead(path);
        if (stream === undefined) {
          bad.push(`${set}: ${rel} is missing`);
          continue;
        }
        const got = await hashStream(chunks(stream));
        if (got.bytes !== want.size) bad.push(`${set}: ${rel} has ${got.bytes} bytes, expected ${want.size}`);
        else if (got.sha256 !== want.sha256) bad.push(`${set}: ${rel} does not match its checksum`);
      } catch (err) {
        bad.push(`${set}: cannot read ${rel}: ${(err as Error).message}`);
      }
      checked++;
    }
    ctx.out(`${set}: ${checked} files checked`);
  }
  if (bad.length > 0) {
    throw new IoError(
      `backup verification failed:\n  ${bad.join("\n  ")}`,
      "take a new backup; do not restore a damaged set",
    );
  }
  ctx.out("all backup sets verified");
}
