/**
 * The standby registry: several standbys restored from one archive each record their restart
 * point (PostgreSQL's `%r`) under their own name in completed_wals, so that WAL purging (backup's
 * purge, wal-restore's `%r` cleanup) keeps what the slowest live standby needs, and `status` can
 * list them. One small JSON object per standby, `.walmgr-standby.NAME` (a dot name: never taken
 * for WAL), written through the storage driver: the registry lives in the repository itself,
 * where the master's purge sees it, whatever storage that is.
 *
 * A record older than `standby_expire` seconds no longer holds WAL back (its standby is taken
 * for gone); purging then warns, naming it, when it removes WAL that standby would need.
 * The single file `.walmgr-standby-restartpoint` of earlier versions is still read, as the record
 * of the standby "legacy" (its time is the file's mtime), so an existing archive keeps its
 * guarantee; nothing writes it any more, and once expired it is removed.
 */
import { crypto } from "../lazy";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join, posix } from "node:path";
import type { Config } from "../config/load";
import { ConfigError } from "../errors";
import type { StorageDriver } from "../storage/driver";
import { readBytes, writeBytes } from "../storage/bytes";
import { comparePosition, parseWalName, segmentNumber } from "../wal/names";

/** File name prefix of a standby's record in completed_wals. */
export const STANDBY_RECORD_PREFIX = ".walmgr-standby.";
/** The one restart-point file of earlier versions (read only; removed once expired). */
export const LEGACY_RECORD = ".walmgr-standby-restartpoint";
/** The name under which the legacy file is listed. */
export const LEGACY_NAME = "legacy";
/** A valid standby name. */
export const STANDBY_NAME = /^[A-Za-z0-9._-]{1,64}$/;
/** Default `standby_expire`: a day. */
export const DEFAULT_STANDBY_EXPIRE = 86400;
/** How often an unchanged record is rewritten at most (s), whatever the expiry. */
export const MAX_REFRESH_SECONDS = 3600;
/** Segment size assumed when none is known. */
export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

/** What `.walmgr-standby.NAME` holds. */
export interface StandbyRecord {
  restartpoint: string;
  host: string;
  slave_data: string;
  /** ISO time of the write (the standby's clock). */
  updated: string;
}

/** One registry entry as read back. */
export interface StandbyEntry {
  name: string;
  /** File name in completed_wals. */
  file: string;
  legacy: boolean;
  /** Undefined when the record cannot be read as one (then nothing may be purged on its account). */
  restartpoint?: string;
  host?: string;
  slaveData?: string;
  /** When it was last written (ms); NaN when unknown. */
  updatedMs: number;
}

/** An entry judged against `standby_expire` at some moment. */
export interface JudgedStandby extends StandbyEntry {
  ageSeconds: number;
  live: boolean;
}

export function isValidStandbyName(name: string): boolean {
  return STANDBY_NAME.test(name) && name !== "." && name !== "..";
}

export function standbyRecordFile(name: string): string {
  return `${STANDBY_RECORD_PREFIX}${name}`;
}

/** The standby name of a registry file name; undefined for any other file. */
export function standbyNameOfFile(file: string): string | undefined {
  if (file === LEGACY_RECORD) return LEGACY_NAME;
  if (!file.startsWith(STANDBY_RECORD_PREFIX)) return undefined;
  const name = file.slice(STANDBY_RECORD_PREFIX.length);
  return isValidStandbyName(name) ? name : undefined;
}

/**
 * The default name: the host name and a short hash of the data directory, so that it is the
 * same on every run and differs between two standbys of one host.
 */
export function defaultStandbyName(slaveData: string, host = hostname()): string {
  const h = host.replace(/[^A-Za-z0-9._-]/g, "-").replace(/^[.]+/, "") || "host";
  const hash = crypto().createHash("sha256").update(slaveData).digest("hex").slice(0, 8);
  return `${h.slice(0, 55)}-${hash}`;
}

/** The data directory this standby replays in: slave_data, or (PostgreSQL's cwd) the working directory. */
function slaveDataOf(config: Config): string {
  return config.path("slave_data") ?? process.cwd();
}

/**
 * This standby's name: `standby_name`, or the default from host name and slave_data (or
 * `dataDir`, the data directory the caller knows it serves, else the working directory).
 */
