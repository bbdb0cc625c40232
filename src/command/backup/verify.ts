import { dirname, join, posix } from "node:path";
import type { Context } from "../../context";
import { ExitCode, IoError, WalmgrError, type ExitCodeValue } from "../../errors";
import { slaveLayout } from "../../slavedir/layout";
import { readBytes } from "../../storage/bytes";
import { checksumName } from "../../storage/archive";
import type { StorageDriver } from "../../storage/driver";
import { chunks } from "../../storage/files";
import { hashStream } from "../../storage/sha256";
import { parseManifest } from "../../storage/manifest";
import { archiveGaps, reach, type Gap, type Reach } from "../../monitor/chain";
import { checkArchivedFile, listArchive, type BadFile } from "../../monitor/wal-scan";
import { setStart, startFromInfo, type SetStart } from "../../monitor/set-start";
import { checkRepoSet } from "../../repo/check";
import { listRepoSets, REPO_SET_NAME, repoSetInfo } from "../../repo/sets";
import { openRepo } from "./repo";
import { findTwoWriters, type TwoWriters } from "../../monitor/two-writers";
import { unsafeFiles, type UnsafeFile } from "../../monitor/owners-scan";
import { comparePosition, parseWalName } from "../../wal/names";
import { BACKUP_MANIFEST, listSets } from "../../slavedir/backup-sets";
import { startProgress, type Progress } from "../../progress";

/** One backup set as verify found it (`verify --json`: schemas/verify.schema.json). */
export interface SetReport {
  name: string;
  path: string;
  /** Files checked against the manifest; null when there is no readable manifest. */
  files: number | null;
  bytes: number;
  timeline: number | null;
  startWal: string | null;
  /** The last segment recovery needs to be consistent. */
  stopWal: string | null;
  /** The set can be restored: its files match and the WAL to its consistency point is there. */
  restorable: boolean;
  /** What recovery from it reaches in the archive (null when its start is unknown). */
  reach: Reach | null;
  problems: string[];
}

/** The archive as verify found it. */
export interface WalReport {
  dir: string;
  segmentSize: number;
  /** WAL files re-read (segments, .history, .backup, .partial). */
  files: number;
  bytes: number;
  /** Files with a checksum that matched. */
  verified: number;
  /** Files without a checksum (archived by walmgr.py): checked by size and header only. */
  unchecksummed: number;
  newestSegment: string | null;
  corrupt: BadFile[];
  gaps: Gap[];
  unexpected: BadFile[];
}

export interface VerifyReport {
  /** Every set restorable and the WAL sound (two writers are a warning: they do not change it). */
  ok: boolean;
  sets: SetReport[];
  wal: WalReport;
  /** Signs of two masters writing into the slave directory at once (see monitor/two-writers.ts). */
  twoWriters: TwoWriters;
  /**
   * Files and folders of the slave directory another user could have written (their owner or
   * mode): nothing in them is served or restored until they are made ours again.
   */
  unsafe: UnsafeFile[];
}

/** `verify SET`: a set name (data.master.1) beside full_backup, or a path. */
function namedSet(full: { path: string; bucket?: string }, arg: string): string {
  if (full.bucket !== undefined && !arg.startsWith("/")) return posix.join(posix.dirname(full.path), arg);
  return arg.includes("/") ? arg : join(dirname(full.path), arg);
}

