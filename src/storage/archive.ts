import { createHash } from "node:crypto";
import { posix } from "node:path";
import { readFileSync } from "node:fs";
import { ArchiveConflictError, IoError, ioError } from "../errors";
import type { WalName } from "../wal/names";
import type { StorageDriver } from "./driver";

export type PushResult = "stored" | "identical";

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

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
 * The archive policy over a storage driver: every archived file gets a checksum, an archived
 * file is never replaced with other content (safety rule 2), and nothing is served that fails
 * its checksum (rule 3).
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
   * are durable (the checksum first: a served file always has one; a checksum without its file
   * is inert). Identical content already archived is success ("identical"); other content is an
   * ArchiveConflictError and the archived copy is left as it was.
   */
  async pushFile(wal: WalName, src: string): Promise<{ result: PushResult; bytes: number }> {
    const dest = this.path(wal.name);
    if ((await this.driver.stat(dest)) === undefined) {
      const put = await this.driver.publishFile(dest, src, {
        exclusive: true,
        beforeCommit: async (hex) => {
          await this.driver.publish(this.checksumPath(wal.name), Buffer.from(formatChecksum(hex, wal.name)));
        },
      });
      if (put.stored) return { result: "stored", bytes: put.bytes };
      // Someone archived the same name meanwhile: judge their file like any existing one.
    }
    let data: Buffer;
    try {
      data = readFileSync(src);
    } catch (err) {
      throw ioError("cannot read WAL file", src, err);
    }
    return { result: await this.compareExisting(wal, data), bytes: data.length };
  }

  private async compareExisting(wal: WalName, data: Buffer): Promise<PushResult> {
    const dest = this.path(wal.name);
    const hex = sha256(data);
    const existing = await this.driver.read(dest);
    if (existing === undefined) throw new IoError(`${dest} vanished while being compared`, "retry the archive");
    if (!existing.equals(data)) {
      throw new ArchiveConflictError(
        `${dest} is already archived with other content (${existing.length} bytes, sha256 ${sha256(existing).slice(0, 16)}…; new: ${data.length} bytes, sha256 ${hex.slice(0, 16)}…)`,
        "two clusters may be archiving into the same directory, or a master was restored without a new timeline; the archived copy was left unchanged",
      );
    }
    const sum = await this.driver.read(this.checksumPath(wal.name));
    if (sum === undefined || !sum.toString("utf8").startsWith(hex)) {
      await this.driver.publish(this.checksumPath(wal.name), Buffer.from(formatChecksum(hex, wal.name)));
    }
    return "identical";
  }

  /**
   * The archived file, verified against its checksum; undefined when it is not archived.
   * `verified` is false for files archived without a checksum (by walmgr.py, say).
   */
  async fetch(name: string): Promise<{ data: Buffer; verified: boolean } | undefined> {
    const data = await this.driver.read(this.path(name));
    if (data === undefined) return undefined;
    const sum = await this.driver.read(this.checksumPath(name));
    if (sum === undefined) return { data, verified: false };
    const expected = sum.toString("utf8").slice(0, 64);
    const actual = sha256(data);
    if (expected !== actual) {
      throw new IoError(
        `${this.path(name)} fails its checksum (expected sha256 ${expected.slice(0, 16)}…, found ${actual.slice(0, 16)}…): refusing to serve it`,
        "the archived copy is corrupt: re-archive it from the master (if it still has it) or restore from a newer backup",
      );
    }
    return { data, verified: true };
  }

  /** Removes an archived file and its checksum. */
  async remove(name: string): Promise<boolean> {
    const removed = await this.driver.remove(this.path(name));
    await this.driver.remove(this.checksumPath(name));
    return removed;
  }
}
