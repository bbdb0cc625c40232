/**
 * Whole small files (control files, locks, state, backup_label, checksums) over any driver:
 * read into one buffer, written as one object. Segments and backups never come through here:
 * they stream (files.ts, archive.ts).
 */
import { IoError } from "../errors";
import type { StorageDriver, WriteOptions } from "./driver";

/** Largest file `readBytes` reads whole: far above any control or state file, far below RAM. */
export const SMALL_FILE_LIMIT = 64 * 1024 * 1024;

/**
 * The whole content of the small file `path`; undefined when nothing is there. A file larger
 * than `limit` is an IoError naming it (it is not what the caller thinks it is).
 */
export async function readBytes(
  driver: StorageDriver,
  path: string,
  limit = SMALL_FILE_LIMIT,
): Promise<Buffer | undefined> {
  const stream = await driver.newRead(path);
  if (stream === undefined) return undefined;
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      stream.destroy();
      throw new IoError(
        `${path} (${driver.description}) is larger than ${limit} bytes: not the small file expected there`,
        "find out what replaced it; remove it if it does not belong there",
      );
    }
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts, total);
}

/**
 * The JSON in the small file `path`, as the caller's type (unchecked: for our own state files);
 * undefined when nothing is there or it is not JSON (a file from a newer or crashed writer
 * reads as none, never as an error).
 */
export async function readJson<T>(driver: StorageDriver, path: string): Promise<T | undefined> {
  const raw = await readBytes(driver, path);
  if (raw === undefined) return undefined;
  try {
    return JSON.parse(raw.toString("utf8")) as T;
  } catch {
    return undefined;
  }
}

/**
 * Stores `data` at `path` as one object (complete and durable once this resolves); false when
 * `exclusive` and the name was taken (nothing changed).
 */
export async function writeBytes(
  driver: StorageDriver,
  path: string,
  data: Uint8Array,
  opts: WriteOptions = {},
): Promise<boolean> {
  const handle = await driver.newWrite(path, opts);
  try {
    await new Promise<void>((resolve, reject) => {
      handle.once("error", reject);
      handle.end(data, () => {
        handle.off("error", reject);
        resolve();
      });
    });
  } catch (err) {
    await handle.abort();
    throw err;
  }
  return handle.commit();
}
