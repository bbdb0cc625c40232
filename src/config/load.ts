import { closeSync, constants as fsConstants, fstatSync, openSync, readSync, type BigIntStats } from "node:fs";
import { hostname } from "node:os";
import { basename, dirname, isAbsolute, posix, resolve } from "node:path";
import { ConfigError } from "../errors";
import { expandHome } from "./home";
import {
  IniSyntaxError,
  InterpolationError,
  makeInterpolator,
  MAX_INTERPOLATED_LENGTH,
  parseIni,
  type RawSection,
} from "./ini";
import { closest } from "../suggest";
import {
  IMPLICIT_KEYS,
  parseBool,
  rangeCheck,
  SETTINGS,
  settingSpec,
  type Role,
  type SettingKey,
  type SettingOfKind,
  type SettingSpec,
} from "./settings";

/**
 * Where a directory lives: on this machine, on `host` over ssh, or under the key prefix `path`
 * of the S3 bucket `bucket` (then `path` is absolute, `/` being the bucket's root).
 */
export interface Location {
  host?: string;
  bucket?: string;
  path: string;
}

/** A directory of this machine's file system (neither ssh nor an object store). */
export function isLocal(loc: Location): boolean {
  return loc.host === undefined && loc.bucket === undefined;
}

/** Same storage (same host, same bucket, or both local): one driver reaches both. */
export function sameStorage(a: Location, b: Location): boolean {
  return a.host === b.host && a.bucket === b.bucket;
}

const S3_BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * `s3://bucket/prefix` → S3; `host:/path` → remote over ssh; `/path`, `./path`, `path` → local
 * (relative to the config file).
 */
export function parseLocation(value: string, baseDir: string): Location {
  if (/^s3:\/\//i.test(value)) {
    const rest = value.slice(5);
    const slash = rest.indexOf("/");
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    if (!S3_BUCKET.test(bucket)) {
      throw new ConfigError(
        `${JSON.stringify(value)} does not name a valid S3 bucket (${JSON.stringify(bucket)})`,
        "write s3://BUCKET/PREFIX: a bucket name is 3-63 lower-case letters, digits, dots and dashes",
      );
    }
    const raw = slash < 0 ? "" : rest.slice(slash + 1);
    const prefix = posix.normalize(`/${raw}`).replace(/\/+$/, "");
    if (raw.split("/").includes("..")) {
      throw new ConfigError(
        `${JSON.stringify(value)}: '..' is not allowed in an S3 prefix`,
        "write s3://BUCKET/PREFIX",
      );
    }
    return { bucket, path: prefix === "" ? "/" : prefix };
  }
  const m = /^([^/:\s][^/:]*):(.*)$/.exec(value);
  if (m && !value.startsWith(".")) {
    return { host: m[1] ?? "", path: m[2] === "" ? "." : (m[2] ?? ".") };
  }
  return { path: isAbsolute(value) ? value : resolve(baseDir, value) };
}

/** A location as the config file writes it: `/path`, `host:/path` or `s3://bucket/prefix`. */
export function formatLocation(loc: Location): string {
  if (loc.bucket !== undefined) return `s3://${loc.bucket}${loc.path}`;
  return loc.host === undefined ? loc.path : `${loc.host}:${loc.path}`;
}

const SLAVE_SUBDIRS: Record<string, string> = {
  completed_wals: "logs.complete",
  partial_wals: "logs.partial",
  full_backup: "data.master",
  backup_repo: "repo",
  config_backup: "config.backup",
};

/**
 * A loaded, interpolated, type-checked config file. Values are validated when loaded; a key the
 * running command needs but the file lacks is reported by `require*` with file, section and key.
 */
export class Config {
  constructor(
    readonly file: string,
    readonly section: string,
    readonly role: Role,
    private readonly values: Map<string, string>,
    readonly warnings: string[],
    /**
     * The file as it was read: `dev:ino:size:ctime` (see fileStamp). Whatever was decided from
     * this config (wal-archive's acknowledgement records) is trusted later only while the file
     * still has it.
     */
    readonly stamp = "",
  ) {}

  get baseDir(): string {
    return dirname(this.file);
  }

  /** Where a setting is, for messages: `file [section] key`. */
  where(key: SettingKey): string {
    return `${this.file} [${this.section}] ${key}`;
  }

