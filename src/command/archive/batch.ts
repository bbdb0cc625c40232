import { readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Context } from "../../context";
import type { WalArchive } from "../../storage/archive";
import type { MultiArchive } from "./repositories";
import { parseWalName, type WalName } from "../../wal/names";
import { testPause } from "../../test-pause";
import { callDeadline, callTimeLeft } from "../../deadline";
import type { AckRecords } from "./acks";

/**
 * The segments besides `%p` that one `wal-archive` run may archive: complete segments (never
 * `.history`, `.backup` or `.partial`: PostgreSQL's own calls keep those in its order) that
 * PostgreSQL has marked ready in `pg_wal/archive_status`, oldest first, at most `limit`.
 * Empty when `%p` is not in a folder with an `archive_status` beside it (a run by hand).
 * Segments `skip` answers true for (already archived ahead and recorded) are passed over.
 */
export function readySegments(
  srcPath: string,
  current: string,
  limit: number,
  skip: (name: string) => boolean = () => false,
): { statusDir: string; wals: WalName[] } {
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
    if (name !== current && wal?.kind === "segment" && !skip(name)) wals.push(wal);
  }
  // Within a timeline names sort as positions; PostgreSQL also archives in name order.
  wals.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { statusDir, wals: wals.slice(0, limit) };
}

export interface BatchOutcome {
  /** Segments archived ahead (or found archived with identical content) and recorded. */
  done: string[];
  /** Segments that failed or were given up; PostgreSQL's own call archives them through the slow path. */
  failed: { name: string; error: unknown }[];
}

/**
 * Archives `names` (complete segments in `walDir`, see readySegments) ahead of PostgreSQL, with
 * `parallel` workers: the background pusher's work (ahead.ts). Their `.ready` files are left
 * alone: PostgreSQL still calls archive_command for each, in its order, and marks each done
 * itself, so its statistics stay exact. Each segment whose `archive.pushFile` resolved (the
 * segment and its checksum durable in every repository) gets an acknowledgement record (`acks`,
 * see acks.ts) that bin/wal-archive's shell front answers that call from, in a few milliseconds;
 * then its push marker goes. A record is made only for the very file that was pushed, and only
 * while the config is unchanged; once it changed, nothing more is archived ahead. A crash before
 * the record only costs that call the slow path, which finds identical content. A failure (a
 * conflict, an I/O error, the call's bound reached) is logged and leaves no record.
 */
export async function archiveBatch(
  ctx: Context,
  archive: WalArchive | MultiArchive,
  walDir: string,
  names: WalName[],
  parallel: number,
  acks: AckRecords,
): Promise<BatchOutcome> {
  const outcome: BatchOutcome = { done: [], failed: [] };
  let next = 0;
  let stopped: string | undefined;
  const worker = async (): Promise<void> => {
    while (next < names.length) {
      const wal = names[next++] as WalName;
      const path = join(walDir, wal.name);
      try {
        if (stopped !== undefined) throw new Error(stopped);
        if (callTimeLeft() <= 0) throw new Error(`the call's bound (${callDeadline()?.what ?? "?"}) was reached`);
        const pushed = statSync(path);
        await archive.pushFile(wal, path);
        await testPause("archive-batch-stored");
        if (!acks.current()) {
          stopped = `${ctx.config.file} changed meanwhile`;
          acks.clear();
          throw new Error(stopped);
        }
        acks.record(wal.name, pushed);
        if (!acks.current()) {
          stopped = `${ctx.config.file} changed meanwhile`;
          acks.clear();
          throw new Error(stopped);
        }
        outcome.done.push(wal.name);
      } catch (error) {
        outcome.failed.push({ name: wal.name, error });
        const e = error as { message?: string; hint?: string };
        ctx.log.warn(
          `batch: ${wal.name} not archived ahead, left to PostgreSQL's own call: ${e.message ?? String(error)}${e.hint ? `\nHINT: ${e.hint}` : ""}`,
        );
      } finally {
        acks.dropPush(wal.name, process.pid);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, names.length)) }, worker));
  if (outcome.done.length > 0) {
    outcome.done.sort();
    ctx.log.info(
      `batch: archived ${outcome.done.length} more ready segment(s) ahead to ${archive.completedDir} (${outcome.done[0] ?? ""}${outcome.done.length > 1 ? ` … ${outcome.done[outcome.done.length - 1] ?? ""}` : ""})`,
    );
  }
  return outcome;
}
