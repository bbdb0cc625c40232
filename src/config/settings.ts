/**
 * Every setting, declared once: its kind, walmgr's default, the range a number must be in, the
 * role that reads it and a one-line description. From this table the loader (load.ts) checks a
 * file's values (exit 3 naming file, section and key, for a wrong kind or a number out of range),
 * warns about keys it lacks (with the nearest known one), and types Config's accessors: a
 * misspelled key in `config.int("…")` does not compile. README.md's configuration reference is
 * generated from it (scripts/readme.ts; test/unit/readme.test.ts fails when it is stale).
 *
 * walmgr's manual lists most; the few walmgr 2.1/skytools-3 read without listing are here too.
 */
export type SettingKind = "string" | "path" | "location" | "bool" | "int" | "float" | "command" | "choice";
export type Role = "master" | "slave";

/**
 * The numbers a setting takes, beyond its kind's (int and float are never negative). Out of the
 * range is a config error (exit 3), unless `out` says the value is raised to `min` instead, as
 * walmgr-ts has always done for these (with a warning, or quietly).
 */
export interface SettingRange {
  readonly min?: number;
  readonly max?: number;
  /** Exclusive lower bound: `above: 0` is "more than zero". */
  readonly above?: number;
  /** What the range is, in the error's words: `a number from 0 to 20`. */
  readonly text: string;
  /** "error" (the default): exit 3. "raise": use `min`, warning. "raise-quietly": use `min`. */
  readonly out?: "error" | "raise" | "raise-quietly";
}

export interface SettingSpec {
  readonly kind: SettingKind;
  /** Default as walmgr had it; absent = unset. */
  readonly default?: string;
  /** The default as the reference shows it, where it is derived rather than a value. */
  readonly shownDefault?: string;
  /** Which role reads it ("both": either); a file of the other role that sets it draws a warning. */
  readonly role: Role | "both";
  readonly range?: SettingRange;
  /** A "choice": the words it takes (anything else is exit 3 naming them). */
  readonly choices?: readonly string[];
  /** One line, in operators' words: the configuration reference's "meaning". */
  readonly doc: string;
}

