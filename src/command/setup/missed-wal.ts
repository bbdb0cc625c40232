/**
 * WAL a node holds that is in no archive (a promoted standby's new timeline), archived by setup
 * before the restart that turns archiving on could recycle it; each segment is checked by its
 * first page (wal/page.ts) before and after its copy.
 */
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, posix } from "node:path";
import type { Context } from "../../context";
import { ArchiveConflictError, ioError, isErrno } from "../../errors";
import { slaveLayout } from "../../slavedir/layout";
import { type Db } from "../../pg/client";
import { processAlive } from "../../proc";
import { writeAll } from "../../storage/durable";
import { parseLsn, parseWalName, segmentName, segmentNumber } from "../../wal/names";
import { holdsOwnWal, PAGE_ADDRESS_END } from "../../wal/page";
import { walDirOf } from "../../pg/wal-dir";
import { archivePush } from "../archive/push";

/**
 * A node that did not archive (a booted standby: `restore` turned archiving off) holds WAL that
 * is in no archive: the .history file of its timeline (PostgreSQL archives it only at the
 * promotion itself) and the segments it completed since. The restart that turns archiving on
 * would recycle those segments, and a standby restored from an older backup set could never
 * follow the new timeline: copy them into completed_wals first (an identical copy is fine; a
 * different .history there means another node made the same timeline: refused, exit 8).
 */