export function standbyName(config: Config, dataDir?: string): string {
  const set = config.get("standby_name");
  if (set === undefined || set === "")
    return defaultStandbyName(config.path("slave_data") ?? dataDir ?? slaveDataOf(config));
  if (!isValidStandbyName(set) || set === LEGACY_NAME) {
    throw new ConfigError(
      `${config.where("standby_name")} = ${JSON.stringify(set)} is not a valid standby name`,
      `use 1 to 64 letters, digits, '.', '_' or '-' (not '${LEGACY_NAME}')`,
    );
  }
  return set;
}

/** `standby_expire` in seconds (0: never). */
export function standbyExpireSeconds(config: Config): number {
  const v = Number.parseFloat(config.get("standby_expire") ?? `${DEFAULT_STANDBY_EXPIRE}`);
  return Number.isFinite(v) && v > 0 ? v : 0;
}

/**
 * How old an unchanged record may get before wal-restore writes it again: a tenth of the
 * expiry (so a live standby, idle or paused, is never near expiring: it keeps asking for the
 * next segment every few seconds, and each ask may refresh it), at most an hour (so `status`
 * shows a recent age), and an hour when records never expire.
 */
export function refreshSeconds(expireSeconds: number): number {
  return expireSeconds > 0 ? Math.min(expireSeconds / 10, MAX_REFRESH_SECONDS) : MAX_REFRESH_SECONDS;
}

/** A `%r` worth recording: a segment name on a real timeline (PostgreSQL passes zeros before redo starts). */
export function usableRestartPoint(r: string): boolean {
  const w = parseWalName(r);
  return w?.kind === "segment" && w.timeline > 0;
}

function parseRecord(name: string, file: string, raw: Buffer): StandbyEntry {
  const entry: StandbyEntry = { name, file, legacy: false, updatedMs: NaN };
  try {
    const r = JSON.parse(raw.toString("utf8")) as Partial<StandbyRecord>;
    if (typeof r.restartpoint === "string" && usableRestartPoint(r.restartpoint)) entry.restartpoint = r.restartpoint;
    if (typeof r.host === "string") entry.host = r.host;
    if (typeof r.slave_data === "string") entry.slaveData = r.slave_data;
    if (typeof r.updated === "string") entry.updatedMs = Date.parse(r.updated);
  } catch {
    // not JSON: restartpoint stays unknown
  }
  return entry;
}

/** Reads one standby's record; undefined when there is none. */
export async function readStandby(driver: StorageDriver, dir: string, name: string): Promise<StandbyEntry | undefined> {
  const file = name === LEGACY_NAME ? LEGACY_RECORD : standbyRecordFile(name);
  const raw = await readBytes(driver, posix.join(dir, file), 64 * 1024);
  if (raw === undefined) return undefined;
  if (name === LEGACY_NAME) {
    const rp = raw.toString("utf8").trim();
    const info = await driver.info(posix.join(dir, file));
    return {
      name,
      file,
      legacy: true,
      ...(usableRestartPoint(rp) ? { restartpoint: rp } : {}),
      updatedMs: info?.mtimeMs ?? NaN,
    };
  }
  const entry = parseRecord(name, file, raw);
  if (entry.restartpoint === undefined || !Number.isFinite(entry.updatedMs)) {
    // Not a record we wrote: its age is the file's.
    entry.updatedMs = (await driver.info(posix.join(dir, file)))?.mtimeMs ?? NaN;
  }
  return entry;
}

/**
 * Every standby recorded in `dir` (`names`: its listing, when the caller has it already; `skip`:
 * a name the caller knows better, e.g. its own record just written).
 */