  /**
   * The interpolated value, the default when unset, or undefined. Any key the file holds, a
   * setting or not (a [DEFAULT] name kept for `%(name)s`); the typed accessors below take
   * settings only.
   */
  get(key: string): string | undefined {
    return this.values.get(key) ?? settingSpec(key)?.default;
  }

  has(key: string): boolean {
    const v = this.values.get(key);
    return v !== undefined && v !== "";
  }

  require(key: SettingKey, why: string): string {
    const v = this.get(key);
    if (v === undefined || v === "") {
      throw new ConfigError(`${this.where(key)} is missing: ${why} needs it`, `add '${key} = …' to [${this.section}]`);
    }
    return v;
  }

  path(key: SettingOfKind<"path" | "location">): string | undefined {
    const v = this.get(key);
    if (v === undefined || v === "") return undefined;
    return isAbsolute(v) ? v : resolve(this.baseDir, v);
  }

  requirePath(key: SettingOfKind<"path" | "location">, why: string): string {
    const v = this.require(key, why);
    return isAbsolute(v) ? v : resolve(this.baseDir, v);
  }

  location(key: SettingOfKind<"location">): Location | undefined {
    const v = this.get(key);
    if (v === undefined || v === "") return undefined;
    return parseLocation(v, this.baseDir);
  }

  requireLocation(key: SettingKey, why: string): Location {
    return parseLocation(this.require(key, why), this.baseDir);
  }

  bool(key: SettingOfKind<"bool">): boolean {
    return parseBool(this.get(key) ?? "") ?? false;
  }

  /** One of the setting's words (checked at load time), or its default. */
  choice(key: SettingOfKind<"choice">): string {
    return (this.get(key) ?? "").trim() || (SETTINGS[key] as SettingSpec).default || "";
  }

  /** A whole number, checked at load time to be of the setting's range. */
  int(key: SettingOfKind<"int">): number {
    return Number.parseInt(this.get(key) ?? "0", 10);
  }

  /** A number, checked at load time to be of the setting's range. */
  float(key: SettingOfKind<"float">): number {
    return Number.parseFloat(this.get(key) ?? "0");
  }

  /** Job name for log lines: job_name, or the config file's name without extension. */
  get jobName(): string {
    return this.get("job_name") ?? configStem(this.file);
  }
}

/**
 * The config file's name without its extension, as Python's os.path.splitext cuts it
 * (`master.ini` → `master`, `a.b.ini` → `a.b`, a leading dot is not an extension: `.ini` stays):
 * skytools' default job_name.
 */
export function configStem(file: string): string {
  const base = basename(file);
  return /^(\.*[^.].*)\.[^.]*$/.exec(base)?.[1] ?? base;
}

function pickSection(file: string, sections: RawSection[]): { section: RawSection; role: Role } {
  const byName = (n: string): RawSection | undefined => sections.find((s) => s.name === n);
  const master = byName("wal-master");
  const slave = byName("wal-slave");
  const walmgr = byName("walmgr");
  const found = [master, slave, walmgr].filter((s) => s !== undefined);
  if (found.length > 1) {
    throw new ConfigError(
      `${file}: has more than one of [wal-master], [wal-slave], [walmgr]`,
      "use one file per role: master.ini with [wal-master], slave.ini with [wal-slave]",
    );
  }
  if (master) return { section: master, role: "master" };
  if (slave) return { section: slave, role: "slave" };
  if (walmgr) return { section: walmgr, role: walmgr.values.has("master_data") ? "master" : "slave" };
  const names = sections.map((s) => `[${s.name}]`).join(", ") || "none";
  throw new ConfigError(
    `${file}: no [wal-master], [wal-slave] or [walmgr] section (sections found: ${names})`,
    "start the file with [wal-master] on the master or [wal-slave] on the slave",
  );
}

/**
 * Largest config file read (bytes). walmgr files are a few hundred bytes; the cap keeps a wrong
 * path (a log, a /proc file that never ends) from being read into memory; anything but a regular
 * file (a FIFO, a device, a directory) is refused before a byte is read.
 */
export const MAX_CONFIG_FILE_SIZE = 1024 * 1024;

/**
 * Most characters all of a file's interpolated values may add up to. Each value is capped
 * (MAX_INTERPOLATED_LENGTH), but a file of many keys that each refer to a long one would still
 * build gigabytes (50,000 keys of 64 KiB from one 1 MiB file): a walmgr file's values add up to
 * a few kilobytes.
 */
export const MAX_INTERPOLATED_TOTAL = 1024 * 1024;

