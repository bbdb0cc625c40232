import { HELPER_VERBS } from "../storage/helper-verbs";
/* Man-page style help for each executable. Kept as plain strings: --help must be instant. */

const COMMON = `GENERAL OPTIONS
    -h, --help         show this help and exit
    -q, --quiet        print errors only (the logfile still gets everything)
    -v, --verbose      print debug messages too
    -n, --not-really   print every action that would be taken; change nothing
        --version      print the version and exit
`;

const EXIT = `EXIT STATUS
    0 done   1 not available (no such WAL yet)   2 usage   3 config   4 lock held
    6 transport (ssh/rsync/network)   7 database   8 archive conflict
    9 I/O (disk full, permissions, corrupt file)   70 internal error
`;

/** The helper's requests, from the one list (storage/helper-verbs.ts). */
const HELPER_VERBS_HELP = Object.entries(HELPER_VERBS)
  .map(([v, spec]) => {
    const left = [v, ...spec.args.map((a) => a.toUpperCase())].join(" ");
    const doc = `${spec.doc}${spec.body === "in" ? " (body in)" : spec.body === "out" ? " (body out)" : ""}`;
    // A name too long for its column gets a line of its own, as man pages do.
    return left.length < 24 ? `        ${left.padEnd(24)}${doc}` : `        ${left}\n${" ".repeat(32)}${doc}`;
  })
  .join("\n");