export async function archiveMissedWal(ctx: Context, db: Db | undefined, dataDir: string): Promise<void> {
  const walDir = walDirOf(dataDir);
  let names: string[];
  try {
    names = readdirSync(walDir);
  } catch (err) {
    ctx.log.warn(`cannot list ${walDir} (${(err as Error).message}): .history files not checked`);
    return;
  }
  const archived = (n: string): boolean => existsSync(join(walDir, "archive_status", `${n}.done`));
  const history = names.filter((n) => parseWalName(n)?.kind === "history" && !archived(n)).sort();
  let segments: string[] = [];
  if (db && !(await db.one<{ r: boolean }>("SELECT pg_is_in_recovery() AS r")).r) {
    const fn =
      db.serverVersion >= 100000
        ? "pg_walfile_name(pg_current_wal_lsn())"
        : "pg_xlogfile_name(pg_current_xlog_location())";
    const current = (await db.one<{ f: string }>(`SELECT ${fn} AS f`)).f;
    const tli = current.slice(0, 8);
    // On timeline 1 nothing older than the first backup taken after setup is needed.
    if (tli !== "00000001") {
      segments = names
        .filter((n) => parseWalName(n)?.kind === "segment" && n.startsWith(tli) && n < current && !archived(n))
        .sort();
      await warnGoneSinceSwitch(ctx, segmentsGoneSinceSwitch(walDir, current, names));
    }
  }
  if (history.length + segments.length === 0) return;
  const what = `${[...history, ...segments].join(", ")} from ${walDir}, written while this server did not archive`;
  if (ctx.dryRun) {
    ctx.out(`[not really] archive ${what}`);
    return;
  }
  ctx.log.info(`archiving ${what} (a restart would recycle the segments)`);
  for (const n of history) {
    try {
      await archivePush(ctx, join(walDir, n), n);
    } catch (err) {
      if (!(err instanceof ArchiveConflictError)) throw err;
      throw new ArchiveConflictError(
        `${n} in completed_wals differs from this server's: another server already made timeline ${Number.parseInt(n.slice(0, 8), 16)} in this slave directory (were two standbys booted?)`,
        `never archive two masters into one slave directory: give ${ctx.config.file} its own slave directory, run setup again, and take a new backup`,
      );
    }
  }
  removeDeadSetupTemps();
  const tmp = mkdtempSync(join(tmpdir(), `${SETUP_TMP_PREFIX}${process.pid}-`));
  try {
    for (const n of segments) await archiveSegmentCopy(ctx, join(walDir, n), join(tmp, n));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The segments of the current timeline, from its switch point (the last line of its .history
 * file in `walDir`) up to before `current`, that `names` (the listing of `walDir`) lacks: WAL the
 * node wrote after its promotion and recycled while it did not archive. Empty when there is no
 * .history file for the timeline.
 */
export function segmentsGoneSinceSwitch(walDir: string, current: string, names: string[]): string[] {
  const tli = Number.parseInt(current.slice(0, 8), 16);
  let text: string;
  let size: number;
  try {
    text = readFileSync(join(walDir, `${current.slice(0, 8)}.history`), "utf8");
    size = statSync(join(walDir, current)).size;
  } catch {
    return [];
  }
  const entries = text.split("\n").filter((l) => l.trim() !== "" && !l.trim().startsWith("#"));
  const switchLsn = entries[entries.length - 1]?.trim().split(/\s+/)[1];
  if (switchLsn === undefined) return [];
  let first: bigint;
  try {
    first = parseLsn(switchLsn) / BigInt(size);
  } catch {
    return [];
  }
  const have = new Set(names);
  const gone: string[] = [];
  for (let n = first; n < segmentNumber(current, size); n++) {
    const name = segmentName(tli, n, size);
    if (!have.has(name)) gone.push(name);
  }
  return gone;
}

/** Warns (loudly: a set taken before the failover cannot follow) about new-timeline WAL in no archive. */
async function warnGoneSinceSwitch(ctx: Context, gone: string[]): Promise<void> {
  if (gone.length === 0) return;
  const layout = slaveLayout(ctx.config, "setup");
  const lost: string[] = [];
  for (const n of gone) {
    if ((await layout.driver.info(posix.join(layout.completed.path, n))) === undefined) lost.push(n);
  }
  if (lost.length === 0) return;
  const list = lost.length > 3 ? `${lost[0]} … ${lost[lost.length - 1]}` : lost.join(", ");
  ctx.log.warn(
    `${lost.length} segment(s) this server wrote after its promotion (${list}) were recycled before archiving was on and are in no archive: a standby restored from a set taken before the failover cannot follow this timeline; take a new backup now (wal-backup ${ctx.config.file})`,
  );
}

const SETUP_TMP_PREFIX = "walmgr-setup-";

/** Removes the temp folders of setups that died (kill -9) while copying a segment: up to 16 MB each. */
function removeDeadSetupTemps(): void {
  const uid = process.getuid?.();
  try {
    for (const n of readdirSync(tmpdir())) {
      const m = new RegExp(`^${SETUP_TMP_PREFIX}(\\d+)-`).exec(n);
      if (!m || processAlive(Number(m[1]))) continue;
      const path = join(tmpdir(), n);
      if (uid === undefined || statSync(path).uid === uid) rmSync(path, { recursive: true, force: true });
    }
  } catch {
    // best effort: a leftover costs space, not correctness
  }
}

/**
 * Archives a completed segment of a server that does not archive yet: a checkpoint may recycle
 * (rename and reuse) it at any moment, so it is copied to `tmp` first and archived only when
 * its first page still holds its own WAL address after the copy (WAL is written from the start
 * of a segment, so an unchanged first page means no page was reused while it was copied).
 */
async function archiveSegmentCopy(ctx: Context, src: string, tmp: string): Promise<void> {
  const name = basename(src);
  let fd: number;
  try {
    fd = openSync(src, "r");
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw ioError("cannot open", src, err);
    ctx.log.warn(`${src} was recycled before it could be archived: a standby from an older backup cannot follow`);
    return;
  }
  try {
    const size = fstatSync(fd).size;
    const expected = segmentNumber(name, size) * BigInt(size);
    const holdsItsWal = (): boolean => {
      const head = Buffer.alloc(PAGE_ADDRESS_END);
      return readSync(fd, head, 0, head.length, 0) === head.length && holdsOwnWal(head, expected);
    };
    const recycled = `${src} was recycled before it could be archived: a standby from an older backup cannot follow`;
    if (!holdsItsWal()) return ctx.log.warn(recycled);
    const out = openSync(tmp, "wx", 0o600);
    try {
      const buf = Buffer.alloc(1024 * 1024);
      for (let pos = 0; ;) {
        const n = readSync(fd, buf, 0, buf.length, pos);
        if (n === 0) break;
        writeAll(out, buf.subarray(0, n));
        pos += n;
      }
    } finally {
      closeSync(out);
    }
    if (!holdsItsWal()) return ctx.log.warn(recycled);
    await archivePush(ctx, tmp, name);
  } finally {
    closeSync(fd);
    rmSync(tmp, { force: true });
  }
}
