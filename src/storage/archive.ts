import { posix } from "node:path";
import { statSync } from "node:fs";
import { ArchiveConflictError, IoError, ioError } from "../errors";
import type { WalName } from "../wal/names";
import { readBytes, writeBytes } from "./bytes";
import type { FileInfo, StorageDriver } from "./driver";
import { chunks, fetchToFile, storeFile, type FetchOptions } from "./files";
import { hashFile, hashStream } from "./sha256";

export type PushResult = "stored" | "identical";

/** Name of the checksum file beside an archived file: hidden, so never mistaken for WAL. */
export function checksumName(name: string): string {
  return `.${name}.sha256`;
}

export function isChecksumName(name: string): boolean {
  return name.startsWith(".") && name.endsWith(".sha256");
}

function formatChecksum(hex: string, name: string): string {
  // The sha256sum format, so `cd completed_wals && sha256sum -c .NAME.sha256` works by hand.
  return `${hex}  ${name}\n`;
}

/**
 * Refuses an empty file (or a device such as /dev/null) as `wal`: no WAL file PostgreSQL archives (segment, .partial,
 * .history, .backup) is ever empty, so an empty one is the wreck of a crash or a wrong path.
 * Archived, it would block the real file of that name forever (exit 8) and be served as a
 * short file to a standby. A pipe's size is unknown here and is not checked.
 */
function refuseEmpty(wal: WalName, src: string): void {
  let st;
  try {
    st = statSync(src);
  } catch {
    return; // reported with its path when the copy opens it
  }
  // Devices (/dev/null, /dev/zero) report size 0 too: never WAL, and /dev/zero never ends.
  if (!st.isFIFO() && st.size === 0) {
    throw new IoError(
      `${src} is empty${st.isFile() ? "" : " (not a regular file)"}: refusing to archive it as ${wal.name} (PostgreSQL never archives an empty WAL file)`,
      "check the path given to wal-archive; if PostgreSQL passed it, the master's pg_wal is damaged (a crash?): nothing was archived",
    );
  }
}

/**
 * The archive policy over a storage driver: every archived file gets a checksum, an archived
 * file is never replaced with other content (safety rule 2), and nothing is served that fails
 * its checksum (rule 3). Everything streams: a segment of any size costs constant memory.
 */
export class WalArchive {
  constructor(
    readonly driver: StorageDriver,
    readonly completedDir: string,
  ) {}

  path(name: string): string {
    return posix.join(this.completedDir, name);
  }

  checksumPath(name: string): string {
    return posix.join(this.completedDir, checksumName(name));
  }

  /**
   * Archives the local file `src` as `wal.name`. Resolves only once the file and its checksum
   * are durable. Identical content already archived is success ("identical"); other content is
   * an ArchiveConflictError and the archived copy and its checksum are left as they were.
   *
   * The checksum always belongs to the file that won: the file is published exclusively (of
   * concurrent archivers of one name, exactly one stores) and only the one that stored writes
   * the checksum, afterwards. Until then, and forever if it dies in between, the file has no
   * checksum: wal-restore serves it unverified, which is safe because it became visible only
   * complete and fsynced; PostgreSQL's retry of the archive then finds identical content and
   * writes the checksum. A checksum written first (as before) could be the loser's.
   */
  async pushFile(wal: WalName, src: string): Promise<{ result: PushResult; bytes: number }> {
    refuseEmpty(wal, src);
    const dest = this.path(wal.name);
    const info = await this.driver.info(dest);
    if (info?.isSymlink === true || info?.isFile === false) this.refuseNotAFile(dest, info);
    let local: { sha256: string; bytes: number } | undefined;
    if (info === undefined) {
      const put = await storeFile(this.driver, dest, src, { exclusive: true, sweepDeadWriters: true });
      if (put.stored) {
        await this.writeChecksum(wal.name, put.sha256);
        return { result: "stored", bytes: put.bytes };
      }
      // Someone archived the same name meanwhile: judge their file like any existing one.
      local = put;
    }
    if (local === undefined) {
      try {
        local = hashFile(src);
      } catch (err) {
        throw ioError("cannot read WAL file", src, err);
      }
    }
    return { result: await this.compareExisting(wal, local), bytes: local.bytes };
  }

