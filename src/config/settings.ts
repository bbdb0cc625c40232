/**
 * Every setting of walmgr's manual (plus the few walmgr 2.1/skytools-3 read without listing),
 * with walmgr's defaults. Keys not listed here draw a warning naming them.
 */
export type SettingType = "string" | "path" | "location" | "bool" | "int" | "float" | "command";
export type Role = "master" | "slave";

export interface SettingSpec {
  type: SettingType;
  /** Default as walmgr had it; undefined = unset. */
  default?: string;
  /** Which roles read it; both when absent. */
  roles?: Role[];
  doc: string;
}

export const SETTINGS: Record<string, SettingSpec> = {
  job_name: { type: "string", doc: "Name used in log lines (default: the config file's base name)." },
  logfile: { type: "path", doc: "File to append the log to (relative to the config file)." },
  use_skylog: { type: "bool", default: "0", doc: "Accepted for compatibility; skylog is not used." },
  pidfile: { type: "path", doc: "Pid file for the sync daemon." },
  master_db: { type: "string", roles: ["master"], doc: "libpq connection string to the master." },
  master_data: { type: "path", roles: ["master"], doc: "Master data directory." },
  master_config: { type: "path", roles: ["master"], doc: "Master postgresql.conf (edited by setup/stop)." },
  master_restart_cmd: { type: "command", roles: ["master"], doc: "Shell command that restarts the master." },
  master_bin: { type: "path", roles: ["master"], doc: "Directory of the master's PostgreSQL binaries." },
  slave: { type: "location", doc: "Slave base directory: /path, or host:/path over ssh." },
  walmgr_data: { type: "location", doc: "skytools-3 name for the slave base directory." },
  slave_config: { type: "path", roles: ["master"], doc: "Path of the slave's config file." },
  completed_wals: { type: "location", doc: "Directory of complete WAL and control files." },
  partial_wals: { type: "location", doc: "Directory of the in-progress WAL segment." },
  full_backup: { type: "location", doc: "Directory of the newest base backup." },
  config_backup: { type: "location", doc: "Directory of the master's saved config files." },
  loop_delay: { type: "float", default: "1.0", roles: ["master"], doc: "Seconds between daemon syncs." },
  use_xlog_functions: { type: "bool", default: "0", roles: ["master"], doc: "Record-based shipping." },
  compression: { type: "bool", default: "0", roles: ["master"], doc: "Compress on the wire (rsync -z)." },
  periodic_command: { type: "command", roles: ["master"], doc: "Shell command run every command_interval s." },
  command_interval: { type: "float", default: "0", roles: ["master"], doc: "Seconds between periodic runs." },
  hot_standby: { type: "bool", default: "0", roles: ["master"], doc: "setup sets wal_level for hot standby." },
  keep_backups: { type: "int", default: "0", doc: "Number of backup sets to keep." },
  keep_symlinks: { type: "bool", default: "1", doc: "skytools-3: keep symlinks in backups." },
  archive_command: { type: "command", roles: ["slave"], doc: "Run before the oldest backup is rotated away." },
  slave_data: { type: "path", roles: ["slave"], doc: "Slave data directory." },
  slave_config_dir: { type: "path", roles: ["slave"], doc: "Where restore puts the saved config files." },
  slave_stop_cmd: { type: "command", roles: ["slave"], doc: "Shell command that stops the slave." },
  slave_start_cmd: { type: "command", roles: ["slave"], doc: "Shell command that starts the slave." },
  slave_bin: { type: "path", roles: ["slave"], doc: "Directory of PostgreSQL binaries (pg_ctl …)." },
  slave_pg_xlog: { type: "path", roles: ["slave"], doc: "restore links pg_wal to this directory." },
  backup_datadir: { type: "bool", default: "1", roles: ["slave"], doc: "restore keeps the old data directory." },
  slave_db: {
    type: "string",
    roles: ["slave"],
    doc: "Connection string to the standby for slave backups (default: from its postmaster.pid).",
  },
  primary_conninfo: { type: "string", roles: ["slave"], doc: "Standby also streams from the master." },
  slave_wal_ctl: {
    type: "string",
    doc: "wal-ctl on the slave host, run over ssh for slave = host:/path (default: this installation's bin/wal-ctl).",
  },
  ssh_timeout: {
    type: "float",
    default: "10",
    doc: "Seconds ssh may take to connect to the slave host (also its keep-alive budget, and each helper request's bound: plus 1 s per 64 KiB it carries).",
  },
  ssh_config: { type: "path", doc: "ssh client config file for the slave host (ssh -F); default ~/.ssh/config." },
  ssh_control_persist: {
    type: "float",
    default: "60",
    doc: "Seconds an ssh connection to the slave host stays open for the next command (ControlPersist); 0: no sharing.",
  },
  archive_batch: {
    type: "int",
    default: "16",
    roles: ["master"],
    doc: "wal-archive also archives ahead up to this many further segments PostgreSQL marked ready; PostgreSQL's own call for each is then acknowledged without Node (0: only %p).",
  },
  archive_parallel: {
    type: "int",
    default: "4",
    roles: ["master"],
    doc: "Segments one wal-archive run copies at once, %p included (local slave directory; 1 over ssh).",
  },
  restore_prefetch: {
    type: "int",
    default: "8",
    roles: ["slave"],
    doc: "wal-restore keeps up to this many next segments, verified, in pg_wal/.walmgr-prefetch (0: off; the standby's heartbeat still runs).",
  },
  s3_endpoint: {
    type: "string",
    doc: "S3 endpoint URL for slave = s3://bucket/prefix (default https://s3.REGION.amazonaws.com).",
  },
  s3_region: { type: "string", default: "us-east-1", doc: "S3 region (signature scope)." },
  s3_uri_style: {
    type: "string",
    doc: "S3 addressing: path (endpoint/bucket/key) or host (bucket.endpoint/key); default path when s3_endpoint is set, else host.",
  },
  s3_access_key: { type: "string", doc: "S3 access key id (else AWS_ACCESS_KEY_ID or ~/.aws/credentials)." },
  s3_secret_key: {
    type: "string",
    doc: "S3 secret key; only in a config file no one else can read (mode 0600). Never printed.",
  },
  s3_session_token: { type: "string", doc: "S3 session token for temporary credentials." },
  s3_profile: { type: "string", doc: "Profile of ~/.aws/credentials to use (default $AWS_PROFILE, else default)." },
  s3_timeout: {
    type: "float",
    default: "30",
    doc: "Seconds one S3 request may take as a whole (a download: per s3_part_size of it) before it is retried; after s3_retries, exit 6. wal-archive's whole call: s3_timeout × (s3_retries + 1).",
  },
  s3_retries: {
    type: "int",
    default: "4",
    doc: "Retries (with backoff) of an S3 request that failed with 5xx/408/429 or a network error.",
  },
  s3_part_size: {
    type: "int",
    default: "16777216",
    doc: "Bytes per S3 upload part (multipart above it); also the memory an upload holds. At least 5 MiB.",
  },
  control_dir: {
    type: "path",
    doc: "Local folder of the control files (STOP, PAUSE) when completed_wals is in an object store (default: beside the config file, NAME.control).",
  },
  also_archive_to: {
    type: "string",
    roles: ["master"],
    doc: "More slave directories (comma-separated locations: /path, host:/path, s3://bucket/prefix) that every WAL file is archived to as well.",
  },
  standby_name: {
    type: "string",
    roles: ["slave"],
    doc: "Name this standby records its restart point under in completed_wals (default: host name and a hash of slave_data).",
  },
  standby_expire: {
    type: "float",
    default: "86400",
    doc: "Seconds after which a standby whose record was not refreshed (by wal-restore or, while its server runs, its heartbeat) stops holding WAL back (0: never).",
  },
  backup_archive_timeout: {
    type: "float",
    default: "60",
    roles: ["master"],
    doc: "Seconds a master's backup waits for the WAL it needs to be archived; then it fails (exit 9) and is not kept (as pgBackRest's archive-timeout).",
  },
  restore_timeout: {
    type: "float",
    default: "10",
    doc: "wal-restore: seconds before a slave that does not answer counts as not available; with S3 it bounds the whole call, every request and retry included.",
  },
};

/**
 * The spec of setting `key`, or undefined for a key walmgr does not know. Only SETTINGS' own
 * keys count: `constructor` or `__proto__` in a config file is an unknown key, not Object's.
 */
export function settingSpec(key: string): SettingSpec | undefined {
  return Object.hasOwn(SETTINGS, key) ? SETTINGS[key] : undefined;
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
