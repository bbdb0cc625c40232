import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Context } from "../../context";
import { callTimeLeft, setCallDeadline } from "../../deadline";
import { childProcess } from "../../lazy";
import { parseWalName, type WalName } from "../../wal/names";
import { AckRecords } from "./acks";
import { archiveBatch } from "./batch";
import { archiveCallSeconds } from "./call-seconds";
import { archiveRepositories, MultiArchive, type Repository } from "./repositories";

/** The bundle (dist/bin/NAME.js) of the background pusher; not an executable of its own in bin/. */
export const PUSHER_PROGRAM = "wal-archive-ahead";

/** How long the pusher waits for its parent to hand a claimed segment over (see startPusher). */
const HANDOVER_MS = 2000;

/**
 * Batch archiving's background half, on the parent's side: hands `wals` (ready segments after
 * `%p`, see readySegments) to a detached pusher (runPusher) and returns at once, so that
 * PostgreSQL's call for `%p` ends as soon as `%p` itself is durable while the rest is archived
 * meanwhile. Each segment is first claimed with a marker naming this process (atomic; one a live
 * run holds is left to it), then handed to the pusher's pid. bin/wal-archive's front, called
 * for a marked segment, waits for its record while the pusher lives. Returns the names handed
 * over; never fails the call: a pusher that cannot start only costs PostgreSQL's calls a Node run.
 */
export function startPusher(ctx: Context, acks: AckRecords, walDir: string, wals: WalName[]): string[] {
  // The front waits at most this long for one record: the pusher's whole run is bounded by it.
  const seconds = archiveCallSeconds(ctx.config) + 5;
  const claimed = wals.filter((w) => acks.claimPush(w.name, process.pid, seconds)).map((w) => w.name);
  if (claimed.length === 0) return [];
  const js = join(__dirname, `${PUSHER_PROGRAM}.js`);
  if (!existsSync(js)) {
    // Only the bundles in dist/bin have it beside them (not the modules tests load directly).
    for (const n of claimed) acks.dropPush(n, process.pid);
    return [];
  }
  // Through the V8 code cache the build wrote, as the sh fronts start Node (src/cli/code-cache.ts).
  const loader = join(__dirname, "..", "src", "cli", "code-cache.js");
  let pid: number | undefined;
  try {
    const child = childProcess().spawn(
      process.execPath,
      [
        ...(existsSync(loader) ? [loader] : []),
        js,
        resolve(ctx.config.file),
        resolve(walDir),
        ctx.config.stamp,
        ...claimed,
      ],
      // Its own session, no stdio: it never holds PostgreSQL's pipes or process group; its
      // working directory is /, so it never keeps the data directory's file system busy.
      { cwd: "/", detached: true, stdio: "ignore", env: pusherEnv(ctx.config.int("archive_parallel")) },
    );
    child.on("error", () => undefined); // reported below: no pid
    child.unref();
    pid = child.pid;
  } catch (err) {
    ctx.log.warn(`batch: archiving ahead not started: ${(err as Error).message}`);
  }
  if (pid === undefined) {
    for (const n of claimed) acks.dropPush(n, process.pid);
    return [];
  }
  for (const n of claimed) acks.handPush(n, pid, seconds);
  return claimed;
}

/**
 * The pusher's environment: ours, with libuv's thread pool sized for `parallel` copies (reads,
 * writes and fsyncs of each run there). With the default 4 threads, 4 copies at once queued
 * behind one another: 16 segments took 565-662 ms 4 at a time, 331-444 ms one at a time, and
 * 245-309 ms 4 at a time with 16 threads (copies through copy_file_range, which held a thread
 * for a whole segment).
 */
function pusherEnv(parallel: number): NodeJS.ProcessEnv {
  return { ...process.env, UV_THREADPOOL_SIZE: String(Math.min(64, Math.max(4, 2 * parallel + 2))) };
}

/**
 * The background pusher (`wal-archive-ahead CONFIG WALDIR STAMP NAME...`, started by
 * startPusher): archives each NAME in WALDIR to every configured repository (archive_parallel
 * at a time, within the archive_command call's bound) and records each durable one for the
 * shell front (acks.ts), removing its marker after the record. It touches only the segments
 * handed to it, and makes no record at all when CONFIG is not the file, unchanged, its parent
 * read (STAMP), nor once CONFIG changes under it.
 */
export async function runPusher(ctx: Context, walDir: string, stamp: string, names: string[]): Promise<void> {
  setCallDeadline(archiveCallSeconds(ctx.config), "s3_timeout × (s3_retries + 1)");
  const acks = AckRecords.open(walDir, join(walDir, "archive_status"), ctx.config.file, ctx.config.stamp);
  if (acks === undefined) return;
  const mine = await handedOver(acks, names);
  if (mine.length === 0) return;
  const drop = (): void => mine.forEach((w) => acks.dropPush(w.name, process.pid));
  if (ctx.config.stamp !== stamp || !acks.vouch()) {
    ctx.log.info(`batch: ${ctx.config.file} changed since ${mine[0]?.name ?? ""} was archived: nothing archived ahead`);
    drop();
    return;
  }
  try {
    const repos = archiveRepositories(ctx.config);
    const [main] = repos as [Repository, ...Repository[]];
    const archive = repos.length === 1 ? main.archive : new MultiArchive(repos);
    // Over ssh one helper session serves one request at a time: workers there would only queue.
    const parallel = repos.every((r) => r.loc.host === undefined) ? ctx.config.int("archive_parallel") : 1;
    await archiveBatch(ctx, archive, walDir, mine, parallel, acks);
  } finally {
    drop();
  }
}

/**
 * The segments among `names` whose markers name this process: its parent hands each over right
 * after starting it, long before this code runs; a marker still naming another process after
 * HANDOVER_MS was never ours to archive.
 */
async function handedOver(acks: AckRecords, names: string[]): Promise<WalName[]> {
  const wals = names.map((n) => parseWalName(n)).filter((w): w is WalName => w?.kind === "segment");
  const until = Date.now() + Math.min(HANDOVER_MS, callTimeLeft());
  for (;;) {
    const mine = wals.filter((w) => acks.pushOwner(w.name) === process.pid);
    if (mine.length === wals.length || Date.now() >= until) return mine;
    await new Promise((r) => setTimeout(r, 5));
  }
}