/** Checks every file of `set` against its manifest; problems go to `problems`. */
async function checkManifest(
  driver: StorageDriver,
  set: string,
  problems: string[],
  progress?: Progress,
): Promise<{ files: number | null; bytes: number }> {
  const file = posix.join(set, BACKUP_MANIFEST);
  let manifest;
  try {
    // Through the storage driver: a set in an object store (or on the slave host) is read where it is.
    const raw = await readBytes(driver, file);
    if (raw === undefined) {
      problems.push(`no manifest (${BACKUP_MANIFEST}): its files cannot be checked`);
      return { files: null, bytes: 0 };
    }
    manifest = parseManifest(raw.toString("utf8"), file);
  } catch (err) {
    problems.push((err as Error).message);
    return { files: null, bytes: 0 };
  }
  const entries = Object.entries(manifest.files);
  progress?.stage(`checking ${set} against its manifest`, {
    files: entries.length,
    bytes: entries.reduce((sum, [, f]) => sum + f.size, 0),
  });
  let files = 0;
  let bytes = 0;
  for (const [rel, want] of entries) {
    try {
      const stream = await driver.newRead(posix.join(set, rel));
      if (stream === undefined) {
        problems.push(`${rel} is missing`);
        continue;
      }
      const counted = async function* (): AsyncGenerator<Buffer> {
        for await (const c of chunks(stream)) {
          progress?.add(c.length);
          yield c;
        }
      };
      const got = await hashStream(counted());
      bytes += got.bytes;
      if (got.bytes !== want.size) problems.push(`${rel} has ${got.bytes} bytes, expected ${want.size}`);
      else if (got.sha256 !== want.sha256) problems.push(`${rel} does not match its checksum`);
    } catch (err) {
      problems.push(`cannot read ${rel}: ${(err as Error).message}`);
    }
    files++;
    progress?.add(0, 1);
  }
  return { files, bytes };
}

/**
 * Verifies backups and the archive: files and folders of the slave directory another user could
 * have written (`unsafe`: never served or restored, so they count as missing); every file of each set (all sets, or the one named) against
 * its manifest; every WAL file in completed_wals (from the oldest start of the sets checked, or
 * all of it) against its checksum, size and page header; the WAL chain per timeline, with every
 * gap; and for each set how far recovery from it reaches. Everything is read through the
 * storage driver, so it works from the master for an ssh or S3 slave directory too.
 */