/**
 * The stamp of a file: `dev:ino:size:ctime` with the ctime as `SECONDS.NANOSECONDS`, exactly as
 * GNU stat prints `%d:%i:%s:%.9Z` (bin/wal-archive compares the two). The ctime moves with every
 * change to the file, and no one can set it back (a copy that keeps the mtime, as `cp -p` and
 * `rsync -a` do, still moves it).
 */
export function fileStamp(st: BigIntStats): string {
  const ns = st.ctimeNs % 1_000_000_000n;
  return `${st.dev}:${st.ino}:${st.size}:${st.ctimeNs / 1_000_000_000n}.${String(ns).padStart(9, "0")}`;
}

/** Reads at most MAX_CONFIG_FILE_SIZE bytes of `abs`; more is a ConfigError. */
function readConfigText(abs: string): { text: string; stamp: string } {
  const hint = "pass the path of a walmgr .ini file";
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading otherwise blocks until a writer appears, and
    // PostgreSQL's archiver or startup process would hang on it. It changes nothing for a
    // regular file, the only kind read below.
    fd = openSync(abs, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (err as Error).message;
    throw new ConfigError(`cannot read config file ${abs}: ${reason}`, hint);
  }
  try {
    const st = fstatSync(fd, { bigint: true });
    if (!st.isFile()) {
      const kind = st.isFIFO()
        ? "a FIFO"
        : st.isDirectory()
          ? "a directory"
          : st.isCharacterDevice() || st.isBlockDevice()
            ? "a device"
            : st.isSocket()
              ? "a socket"
              : "not a regular file";
      throw new ConfigError(`config file ${abs} is ${kind}, not a regular file`, hint);
    }
    // Read in a loop rather than trusting st.size: a file may grow while it is read, and /proc
    // files report 0.
    const buf = Buffer.allocUnsafe(MAX_CONFIG_FILE_SIZE + 1);
    let len = 0;
    for (;;) {
      const n = readSync(fd, buf, len, buf.length - len, null);
      if (n === 0) break;
      len += n;
      if (len > MAX_CONFIG_FILE_SIZE) {
        throw new ConfigError(`config file ${abs} is larger than ${MAX_CONFIG_FILE_SIZE} bytes`, hint);
      }
    }
    return { text: buf.subarray(0, len).toString("utf8"), stamp: fileStamp(st) };
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`cannot read config file ${abs}: ${(err as Error).message}`, hint);
  } finally {
    closeSync(fd);
  }
}

