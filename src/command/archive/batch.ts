import { readdirSync, renameSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Context } from "../../context";
import { isErrno } from "../../errors";
import type { WalArchive } from "../../storage/archive";
import type { MultiArchive } from "./repositories";
import { fsyncDir } from "../../storage/durable";
import { parseWalName, type WalName } from "../../wal/names";
import { testPause } from "../backup/test-pause";

/**
 * The segments besides `%p` that one `wal-archive` run may archive: complete segments (never
 * `.history`, `.backup` or `.partial`: PostgreSQL's own calls keep those in its order) that
 * PostgreSQL has marked ready in `pg_wal/archive_status`, oldest first, at most `limit`.
 * Empty when `%p` is not in a folder with an `archive_status` beside it (a run by hand).
 */
export function readySegments(srcPath: string, current: string, limit: number): { statusDir: string; wals: WalName[] } {
  const statusDir = join(dirname(resolve(srcPath)), "archive_status");
  if (limit <= 0) return { statusDir, wals: [] };
  let entries: string[];
  try {
    entries = readdirSync(statusDir);
  } catch {
    return { statusDir, wals: [] };
  }
  const wals: WalName[] = [];
  for (const e of entries) {
    if (!e.endsWith(".ready")) continue;
    const name = e.slice(0, -".ready".length);
    const wal = parseWalName(name);
    if (name !== current && wal?.kind === "segment") wals.push(wal);
  }
  // Within a timeline names sort as positions; PostgreSQL also archives in name order.
  wals.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { statusDir, wals: wals.slice(0, limit) };
}

export interface BatchOutcome {
  /** Segments archived (or found archived with identical content) whose `.ready` became `.done`. */
  done: string[];
  /** Segments that failed; their `.ready` is untouched, PostgreSQL archives them itself. */
  failed: { name: string; error: unknown }[];
}

/**
 * Archives `names` (complete segments beside `%p`, see readySegments) with `parallel` workers.
 * Each segment's `.ready` becomes `.done` only once `archive.pushFile` resolved, which is when the segment and
 * its checksum are durable at the destination: PostgreSQL then never calls archive_command for it
 * (pgarch.c re-checks each cached name's `.ready` before archiving it, because "the
 * archive_command for a previous file may have already marked it done"), and its checkpointer
 * may recycle it. A crash before the rename leaves the `.ready`: PostgreSQL archives the segment
 * again and finds identical content. A failure (a conflict, an I/O error) is logged and leaves
 * the `.ready` alone; it never fails the run.
 */
export async function archiveBatch(
  ctx: Context,
  archive: WalArchive | MultiArchive,
  walDir: string,
  statusDir: string,
  names: WalName[],
  parallel: number,
): Promise<BatchOutcome> {
  const outcome: BatchOutcome = { done: [], failed: [] };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const wal = names[next++] as WalName;
      try {
        await archive.pushFile(wal, join(walDir, wal.name));
        await testPause("archive-batch-stored");
        markDone(statusDir, wal.name);
        outcome.done.push(wal.name);
      } catch (error) {
        outcome.failed.push({ name: wal.name, error });
        const e = error as { message?: string; hint?: string };
        ctx.log.warn(
          `batch: ${wal.name} not archived, left to PostgreSQL's own call: ${e.message ?? String(error)}${e.hint ? `\nHINT: ${e.hint}` : ""}`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, names.length)) }, worker));
  if (outcome.done.length > 0) {
    // One folder fsync for all renames: a rename lost to a crash only means PostgreSQL archives
    // that segment once more (identical content), never a .done without a durable copy.
    try {
      fsyncDir(statusDir);
    } catch {
      // Best effort, as above.
    }
    outcome.done.sort();
    ctx.log.info(
      `batch: archived ${outcome.done.length} more ready segment(s) to ${archive.completedDir} (${outcome.done[0] ?? ""}${outcome.done.length > 1 ? ` … ${outcome.done[outcome.done.length - 1] ?? ""}` : ""})`,
    );
  }
  return outcome;
}

/** Renames `name.ready` to `name.done`, as PostgreSQL does after a successful archive_command. */
function markDone(statusDir: string, name: string): void {
  try {
    renameSync(join(statusDir, `${name}.ready`), join(statusDir, `${name}.done`));
  } catch (err) {
    // PostgreSQL (or another run) marked it meanwhile: it is archived either way.
    if (!isErrno(err, "ENOENT")) throw err;
  }
}