/** The settings, in the order the configuration reference lists them. */
export const SETTINGS = {
  job_name: {
    kind: "string",
    role: "both",
    shownDefault: "config file's name without extension",
    doc: "name in log lines",
  },
  logfile: { kind: "path", role: "both", doc: "file the log is appended to (everything, even with `-q`)" },
  use_skylog: { kind: "bool", default: "0", role: "both", doc: "accepted; skylog is not used" },
  pidfile: {
    kind: "path",
    role: "both",
    doc: "pid file of the sync daemon: one daemon at a time; `stop` signals it; `-d` needs it",
  },
  master_db: {
    kind: "string",
    role: "master",
    doc: "libpq connection string (`dbname=… host=… port=… user=…`) or URL",
  },
  master_data: { kind: "path", role: "master", doc: "master data directory" },
  master_config: {
    kind: "path",
    role: "master",
    doc: "master postgresql.conf, edited by `setup`/`stop` (a copy is saved first)",
  },
  master_restart_cmd: {
    kind: "command",
    role: "master",
    doc: "shell command to restart the master; unset: you restart by hand",
  },
  master_bin: { kind: "path", role: "master", doc: "folder of the master's PostgreSQL binaries, when not in PATH" },
  slave: {
    kind: "location",
    role: "both",
    doc: "slave base directory: `/path` (local or mounted), `host:/path` or `s3://bucket/prefix`",
  },
  walmgr_data: { kind: "location", role: "both", doc: "skytools-3's name for `slave`" },
  slave_config: { kind: "path", role: "master", doc: "the slave's config file (for commands run on the slave)" },
  completed_wals: {
    kind: "location",
    role: "both",
    shownDefault: "`%(slave)s/logs.complete`",
    doc: "complete WAL and the control files",
  },
  partial_wals: {
    kind: "location",
    role: "both",
    shownDefault: "`%(slave)s/logs.partial`",
    doc: "the in-progress segment",
  },
  full_backup: {
    kind: "location",
    role: "both",
    shownDefault: "`%(slave)s/data.master`",
    doc: "newest base backup; rotations `.0`, `.1` …",
  },
  backup_repo: {
    kind: "location",
    role: "both",
    shownDefault: "`%(slave)s/repo`",
    doc: "`backup_format = repo`: the block repository (packs and set manifests)",
  },
  config_backup: {
    kind: "location",
    role: "both",
    shownDefault: "`%(slave)s/config.backup`",
    doc: "master's postgresql.conf, pg_hba.conf, pg_ident.conf",
  },
  loop_delay: {
    kind: "float",
    default: "1.0",
    role: "master",
    range: { min: 0.1, text: "at least 0.1 s", out: "raise" },
    doc: "seconds between daemon syncs (SIGHUP applies a new value); less than 0.1 is taken as 0.1",
  },
  use_xlog_functions: {
    kind: "bool",
    default: "0",
    role: "master",
    doc: "1: record mode (ship only new bytes); 0: file mode (copy the newest segment)",
  },
  compression: { kind: "bool", default: "0", role: "master", doc: "compress on the wire (ssh transport)" },
  slave_wal_ctl: {
    kind: "string",
    role: "both",
    shownDefault: "this `bin/wal-ctl`",
    doc: "wal-ctl on the slave host, run over ssh for `slave = host:/path`",
  },
  ssh_timeout: {
    kind: "float",
    default: "10",
    role: "both",
    doc: "seconds for ssh to connect, its keep-alive budget, and the bound of each helper request (plus 1 s per 64 KiB it carries)",
  },
  ssh_config: {
    kind: "path",
    role: "both",
    doc: "ssh client config file (`ssh -F`); unset: the user's `~/.ssh/config`",
  },
  ssh_control_persist: {
    kind: "float",
    default: "60",
    role: "both",
    doc: "seconds a shared ssh connection to the slave host stays open for the next command; 0: off",
  },
  restore_timeout: {
    kind: "float",
    default: "10",
    role: "both",
    doc: '`wal-restore`: seconds before an unreachable slave answers "not available" (S3: whole call)',
  },
  archive_batch: {
    kind: "int",
    default: "16",
    role: "master",
    doc: "`wal-archive` also archives ahead up to this many further segments PostgreSQL marked ready (acknowledged later without Node); 0: off",
  },
  archive_parallel: {
    kind: "int",
    default: "4",
    role: "master",
    range: { min: 1, text: "at least 1", out: "raise-quietly" },
    doc: "segments one `wal-archive` run copies at once, `%p` included (1 over ssh: one session); 0 is taken as 1",
  },
  restore_prefetch: {
    kind: "int",
    default: "8",
    role: "slave",
    doc: "next segments `wal-restore` keeps verified in `pg_wal/.walmgr-prefetch`; 0: off (the standby's heartbeat still runs)",
  },
  also_archive_to: {
    kind: "string",
    role: "master",
    doc: "further slave directories (comma-separated: `/path`, `host:/path`, `s3://bucket/prefix`) WAL is archived to",
  },
  s3_endpoint: {
    kind: "string",
    role: "both",
    shownDefault: "`https://s3.REGION.amazonaws.com`",
    doc: "S3 endpoint URL for `slave = s3://…` (see [S3](#an-s3-slave-directory-object-store-and-several-repositories))",
  },
  s3_region: { kind: "string", default: "us-east-1", role: "both", doc: "S3 region (signature scope)" },
  s3_uri_style: {
    kind: "string",
    role: "both",
    shownDefault: "`path` with `s3_endpoint`, else `host`",
    doc: "S3 addressing: `path` (endpoint/bucket/key) or `host` (bucket.endpoint/key)",
  },
  s3_access_key: {
    kind: "string",
    role: "both",
    shownDefault: "environment, `~/.aws`",
    doc: "S3 access key id",
  },
  s3_secret_key: {
    kind: "string",
    role: "both",
    shownDefault: "environment, `~/.aws`",
    doc: "S3 secret key; only in a config file of mode 0600; never printed",
  },
  s3_session_token: { kind: "string", role: "both", doc: "S3 session token for temporary credentials" },
  s3_profile: {
    kind: "string",
    role: "both",
    shownDefault: "`$AWS_PROFILE`, else `default`",
    doc: "profile of `~/.aws/credentials` to use",
  },
  s3_timeout: {
    kind: "float",
    default: "30",
    role: "both",
    doc: "seconds one S3 request may take as a whole (a download: per `s3_part_size` of it); `wal-archive`'s whole call: `s3_timeout` × (`s3_retries` + 1)",
  },
  s3_retries: {
    kind: "int",
    default: "4",
    role: "both",
    range: { min: 0, max: 20, text: "a number from 0 to 20" },
    doc: "retries (with backoff) of an S3 request that failed with 5xx/408/429 or a network error",
  },
  s3_part_size: {
    kind: "int",
    default: "16777216",
    role: "both",
    // At most 1 GiB: the S3 driver's old check read `5 << 30`, which is 1 GiB in 32-bit JavaScript
    // arithmetic, whatever its message said; the limit is kept, now said as it is.
    range: { min: 5 << 20, max: 1 << 30, text: "5 MiB to 1 GiB (5242880 to 1073741824 bytes)" },
    shownDefault: "16 MiB",
    doc: "bytes per S3 upload part (multipart above it), and the memory an upload holds",
  },
  control_dir: {
    kind: "path",
    role: "both",
    shownDefault: "`NAME.control`",
    doc: "local folder of `PAUSE`/`STOP` when the slave directory is in S3",
  },
  standby_name: {
    kind: "string",
    role: "slave",
    shownDefault: "host name + hash",
    doc: "name this standby records its restart point under (`[A-Za-z0-9._-]`, 1–64)",
  },
  standby_expire: {
    kind: "float",
    default: "86400",
    role: "both",
    doc: "seconds after which an unrefreshed standby record stops holding WAL back (0: never)",
  },
  periodic_command: {
    kind: "command",
    role: "master",
    doc: "shell command run every `command_interval` seconds by the daemon and `wal-ctl periodic`",
  },
  command_interval: {
    kind: "float",
    default: "0",
    role: "master",
    doc: "seconds between periodic runs (0: the daemon runs it at each segment switch)",
  },
  hot_standby: {
    kind: "bool",
    default: "0",
    role: "master",
    doc: "pre-9.6 servers: `setup` sets `wal_level = hot_standby`",
  },
  backup_format: {
    kind: "choice",
    choices: ["plain", "repo"],
    default: "plain",
    role: "both",
    doc: "`plain`: sets are data directories, rotated by renaming (walmgr's); `repo`: a block repository (changed blocks only, compressed)",
  },
  compress_type: {
    kind: "choice",
    choices: ["none", "lz4", "zstd", "gzip"],
    default: "zstd",
    role: "both",
    doc: "`repo` format: how new blocks are compressed (runs of blocks together)",
  },
  compress_level: {
    kind: "int",
    role: "both",
    shownDefault: "zstd: 1, gzip: 6",
    range: { min: 0, max: 19, text: "a number from 0 to 19 (zstd: 1-19, gzip: 1-9, lz4 and none: their one level)" },
    doc: "`repo` format: the compression level",
  },
  backup_parallel: {
    kind: "int",
    default: "2",
    role: "both",
    range: { min: 1, max: 64, text: "a number from 1 to 64" },
    doc: "`repo` format: files read, hashed, compressed and written at once by a backup",
  },
  keep_backups: {
    kind: "int",
    default: "0",
    role: "both",
    doc: "sets to keep (0: only the newest); with 0, `wal-restore` drops WAL before `%r` no set needs",
  },
  keep_days: {
    kind: "float",
    default: "0",
    role: "both",
    doc: "`repo` format: keep every set needed to restore to any moment of the last N days (0: off), beside `keep_backups`",
  },
  keep_symlinks: { kind: "bool", default: "1", role: "both", doc: "skytools-3: keep symlinks in backups (accepted)" },
  backup_archive_timeout: {
    kind: "float",
    default: "60",
    role: "master",
    range: { above: 0, text: "a number of seconds above zero" },
    doc: "seconds a master's backup waits for its WAL to be archived; then it fails, exit 9 (`--archive-timeout`)",
  },
  archive_command: { kind: "command", role: "slave", doc: "run before the oldest backup set is rotated away" },
  slave_data: { kind: "path", role: "slave", doc: "slave data directory" },
  slave_config_dir: { kind: "path", role: "slave", doc: "`restore` copies the saved config files here" },
  slave_stop_cmd: { kind: "command", role: "slave", doc: "shell command to stop the slave" },
  slave_start_cmd: { kind: "command", role: "slave", doc: "shell command to start the slave" },
  slave_bin: { kind: "path", role: "slave", doc: "PostgreSQL binaries, when not in PATH" },
  slave_pg_xlog: { kind: "path", role: "slave", doc: "`restore` makes pg_wal a link to this directory" },
  backup_datadir: {
    kind: "bool",
    default: "1",
    role: "slave",
    doc: "`restore` keeps the old data directory as `slave_data.N`",
  },
  slave_db: {
    kind: "string",
    role: "slave",
    shownDefault: "from the standby's postmaster.pid",
    doc: "connection string to the standby, for backups taken on the slave",
  },
  primary_conninfo: { kind: "string", role: "slave", doc: "the restored standby also streams from the master" },
} as const satisfies Record<string, SettingSpec>;