  private async writeChecksum(name: string, hex: string): Promise<void> {
    await writeBytes(this.driver, this.checksumPath(name), Buffer.from(formatChecksum(hex, name)));
  }

  private refuseNotAFile(dest: string, info: FileInfo): never {
    const what = info.isSymlink ? "a symbolic link" : info.isDirectory ? "a folder" : "a special file";
    throw new IoError(
      `${dest} is ${what}, not an archived WAL file: refusing to archive through it`,
      `wal-archive only ever creates regular files there; find out who made ${dest}, remove it, and PostgreSQL's next retry archives the segment`,
    );
  }

  /**
   * Compares the archived `wal.name` with the local file's digest by streaming the archived
   * copy through sha256 (never holding either in memory).
   */
  private async compareExisting(wal: WalName, local: { sha256: string; bytes: number }): Promise<PushResult> {
    const dest = this.path(wal.name);
    const stream = await this.driver.newRead(dest);
    if (stream === undefined) throw new IoError(`${dest} vanished while being compared`, "retry the archive");
    const existing = await hashStream(chunks(stream));
    if (existing.sha256 !== local.sha256 || existing.bytes !== local.bytes) {
      throw new ArchiveConflictError(
        `${dest} is already archived with other content (${existing.bytes} bytes, sha256 ${existing.sha256.slice(0, 16)}…; new: ${local.bytes} bytes, sha256 ${local.sha256.slice(0, 16)}…)`,
        "two clusters may be archiving into the same directory, or a master was restored without a new timeline; the archived copy was left unchanged",
      );
    }
    // The archived bytes are ours, so a missing checksum (a walmgr.py archive, or a winner
    // that died before writing it) or a wrong one is repaired from them: never otherwise.
    const sum = await readBytes(this.driver, this.checksumPath(wal.name));
    if (sum === undefined || !sum.toString("utf8").startsWith(local.sha256)) {
      await this.writeChecksum(wal.name, local.sha256);
    }
    return "identical";
  }

  /**
   * Restores the archived `name` to the local file `dest`: streamed through sha256 into a temp
   * beside `dest` that is renamed to `dest` only when the digest matches the checksum file, so
   * `dest` never holds a short, partial or corrupt file (safety rule 3). Undefined when `name`
   * is not archived; `verified` is false for files archived without a checksum (by walmgr.py,
   * say). A mismatch is an IoError and leaves nothing at `dest`. `beforeRename` (see
   * fetchToFile) runs on the complete temp before it becomes `dest`, only when it was verified.
   */
  async restoreTo(
    name: string,
    dest: string,
    opts: Pick<FetchOptions, "durable" | "beforeRename"> = {},
  ): Promise<{ bytes: number; verified: boolean; sha256: string } | undefined> {
    const path = this.path(name);
    // The checksum first: it is written after its file and removed before it, so one that is
    // there has its file (or the file's removal under way: then nothing is served).
    const sum = await readBytes(this.driver, this.checksumPath(name));
    const expected = sum === undefined ? undefined : sum.toString("utf8").slice(0, 64);
    const got = await fetchToFile(this.driver, path, dest, {
      ...(expected !== undefined ? { expectSha256: expected } : {}),
      ...(opts.durable === true ? { durable: true } : {}),
      // Only a verified copy is handed on: an unverified one has nothing to vouch for it.
      ...(opts.beforeRename !== undefined && expected !== undefined ? { beforeRename: opts.beforeRename } : {}),
      onMismatch: (actual) =>
        new IoError(
          `${path} fails its checksum (expected sha256 ${(expected ?? "").slice(0, 16)}…, found ${actual.slice(0, 16)}…): refusing to serve it`,
          "the archived copy is corrupt: re-archive it from the master (if it still has it) or restore from a newer backup",
        ),
    });
    if (got === undefined) return undefined;
    return { bytes: got.bytes, verified: expected !== undefined, sha256: got.sha256 };
  }

  /**
   * Removes an archived file and its checksum, the checksum first: a crash in between leaves a
   * file served unverified, never a checksum without its file, which a later archive of the same
   * name would meet (wrong) in the moment before it writes its own.
   */
  async remove(name: string): Promise<boolean> {
    await this.driver.remove(this.checksumPath(name));
    return this.driver.remove(this.path(name));
  }
}