/** Reads and validates a config file. Throws ConfigError naming file, section and key. */
export function loadConfig(file: string): Config {
  const abs = resolve(file);
  const { text, stamp } = readConfigText(abs);
  let raw;
  try {
    raw = parseIni(text);
  } catch (err) {
    if (err instanceof IniSyntaxError) throw new ConfigError(`${abs}:${err.line}: ${err.message}`);
    throw err;
  }
  const { section, role } = pickSection(abs, raw.sections);
  // The names skytools' Config class defines for every file, where the file does not set them.
  // They are values, not templates: `%` is doubled so that a folder named `a%b` stays that.
  const implicit = new Map<string, string>([
    ["job_name", configStem(abs)],
    ["service_name", section.name],
    ["host_name", hostname()],
    ["config_dir", dirname(abs)],
    ["config_file", abs],
  ]);
  const lookupRaw = (name: string): string | undefined =>
    section.values.get(name) ?? raw.defaults.values.get(name) ?? implicit.get(name)?.replace(/%/g, "%%");
  /** Where `key` is written, for messages: `file:line [section] key`. */
  const at = (key: string): string => {
    const own = section.values.has(key);
    const line = own ? section.lines.get(key) : raw.defaults.lines.get(key);
    return `${abs}${line ? `:${line}` : ""} [${own ? section.name : "DEFAULT"}] ${key}`;
  };

  // Derived defaults: the slave subdirectories follow `slave` (or skytools-3 `walmgr_data`).
  const base = lookupRaw("slave") ?? lookupRaw("walmgr_data");
  const values = new Map<string, string>();
  const keys = new Set([...raw.defaults.values.keys(), ...section.values.keys()]);
  const warnings: string[] = [];
  const interpolate = makeInterpolator(lookupRaw);
  let total = 0;
  for (const key of keys) {
    let value: string;
    try {
      value = interpolate(key);
    } catch (err) {
      if (err instanceof InterpolationError) throw new ConfigError(`${at(err.key)}: ${err.message}`);
      throw err;
    }
    total += value.length;
    if (total > MAX_INTERPOLATED_TOTAL) {
      throw new ConfigError(
        `${at(key)}: the interpolated values of the file add up to more than ${MAX_INTERPOLATED_TOTAL} characters here (each may be up to ${MAX_INTERPOLATED_LENGTH}): interpolation is for paths and commands, not bulk text`,
        "refer to long values less often, or write them out",
      );
    }
    values.set(key, value);
  }
  for (const key of keys) {
    const type = settingSpec(key)?.kind;
    const value = values.get(key);
    // `~` only where a local path is written: a command goes through /bin/sh, which expands it.
    if (value === undefined || !(type === "path" || type === "location")) continue;
    try {
      values.set(key, expandHome(value));
    } catch (err) {
      throw new ConfigError(
        `${at(key)}: ${(err as Error).message}`,
        "write the path out, or '~/…' for the home of the user running the command",
      );
    }
  }
  if (base !== undefined) {
    const expandedBase = values.get("slave") ?? values.get("walmgr_data");
    for (const [key, sub] of Object.entries(SLAVE_SUBDIRS)) {
      if (!values.has(key) && expandedBase) values.set(key, `${expandedBase.replace(/\/+$/, "")}/${sub}`);
    }
  }

  for (const key of keys) {
    const spec = settingSpec(key);
    const own = section.values.has(key);
    if (!spec) {
      // [DEFAULT] commonly holds helper names for %(…)s interpolation: no warning for those.
      if (!own) continue;
      if (IMPLICIT_KEYS.has(key)) continue;
      const near = closest(key, Object.keys(SETTINGS));
      warnings.push(
        `${at(key)}: unknown setting '${key}' is ignored (${near !== undefined ? `did you mean '${near}'?` : "check the spelling"})`,
      );
      continue;
    }
    const value = values.get(key) ?? "";
    if (own && spec.role !== "both" && spec.role !== role) {
      warnings.push(`${at(key)}: '${key}' is a ${spec.role} setting and is ignored in a ${role} config`);
    }
    checkType(at(key), key, value, spec.kind);
    if (spec.kind === "choice" && value.trim() !== "" && !(spec.choices ?? []).includes(value.trim())) {
      const words = (spec.choices ?? []).join(", ");
      throw new ConfigError(`${at(key)}: '${value}' is not one of ${words}`, `set ${key} to one of ${words}`);
    }
    const raised = checkRange(at(key), key, value, spec, warnings);
    if (raised !== undefined) values.set(key, raised);
  }
  return new Config(abs, section.name, role, values, warnings, stamp);
}

/**
 * Holds `value` (of the right kind already) to `spec`'s range: a config error naming where it is
 * (exit 3), or, for a setting whose low values have always been raised, the value to use instead
 * (with a warning where `out` is "raise").
 */
function checkRange(at: string, key: string, value: string, spec: SettingSpec, warnings: string[]): string | undefined {
  const range = spec.range;
  if (range === undefined || value.trim() === "") return undefined;
  const n = spec.kind === "int" ? Number.parseInt(value, 10) : Number.parseFloat(value);
  const where = rangeCheck(spec, n);
  if (where === "ok") return undefined;
  if (where === "low" && range.min !== undefined && (range.out === "raise" || range.out === "raise-quietly")) {
    if (range.out === "raise") warnings.push(`${at} = ${value.trim()} is too small; using ${range.min}`);
    return String(range.min);
  }
  throw new ConfigError(`${at}: '${value}' is not ${range.text}`, `set ${key} to ${range.text}`);
}

function checkType(at: string, key: string, value: string, type: string): void {
  const bad = (what: string): never => {
    throw new ConfigError(`${at}: '${value}' is not ${what}`, `set ${key} to ${what}`);
  };
  switch (type) {
    case "bool":
      if (parseBool(value) === undefined) bad("a boolean (1/0, yes/no, true/false, on/off)");
      break;
    case "int":
      if (!/^\s*-?\d+\s*$/.test(value)) bad("a whole number");
      if (Number.parseInt(value, 10) < 0) bad("a number of zero or more");
      break;
    case "float":
      if (!/^\s*\d+(\.\d*)?\s*$|^\s*\.\d+\s*$/.test(value)) bad("a number of zero or more");
      break;
    default:
      break;
  }
}
