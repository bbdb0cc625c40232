/**
 * What a base backup leaves out, as PostgreSQL documents it ("Backing Up the Data Directory")
 * and pg_basebackup does: the directories whose contents are rebuilt at start-up are kept
 * empty; files that would confuse recovery are dropped.
 */
const EMPTY_DIRS = new Set([
  "pg_wal",
  "pg_xlog",
  "pg_replslot",
  "pg_dynshmem",
  "pg_notify",
  "pg_serial",
  "pg_snapshots",
  "pg_stat_tmp",
  "pg_subtrans",
]);

const TOP_FILES = new Set([
  "postmaster.pid",
  "postmaster.opts",
  "backup_label",
  "tablespace_map",
  "backup_manifest",
  "backup_label.old",
  "current_logfiles",
  "current_logfiles.tmp",
  "postgresql.auto.conf.tmp",
  "standby.signal",
  "recovery.signal",
  "recovery.conf",
  "promote",
]);

/** Decides whether `rel` (relative to the data directory, `/`-separated) goes into the backup. */
export function keepInBackup(rel: string, isDir: boolean): boolean {
  const parts = rel.split("/");
  const name = parts[parts.length - 1] ?? "";
  if (name.startsWith("pgsql_tmp")) return false;
  if (name === "pg_internal.init") return false;
  if (name.startsWith(".walmgr-tmp.")) return false;
  if (parts.length > 1 && EMPTY_DIRS.has(parts[0] ?? "")) {
    // Keep pg_wal/archive_status as an empty folder: PostgreSQL expects it.
    return (
      isDir && parts.length === 2 && (parts[0] === "pg_wal" || parts[0] === "pg_xlog") && name === "archive_status"
    );
  }
  if (parts.length === 1 && !isDir && TOP_FILES.has(name)) return false;
  // Temporary relations (t<backend>_<relfilenode>) are never needed.
  if (!isDir && /^t\d+_\d+/.test(name) && parts.includes("base")) return false;
  return true;
}