export async function runVerify(ctx: Context, progress?: Progress): Promise<VerifyReport> {
  const onBytes = (n: number): void => progress?.add(n);
  const layout = slaveLayout(ctx.config, "verify");
  const driver = layout.driver;
  const full = ctx.config.requireLocation("full_backup", "verify");
  const [setArg] = ctx.args;
  // The block repository's sets (backup_format = repo) beside the plain ones; one named by its
  // time is the repository's.
  const repo = ctx.config.location("backup_repo") !== undefined ? openRepo(ctx) : undefined;
  const repoNamed = setArg !== undefined && REPO_SET_NAME.test(setArg);
  const repoSets =
    repo === undefined || (setArg !== undefined && !repoNamed) ? [] : await listRepoSets(repo.driver, repo.layout);
  if (repoNamed && !repoSets.includes(setArg)) {
    throw new WalmgrError(
      `no backup set ${setArg} in the block repository`,
      ExitCode.NOT_AVAILABLE,
      "see wal-ctl CONFIG listbackups",
    );
  }
  const chosenRepoSets = repoNamed ? [setArg] : repoSets;
  const sets = repoNamed ? [] : setArg ? [namedSet(full, setArg)] : await listSets(driver, full.path);
  if (setArg && !repoNamed && (await driver.info(sets[0] ?? "")) === undefined) {
    throw new WalmgrError(`no backup set ${sets[0]}`, ExitCode.NOT_AVAILABLE, "see wal-ctl CONFIG listbackups");
  }
  // What another user could have written is refused by every reader: found first, named once.
  const unsafe = await unsafeFiles(layout);
  const unsafePaths = new Set(unsafe.map((u) => u.path));
  const completedUnsafe = unsafePaths.has(layout.completed.path);
  const listing = await listArchive(driver, layout.completed.path);
  const starts: { set: string; repo?: string; start: SetStart | undefined }[] = await Promise.all(
    sets.map(async (s) => ({ set: s, start: await setStart(driver, s, listing.segSize) })),
  );
  for (const name of chosenRepoSets) {
    if (repo === undefined) break;
    let info: Record<string, unknown> | undefined;
    try {
      info = await repoSetInfo(repo.driver, repo.layout, name);
    } catch {
      info = undefined; // reported by its check below
    }
    starts.push({ set: repo.layout.manifestPath(name), repo: name, start: startFromInfo(info, listing.segSize) });
  }
  const systemIds = new Set(starts.flatMap((s) => (s.start?.systemIdentifier ? [s.start.systemIdentifier] : [])));
  const systemId = systemIds.size === 1 ? [...systemIds][0] : undefined;
  // With a set named, the WAL it needs (from its start on); otherwise the whole archive.
  const from = setArg ? starts[0]?.start?.startWal : undefined;
  const corrupt: BadFile[] = [...listing.badHistories];
  const walToRead = listing.wal.filter(
    (n) => from === undefined || parseWalName(n)?.kind === "history" || comparePosition(n, from) >= 0,
  );
  progress?.stage(`re-reading ${walToRead.length} WAL file(s) in ${listing.dir}`, {
    files: walToRead.length,
    bytes: walToRead.filter((n) => parseWalName(n)?.kind === "segment").length * listing.segSize,
  });
  let files = 0;
  let bytes = 0;
  let verified = 0;
  let unchecksummed = 0;
  const broken = new Set<string>();
  for (const name of walToRead) {
    let got;
    const path = posix.join(listing.dir, name);
    if (unsafePaths.has(path) || unsafePaths.has(posix.join(listing.dir, checksumName(name)))) {
      // Listed under `unsafe`; unusable as recovery's WAL, like a corrupt one.
      broken.add(name);
      files++;
      progress?.add(0, 1);
      continue;
    }
    try {
      got = await checkArchivedFile(driver, listing.dir, name, listing.segSize, systemId, onBytes);
    } catch (err) {
      if (completedUnsafe) {
        // Refused because of its folder (listed under `unsafe`), not damaged.
        broken.add(name);
        files++;
        progress?.add(0, 1);
        continue;
      }
      got = { bytes: 0, checksumOk: undefined, problem: `cannot be read: ${(err as Error).message}` };
    }
    files++;
    progress?.add(0, 1);
    bytes += got.bytes;
    if (got.checksumOk === true) verified++;
    if (got.checksumOk === undefined) unchecksummed++;
    if (got.problem !== undefined) {
      corrupt.push({ name, reason: got.problem });
      broken.add(name);
    }
  }
  // A corrupt segment breaks the chain as a missing one does: recovery stops there either way.
  const usable = listing.wal.filter((n) => !broken.has(n));
  const newest = [...usable].reverse().find((n) => parseWalName(n)?.kind === "segment") ?? null;
  const gaps = archiveGaps(usable, listing.segSize);
  const setReports: SetReport[] = [];
  for (const { set, repo: repoSet, start } of starts) {
    const problems: string[] = [];
    const m =
      repoSet !== undefined && repo !== undefined
        ? await checkRepoSet(repo.driver, repo.layout, repoSet, problems, onBytes)
        : await checkManifest(driver, set, problems, progress);
    let r: Reach | null = null;
    if (start === undefined) problems.push("no .walmgr-backup.json or backup_label: where its WAL starts is unknown");
    else {
      r = reach(start, usable, listing.histories, listing.segSize);
      if (!r.consistent) {
        problems.push(
          `the WAL it needs to become consistent is not all there: ${r.firstMissing ?? start.startWal} is ${broken.has(r.firstMissing ?? "") ? "corrupt" : "missing"} (needed through ${start.stopWal ?? start.startWal})`,
        );
      } else if (r.firstMissing !== undefined) {
        problems.push(
          `recovery from it stops at ${r.reachableLsn ?? "?"} (end of ${r.lastSegment ?? "?"}): ${r.firstMissing} is ${broken.has(r.firstMissing) ? "corrupt" : "missing"}, so it cannot reach the newest WAL`,
        );
      }
    }
    setReports.push({
      name: repoSet ?? posix.basename(set),
      path: set,
      files: m.files,
      bytes: m.bytes,
      timeline: start?.timeline ?? null,
      startWal: start?.startWal ?? null,
      stopWal: start?.stopWal ?? null,
      restorable: m.files !== null && problems.every((p) => p.startsWith("recovery from it stops")) && r !== null,
      reach: r,
      problems,
    });
  }
  const wal: WalReport = {
    dir: listing.dir,
    segmentSize: listing.segSize,
    files,
    bytes,
    verified,
    unchecksummed,
    newestSegment: newest,
    corrupt,
    gaps,
    unexpected: listing.unexpected,
  };
  const ok =
    corrupt.length === 0 &&
    gaps.length === 0 &&
    unsafe.length === 0 &&
    setReports.every((s) => s.problems.length === 0);
  const twoWriters = await findTwoWriters(driver, listing, layout.partial?.path);
  return { ok, sets: setReports, wal, unsafe, twoWriters };
}