/** A setting's name: a key of SETTINGS. A misspelled one is a compile error where it is read. */
export type SettingKey = keyof typeof SETTINGS;

/** The settings of one kind (or of several): what Config's typed accessors take. */
export type SettingOfKind<K extends SettingKind> = {
  [S in SettingKey]: (typeof SETTINGS)[S]["kind"] extends K ? S : never;
}[SettingKey];

/**
 * The spec of setting `key`, or undefined for a key walmgr does not know. Only SETTINGS' own
 * keys count: `constructor` or `__proto__` in a config file is an unknown key, not Object's.
 */
export function settingSpec(key: string): SettingSpec | undefined {
  return isSetting(key) ? SETTINGS[key] : undefined;
}

/** True for a key of SETTINGS (never for an inherited name such as `constructor`). */
export function isSetting(key: string): key is SettingKey {
  return Object.hasOwn(SETTINGS, key);
}

/**
 * Where `value` (already of `spec`'s kind) stands against `spec`'s range: "ok", "low" (below
 * min, or not above `above`) or "high".
 */
export function rangeCheck(spec: SettingSpec, value: number): "ok" | "low" | "high" {
  const r = spec.range;
  if (r === undefined) return "ok";
  if ((r.min !== undefined && value < r.min) || (r.above !== undefined && !(value > r.above))) return "low";
  if (r.max !== undefined && value > r.max) return "high";
  return "ok";
}

/**
 * Names skytools' Config class defines for every file (job_name, service_name, host_name,
 * config_dir, config_file), usable in `%(name)s` and settable to override; never warned about.
 */
export const IMPLICIT_KEYS = new Set(["service_name", "host_name", "config_dir", "config_file", "job_name"]);

const TRUE = new Set(["1", "yes", "true", "on"]);
const FALSE = new Set(["0", "no", "false", "off", ""]);

/** Parses a boolean the way ConfigParser.getboolean does; undefined for anything else. */
export function parseBool(value: string): boolean | undefined {
  const v = value.trim().toLowerCase();
  if (TRUE.has(v)) return true;
  if (FALSE.has(v)) return false;
  return undefined;
}