export async function readRegistry(
  driver: StorageDriver,
  dir: string,
  names?: string[],
  skip?: string,
): Promise<StandbyEntry[]> {
  const out: StandbyEntry[] = [];
  for (const file of names ?? (await driver.list(dir)) ?? []) {
    const name = standbyNameOfFile(file);
    if (name === undefined || name === skip) continue;
    const e = await readStandby(driver, dir, name);
    if (e) out.push(e);
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

/** Live (its record at most `expireSeconds` old, or of unknown age, or expiry off) or expired. */
export function judge(entry: StandbyEntry, expireSeconds: number, now: number): JudgedStandby {
  const ageSeconds = Number.isFinite(entry.updatedMs) ? Math.max(0, (now - entry.updatedMs) / 1000) : NaN;
  const live = expireSeconds <= 0 || !(ageSeconds > expireSeconds);
  return { ...entry, ageSeconds, live };
}

export type NoteResult =
  { written: true; entry: StandbyEntry; conflict?: StandbyEntry } | { written: false; entry: StandbyEntry };

/**
 * Records `restartpoint` as this standby's: one read of its record, and a write only when the
 * restart point (or the host or data directory) changed, or the record is older than
 * `refreshSeconds(expire)`. wal-restore runs once per segment and every few seconds while
 * waiting for the next: this keeps it to one small read per call and rare writes.
 */
export async function noteStandby(
  driver: StorageDriver,
  dir: string,
  name: string,
  restartpoint: string,
  opts: { expireSeconds: number; slaveData: string; host?: string; now?: number },
): Promise<NoteResult> {
  return noteOver(driver, dir, name, restartpoint, await readStandby(driver, dir, name), opts);
}

/** noteStandby, given the record as just read (`old`). */
async function noteOver(
  driver: StorageDriver,
  dir: string,
  name: string,
  restartpoint: string,
  old: StandbyEntry | undefined,
  opts: { expireSeconds: number; slaveData: string; host?: string; now?: number },
): Promise<NoteResult> {
  const now = opts.now ?? Date.now();
  const host = opts.host ?? hostname();
  const fresh =
    old !== undefined &&
    old.restartpoint === restartpoint &&
    old.host === host &&
    old.slaveData === opts.slaveData &&
    Number.isFinite(old.updatedMs) &&
    now - old.updatedMs >= 0 &&
    now - old.updatedMs < refreshSeconds(opts.expireSeconds) * 1000;
  if (fresh) return { written: false, entry: old };
  const record: StandbyRecord = {
    restartpoint,
    host,
    slave_data: opts.slaveData,
    updated: new Date(now).toISOString(),
  };
  await writeBytes(driver, posix.join(dir, standbyRecordFile(name)), Buffer.from(`${JSON.stringify(record)}\n`));
  const entry: StandbyEntry = {
    name,
    file: standbyRecordFile(name),
    legacy: false,
    restartpoint,
    host,
    slaveData: opts.slaveData,
    updatedMs: now,
  };
  const other = old !== undefined && (old.host !== host || old.slaveData !== opts.slaveData);
  return other && old.host !== undefined ? { written: true, entry, conflict: old } : { written: true, entry };
}

/**
 * The liveness heartbeat of a running standby (the prefetcher process keeps it while the
 * standby's postmaster runs: command/archive/prefetch.ts): keeps this standby's record from
 * expiring between restore_command calls, which a standby makes only when it needs a segment
 * that is not in its spool, and not at all while it waits out recovery_min_apply_delay.
 * `restartPoint` is the standby's own (from its pg_control), or undefined when it cannot be told
 * for sure: then the recorded one stays (older than the real one, so more WAL is kept, never
 * less). Only refreshes: it never creates a record (restore and restore_command's `%r` do;
 * `boot` removes it, and a removed record stays removed), and never writes over the record of
 * another host or data directory under this name (restore_command warns about that one).
 * Writes as noteStandby does: only when the restart point changed or the record is due for a
 * refresh. Returns the record as it now stands, or undefined when it left it alone.
 */
export async function refreshStandby(
  driver: StorageDriver,
  dir: string,
  name: string,
  restartPoint: string | undefined,
  opts: { expireSeconds: number; slaveData: string; host?: string; now?: number },
): Promise<StandbyEntry | undefined> {
  const old = await readStandby(driver, dir, name);
  if (old === undefined || old.legacy) return undefined;
  if (old.host !== (opts.host ?? hostname()) || old.slaveData !== opts.slaveData) return undefined;
  const rp = restartPoint ?? old.restartpoint;
  if (rp === undefined) return undefined;
  return (await noteOver(driver, dir, name, rp, old, opts)).entry;
}

/** Removes a standby's record (false when there was none). */
export async function removeStandby(driver: StorageDriver, dir: string, name: string): Promise<boolean> {
  return driver.remove(posix.join(dir, name === LEGACY_NAME ? LEGACY_RECORD : standbyRecordFile(name)));
}

/** What the recorded standbys hold back, as purging sees it. */
export interface StandbyHold {
  /** The oldest restart point among live standbys (undefined: none holds anything). */
  from?: string;
  /** Whose restart point that is. */
  by?: string;
  /** A live standby whose record cannot be read: nothing may be purged. */
  unknown?: JudgedStandby;
  live: JudgedStandby[];
  expired: JudgedStandby[];
}

/** Applies the purge rule to registry entries: the oldest restart point among the live ones. */
export function standbyHold(entries: StandbyEntry[], expireSeconds: number, now = Date.now()): StandbyHold {
  const hold: StandbyHold = { live: [], expired: [] };
  for (const e of entries) {
    const j = judge(e, expireSeconds, now);
    if (!j.live) {
      hold.expired.push(j);
      continue;
    }
    hold.live.push(j);
    if (j.restartpoint === undefined) {
      hold.unknown ??= j;
      continue;
    }
    if (hold.from === undefined || comparePosition(j.restartpoint, hold.from) < 0) {
      hold.from = j.restartpoint;
      hold.by = j.name;
    }
  }
  return hold;
}

export function describeStandby(s: JudgedStandby): string {
  const where = [s.host, s.slaveData].filter((x) => x !== undefined).join(":");
  return `standby ${JSON.stringify(s.name)}${where ? ` (${where})` : ""}`;
}

export function formatAge(seconds: number): string {
  if (!Number.isFinite(seconds)) return "unknown";
  if (seconds < 120) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(0)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

/**
 * After a purge removed `removed` (names in `dir`): warns for each expired standby whose WAL
 * (from its restart point on) went, naming it, its restart point and its age; removes the
 * legacy record once expired (nothing writes it any more).
 */
export async function reportExpired(
  log: { warn(msg: string): void; info(msg: string): void },
  driver: StorageDriver,
  dir: string,
  hold: StandbyHold,
  removed: string[],
  expireSeconds: number,
  dryRun: boolean,
): Promise<void> {
  for (const s of hold.expired) {
    const rp = s.restartpoint;
    const gone = rp === undefined ? removed.length : removed.filter((n) => comparePosition(n, rp) >= 0).length;
    if (gone > 0) {
      log.warn(
        `${describeStandby(s)} last recorded its restart point ${rp ?? "(unreadable)"} ${formatAge(s.ageSeconds)} ago, ` +
          `longer than standby_expire (${expireSeconds} s): it no longer holds WAL back, and ${gone} WAL file(s) it ` +
          `would need were removed${s.legacy ? "" : `; if it is gone for good, remove ${posix.join(dir, s.file)}`}`,
      );
    }
    if (s.legacy && !dryRun && (await removeStandby(driver, dir, LEGACY_NAME))) {
      log.info(`removed the expired restart-point file of earlier versions ${posix.join(dir, s.file)}`);
    }
  }
}

/** How far `restartpoint` is behind `newest` (by position, whatever the timelines). */
export function lagOf(
  restartpoint: string,
  newest: string,
  segSize = DEFAULT_SEGMENT_SIZE,
): { segments: number; bytes: number } {
  const d = segmentNumber(newest, segSize) - segmentNumber(restartpoint, segSize);
  const segments = d > 0n ? Number(d) : 0;
  return { segments, bytes: segments * segSize };
}

/**
 * `restore` of a standby: its own record (not the other standbys') starts again, at the start
 * WAL of the restored set (from `dataDir`'s backup_label), so that the WAL it is about to replay
 * is kept before its first wal-restore call records a restart point. The record of earlier
 * versions (one file for "the" standby, which restore always removed) goes too.
 */
export async function restartStandbyRecord(
  ctx: { config: Config; log: { info(msg: string): void; warn(msg: string): void } },
  driver: StorageDriver,
  dir: string,
  dataDir: string,
): Promise<void> {
  // The restore itself is done by now: a record that cannot be written is a warning (the
  // standby's first wal-restore calls write it), never a failed restore.
  try {
    const name = standbyName(ctx.config);
    await removeStandby(driver, dir, LEGACY_NAME);
    let start: string | undefined;
    try {
      const label = readFileSync(join(dataDir, "backup_label"), "utf8");
      start = /START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/.exec(label)?.[1];
    } catch {
      // no label (already started?): no record until wal-restore writes one
    }
    if (start === undefined || !usableRestartPoint(start)) {
      if (await removeStandby(driver, dir, name))
        ctx.log.info(`removed the old record of standby ${JSON.stringify(name)}`);
      return;
    }
    await noteStandby(driver, dir, name, start, {
      expireSeconds: standbyExpireSeconds(ctx.config),
      slaveData: dataDir,
      now: Date.now(),
    });
    ctx.log.info(`standby ${JSON.stringify(name)} recorded in ${dir}: WAL from ${start} on is kept for it`);
  } catch (err) {
    ctx.log.warn(`cannot record this standby in ${dir}: ${(err as Error).message}`);
  }
}