/** The report as an operator reads it. */
function formatReport(rep: VerifyReport): string {
  const lines: string[] = [];
  const w = rep.wal;
  lines.push(
    `WAL in ${w.dir}: ${w.files} file(s), ${(w.bytes / 1048576).toFixed(1)} MiB re-read; ${w.verified} match their checksums` +
      (w.unchecksummed ? `, ${w.unchecksummed} have none (checked by size and header only)` : "") +
      `; newest segment ${w.newestSegment ?? "none"}`,
  );
  for (const g of w.gaps) {
    lines.push(
      `  GAP: ${g.count === 1 ? g.from : `${g.from} .. ${g.to} (${g.count} segments)`} missing on timeline ${g.timeline}`,
    );
  }
  for (const c of w.corrupt) lines.push(`  CORRUPT: ${c.name}: ${c.reason}`);
  for (const u of w.unexpected) lines.push(`  UNEXPECTED: ${u.name}: ${u.reason}`);
  for (const u of rep.unsafe) lines.push(`  UNSAFE: ${u.path}: another user could have written it (${u.reason})`);
  const tw = rep.twoWriters;
  if (tw.detected) {
    lines.push(
      `WARNING: two masters write into this slave directory (timeline ${tw.newestTimeline ?? "?"} is the newest, and an older timeline was written after it began): ` +
        "fence the old master (stop its sync daemon and its archiving: wal-ctl OLD-MASTER.ini stop on its host, and keep it down)",
    );
    for (const x of tw.signs) lines.push(`  ${x.kind} ${x.file}: ${x.detail}`);
  }
  for (const s of rep.sets) {
    const head = s.files === null ? "files not checked" : `${s.files} files checked against the manifest`;
    const r = s.reach;
    const where =
      r === null
        ? ""
        : `; WAL from ${s.startWal} on timeline ${s.timeline}` +
          (r.consistent
            ? `; can be restored to ${r.reachableLsn} (end of ${r.lastSegment}${r.timeline !== s.timeline ? `, timeline ${r.timeline}` : ""})`
            : "; CANNOT be restored");
    lines.push(`${s.path}: ${head}${where}`);
    for (const p of s.problems) lines.push(`  ${p}`);
  }
  lines.push(rep.ok ? "all backup sets verified, and the WAL they need" : "verification FAILED");
  return lines.join("\n");
}

/**
 * `verify [SET]`: see runVerify. Exit 0 when everything checks; 9 when anything is damaged,
 * missing, or a set cannot reach the newest WAL (the report is printed first, whole).
 */
export async function verify(ctx: Context): Promise<ExitCodeValue> {
  const progress = startProgress("verify", ctx.log, { json: ctx.json });
  let rep: VerifyReport;
  try {
    rep = await runVerify(ctx, progress);
  } finally {
    progress.done();
  }
  ctx.out(ctx.json ? JSON.stringify(rep, null, 2) : formatReport(rep));
  if (rep.sets.length === 0) {
    const dir = posix.dirname(ctx.config.requireLocation("full_backup", "verify").path);
    throw new WalmgrError(`no backup set in ${dir}`, ExitCode.NOT_AVAILABLE, "take one with wal-backup CONFIG");
  }
  if (!rep.ok) {
    const all = [
      ...rep.unsafe.map((u) => `${u.path}: another user could have written it (${u.reason})`),
      ...rep.wal.gaps.map((g) => `${g.from}${g.count > 1 ? ` .. ${g.to}` : ""} missing (timeline ${g.timeline})`),
      ...rep.wal.corrupt.map((c) => `${c.name}: ${c.reason}`),
      ...rep.sets.flatMap((s) => s.problems.map((p) => `${s.path}: ${p}`)),
    ];
    throw new IoError(
      `backup verification failed:\n  ${all.join("\n  ")}`,
      (rep.unsafe.length > 0
        ? "nothing another user could have written is served or restored: if those files are genuine, make them (and their folders) the slave directory owner's alone (chown, chmod 0600 files, 0700 folders), else remove them; "
        : "") +
        "do not rely on a set that cannot be restored; take a new backup (wal-backup CONFIG), and find out what removed or damaged the files",
    );
  }
  return ExitCode.OK;
}