export const HELP = {
  walArchive: `NAME
    wal-archive - archive one WAL file into the slave directory (archive_command)

SYNOPSIS
    wal-archive [OPTIONS] CONFIG %p %f

DESCRIPTION
    Run by PostgreSQL on the master as its archive_command:
        archive_command = '/path/to/bin/wal-archive /path/to/master.ini %p %f'
    Copies %p (relative to the data directory) into completed_wals as %f, with a
    sha256 checksum beside it (.%f.sha256). Exits 0 only once both are durable
    (temp file, fsync, rename, directory fsync). Archiving identical content again
    succeeds; other content under an archived name is refused with exit 8 and the
    archived copy is left untouched. Needs no database connection.
    With slave = host:/path the file travels over ssh (BatchMode, ConnectTimeout =
    ssh_timeout) to the slave's wal-ctl, which stores it the same way there; an
    unreachable host exits 6.

${COMMON}
${EXIT}`,
  walRestore: `NAME
    wal-restore - serve one WAL file to a standby (restore_command)

SYNOPSIS
    wal-restore [OPTIONS] CONFIG %f %p [%r]

DESCRIPTION
    Run by PostgreSQL on the slave as its restore_command (wal-ctl restore sets it):
        restore_command = '/path/to/bin/wal-restore /path/to/slave.ini %f %p %r'
    Copies %f from completed_wals to %p after checking its checksum; exits 1 when
    the file is not there yet (the standby retries). While completed_wals/PAUSE
    exists nothing is served. While completed_wals/STOP exists (made by boot) the
    in-progress segment from partial_wals is served after the complete ones, and
    the end of shipped WAL is recorded for boot. With %r given, the standby's
    restart point is recorded in completed_wals/.walmgr-standby.NAME (NAME:
    standby_name), so that purging keeps the WAL it needs until its record is
    older than standby_expire seconds; with keep_backups = 0, WAL older than %r
    that no other live standby and no kept backup set needs is removed.
    Never waits: PostgreSQL does the retrying. With slave = host:/path an
    unreachable host answers 1 within restore_timeout seconds.

${COMMON}
${EXIT}`,
  walSync: `NAME
    wal-sync - ship the in-progress WAL segment to the slave

SYNOPSIS
    wal-sync [OPTIONS] CONFIG
    wal-sync [OPTIONS] CONFIG --daemon [-d]

DESCRIPTION
    Run on the master. With use_xlog_functions = 1 (record mode) it asks the master
    for its current WAL position and ships only the bytes written since the last
    sync (the position is kept in partial_wals/.walmgr-sync-state). With
    use_xlog_functions = 0 (file mode) it copies the newest segment file of
    pg_wal. Partial segments are stored full-size (zero-padded), durably. When the
    master has moved to a new segment, the rest of the old one is shipped first.
    A partial segment is removed once its complete segment is archived.

    --daemon (walmgr's syncdaemon) repeats this every loop_delay seconds until
    stopped, keeping one database connection open. When the master or the slave
    directory fails, each failed attempt is logged and retried after a doubling
    delay (loop_delay, at least 1 s, up to 30 s). It writes its pid to pidfile and
    refuses to start (exit 4) while another daemon runs; a pidfile whose process is
    gone is reported as stale and taken over. SIGTERM or SIGINT (or
    wal-ctl CONFIG stop) ends it after the current step, removing the pidfile;
    SIGHUP re-reads CONFIG. periodic_command runs every command_interval seconds
    (command_interval = 0: at every segment switch); its failure is logged with its
    exit status and never stops shipping. The daemon's state is in
    partial_wals/.walmgr-daemon-state: see wal-ctl CONFIG status.

OPTIONS
        --daemon       run until stopped, syncing every loop_delay seconds
    -d, --detach       run the daemon in the background (needs pidfile; implies
                       --daemon); returns once the daemon has written its pidfile

${COMMON}
${EXIT}`,
  walBackup: `NAME
    wal-backup - take a base backup into the slave directory

SYNOPSIS
    wal-backup [OPTIONS] CONFIG

DESCRIPTION
    On the master (CONFIG has [wal-master]): a non-exclusive base backup
    (pg_backup_start/pg_backup_stop in one session) of master_data into
    full_backup. On the slave (CONFIG has [wal-slave]): the same, taken from the
    running standby in slave_data, with no load on the master (connection from
    slave_db, or from the standby's postmaster.pid).

    completed_wals/BACKUPLOCK is held throughout. With keep_backups = N > 0 the
    sets are rotated before the copy starts (data.master -> data.master.0 -> ...;
    at most N remain, the slave's archive_command runs with the path of a set
    before that set is removed, and its failure stops the backup), and after the
    backup WAL that no kept set and no live standby needs is purged (.history
    kept; a standby whose record is older than standby_expire is warned about).
    With keep_backups = 0 the new set replaces the old one once it is complete.
    The set is built under a hidden temporary name and appears only when
    complete; it holds backup_label, tablespace_map, .walmgr-backup.json (LSNs,
    WAL files, timeline, times, version, system identifier, size, file count)
    and .walmgr-manifest.json (size and sha256 of every file; see wal-ctl verify).
    The master's postgresql.conf, pg_hba.conf and pg_ident.conf go to config_backup.

OPTIONS
        --clear-stale-lock  clear a BACKUPLOCK whose holder is provably not a running backup

${COMMON}
${EXIT}`,
  walCtl: `NAME
    wal-ctl - manage WAL shipping, standby replay and restores (walmgr.py's commands)

SYNOPSIS
    wal-ctl [OPTIONS] CONFIG COMMAND [ARGS]

MASTER COMMANDS
    setup          set archive_mode, archive_command and wal_level in master_config
                   (a copy is saved first), restart with master_restart_cmd only when
                   needed, otherwise reload; create the slave directory layout
    stop           turn archiving off again (WAL is then no longer shipped!) and
                   stop the sync daemon (SIGTERM; waits up to 30 s for it to exit)
    sync           ship the in-progress WAL segment (see wal-sync)
    syncdaemon     ship it every loop_delay seconds until stopped (see
                   wal-sync --daemon); -d runs it in the background
    periodic       run periodic_command if command_interval seconds have passed
                   since its last run (--force: now); exit 9 when it fails
    status         the sync daemon (running? pid, heartbeat), the last sync
                   (segment, position, seconds ago), how many bytes the master
                   is ahead of what was shipped, and each standby recorded in
                   completed_wals with its lag; --json for scripts
    backup         take a base backup (see wal-backup)
    listbackups    list backup sets in the slave directory

SLAVE COMMANDS
    setup          create the slave directory layout
    restore        move the newest backup into slave_data, write the recovery
                   settings (restore_command, standby.signal) and start the server
                   with slave_start_cmd; interrupted, it is finished by running it again
    pause          hold back new WAL from the standby (creates PAUSE)
    continue       let WAL reach the standby again (removes PAUSE)
    boot           replay every complete and the partial segment, then end recovery
                   and open the standby for writes (creates STOP, promotes)
    backup         take a backup of the running standby (no load on the master)
    listbackups    list backup sets (--json for scripts)
    verify [SET]   check backup sets against their manifests

POINT-IN-TIME RESTORE
    restore [SET] [DST] --target-time T | --target-lsn L | --target-xid X | --target-name N
                   [--target-action promote|pause|shutdown] [--target-exclusive]
                   restore a set (copied when named) into DST (default slave_data) and
                   recover to the target instead of following the master; on the master
                   (EXPERIMENTAL, as in walmgr) SET and DST are required
    status         the last sync and the daemon's heartbeat, as the slave sees them,
                   and each standby recorded in completed_wals with its lag

INTERNAL COMMANDS (as walmgr.py named them)
    xarchive %p %f          same as wal-archive
    xrestore %f %p [%r]     same as wal-restore
    xhelper                 the slave side of the ssh transport: the master runs
                            \`wal-ctl SLAVE_CONFIG xhelper\` over ssh (SLAVE_CONFIG
                            may be -), which serves these requests on its stdin and
                            stdout until the master closes it; not for use by hand:
${HELPER_VERBS_HELP}

OPTIONS
        --json              machine-readable output where the output is data
        --timeout SECONDS   boot: how long to wait for replay to finish (default 600);
                            restore: for the server to stop after slave_stop_cmd (60)
    -d, --detach            syncdaemon: run in the background (needs pidfile)
        --force             periodic: run periodic_command even if not due

${COMMON}
${EXIT}`,
};
