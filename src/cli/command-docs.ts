/**
 * wal-ctl's manual pages, as data: what each command does and exits with, beyond what its record
 * in commands.ts declares (roles, arguments, options, summary). help.ts renders the pages
 * (`wal-ctl COMMAND --help`, `wal-ctl help COMMAND`, the overview of `wal-ctl --help`) from
 * both; the parser reads the options from the record, so the manual and the parser never
 * describe two different commands.
 *
 * --help loads this file and must stay instant: no imports but the command record (whose
 * command modules load only when a command runs).
 */
import { CTL_COMMANDS, type CommandSpec, type DocumentedCommand, type OptionDoc } from "./commands";

export type { DocumentedCommand, OptionDoc, Role } from "./commands";

/** The long texts of one command's manual page. */
export interface CommandPage {
  /** What stands for CONFIG in the synopsis (default CONFIG). */
  config?: string;
  /**
   * The options part of each synopsis line (one line each; "" for none), rendered after
   * `wal-ctl [OPTIONS] CONFIG COMMAND ARGS`; a "\n" continues the line on the next one.
   */
  synopsis: readonly string[];
  /** Each positional argument and what it is. */
  arguments?: readonly (readonly [name: string, doc: string])[];
  /**
   * The DESCRIPTION section: paragraphs (reflowed to the page) separated by blank lines; a line
   * that starts with a space (a setting, a command line) is kept as written.
   */
  description: string;
  /** Command lines (or crontab, postgresql.conf, NRPE lines) and what each does. */
  examples: readonly (readonly [line: string, doc: string])[];
  /** What this command's exit codes mean, where it gives them a meaning of their own. */
  exit?: readonly (readonly [code: number, doc: string])[];
}

/** One command's manual page: its record (commands.ts) and its long texts. */
export type CommandDoc = Omit<CommandSpec, "run"> & CommandPage;

/**
 * The options every executable takes. The pages list them, and the parsers accept exactly these
 * (cli/parse.ts reads this list; cli/args.ts' util.parseArgs table is checked against it by a test).
 */
export const GENERAL_OPTIONS: readonly OptionDoc[] = [
  ["-h, --help", "show this help and exit"],
  ["-q, --quiet", "print errors only (the logfile still gets everything)"],
  ["-v, --verbose", "print debug messages too"],
  ["-n, --not-really", "print every action that would be taken; change nothing"],
  ["--version", "print the version and exit"],
];

/**
 * The executables' own options beyond the general ones: their pages (help.ts) and their parsers
 * (cli/parse.ts for wal-sync and wal-backup) read them from here. wal-archive and wal-restore
 * take none: PostgreSQL gives them only positional arguments.
 */
export const TOOL_OPTIONS = {
  walArchive: [],
  walRestore: [],
  walSync: [
    ["--daemon", "run until stopped, syncing every loop_delay seconds"],
    [
      "-d, --detach",
      "run the daemon in the background (needs pidfile; implies --daemon); returns once the daemon has written its pidfile",
    ],
  ],
  walBackup: [
    ["--clear-stale-lock", "clear a BACKUPLOCK whose holder is provably not a running backup"],
    [
      "--archive-timeout SECONDS",
      "how long to wait for the WAL the backup needs to be archived (default backup_archive_timeout, 60)",
    ],
  ],
} satisfies Record<string, readonly OptionDoc[]>;

/** The long texts of each command's page. */
const COMMAND_PAGES: Record<DocumentedCommand, CommandPage> = {
  setup: {
    synopsis: [""],
    description: `On the master: sets archive_mode = on, archive_command (this project's
wal-archive with CONFIG, absolute paths) and wal_level = replica in
master_config, editing it in place and keeping every other line and comment
(a copy is saved first). Removes overrides of these three settings from
postgresql.auto.conf. Restarts the server with master_restart_cmd only when
a restart is needed (archive_mode, wal_level), otherwise reloads, then
checks the values with SHOW (exit 7 when they are not what it set). Creates
completed_wals, partial_wals, full_backup and config_backup in the slave
directory, and logs.complete in each also_archive_to repository. On a promoted standby
it also archives the new timeline's .history file and the segments
completed since the promotion. Running it twice changes nothing.

On the slave: creates the slave directory layout.`,
    examples: [
      ["wal-ctl /etc/walmgr/master.ini setup", "start archiving into the slave directory"],
      ["wal-ctl -n /etc/walmgr/master.ini setup", "show the edits and the restart it would make; change nothing"],
      ["wal-ctl /etc/walmgr/slave.ini setup", "create the slave directory layout on the slave host"],
    ],
    exit: [
      [3, "a file read after master_config would keep a wrong value (named with file and line)"],
      [7, "after the restart or reload SHOW does not report the values set"],
      [8, "another node made this timeline's .history in the slave directory"],
    ],
  },
  stop: {
    synopsis: [""],
    description: `Turns archiving off in master_config the way setup turned it on:
archive_mode = off and a restart with master_restart_cmd, or, without
master_restart_cmd, archive_command = '/bin/true' and a reload (so that
pg_wal does not fill up). Then stops the sync daemon named by pidfile
(SIGTERM; waits up to 30 s for it to exit), even when turning archiving
off failed. WAL is no longer shipped afterwards: a standby restored from
this slave directory falls behind. Run setup to start again.`,
    examples: [["wal-ctl /etc/walmgr/master.ini stop", "stop shipping WAL (e.g. on an old master after a failover)"]],
  },
  pause: {
    synopsis: [""],
    description: `Creates PAUSE in completed_wals (in control_dir when the slave directory
is in S3). While it exists wal-restore serves nothing, so the standby stops
replaying at the end of the WAL it already has; WAL keeps arriving in the
slave directory. Pausing twice is harmless. continue undoes it.`,
    examples: [["wal-ctl /etc/walmgr/slave.ini pause", "freeze the standby before a risky change on the master"]],
  },
  continue: {
    synopsis: [""],
    description: `Removes PAUSE; the standby picks up the WAL that arrived meanwhile at its
next retry of restore_command (within a few seconds).`,
    examples: [["wal-ctl /etc/walmgr/slave.ini continue", "resume replay after pause"]],
  },
  boot: {
    synopsis: ["[--timeout SECONDS]"],
    description: `Creates STOP in completed_wals: wal-restore then serves every complete
segment, then the partial segment, and records when the standby asks past
the end of all shipped WAL. boot waits for that, at most --timeout seconds,
and only then promotes the server in slave_data, so nothing the master
committed and shipped is lost (PostgreSQL 12+ ends recovery on a promote
without asking restore_command again). The standby moves to a new
timeline and is writable. When no server runs in slave_data, STOP is set
and boot is run again once the server runs. restore removes STOP.

After a failover: write a master config for the promoted node with the
same slave directory and run setup with it (see README, Failover).`,
    examples: [
      ["wal-ctl /etc/walmgr/slave.ini boot", "fail over: the standby becomes the master"],
      ["wal-ctl /etc/walmgr/slave.ini boot --timeout 3600", "a standby far behind: allow an hour of replay"],
    ],
    exit: [
      [1, "the standby did not reach the end of the shipped WAL within --timeout (not promoted; STOP stays)"],
      [7, "the server stopped while booting, or did not finish the promotion"],
    ],
  },
  sync: {
    synopsis: [""],
    description: `Ships the segment the master is writing into partial_wals, once. With
use_xlog_functions = 1 only the bytes written since the last sync; with 0
the newest pg_wal segment when it changed. The partial segment is stored
full-size (zero-padded). Refused (exit 4) while the sync daemon runs: it
is not needed then. Same as wal-sync CONFIG.`,
    examples: [
      ["wal-ctl /etc/walmgr/master.ini sync", "ship what the master wrote, e.g. before a planned failover"],
      [
        "* * * * * /opt/walmgr-ts/bin/wal-ctl -q /etc/walmgr/master.ini sync",
        "crontab line: ship every minute when no daemon runs",
      ],
    ],
    exit: [[4, "the sync daemon or another sync holds partial_wals/.walmgr-sync-lock"]],
  },
  syncdaemon: {
    synopsis: ["[-d | --detach]"],
    description: `Runs sync every loop_delay seconds until stopped, with one database
connection kept open. Failures (master or slave directory down) are logged
and retried after a doubling delay, up to 30 s. It writes its pid to
pidfile and refuses to start while another daemon runs (exit 4).
periodic_command runs every command_interval seconds beside it. SIGTERM,
SIGINT or wal-ctl CONFIG stop end it after the current step (exit 0);
SIGHUP re-reads CONFIG. Same as wal-sync CONFIG --daemon.`,
    examples: [
      ["wal-ctl /etc/walmgr/master.ini syncdaemon", "in the foreground, e.g. as a systemd service's ExecStart"],
      ["wal-ctl /etc/walmgr/master.ini syncdaemon -d", "in the background"],
      ['kill -HUP "$(cat /var/lib/postgresql/walmgr/master.pid)"', "re-read master.ini (loop_delay …)"],
    ],
    exit: [
      [0, "stopped by SIGTERM, SIGINT or wal-ctl CONFIG stop"],
      [4, "another daemon runs (named by pidfile)"],
    ],
  },
  periodic: {
    synopsis: ["[--force]"],
    description: `Runs periodic_command through /bin/sh -c when command_interval seconds
have passed since its last run (recorded in partial_wals), for cron when
no sync daemon runs it. The command is meant for syncing scripts, config
files, crontabs and the like to the slave.`,
    examples: [
      [
        "*/5 * * * * /opt/walmgr-ts/bin/wal-ctl -q /etc/walmgr/master.ini periodic",
        "crontab line: look every 5 minutes, run when due",
      ],
      ["wal-ctl /etc/walmgr/master.ini periodic --force", "run it now"],
    ],
    exit: [
      [0, "ran and succeeded, or not due"],
      [9, "periodic_command failed (its exit status is logged)"],
    ],
  },
  status: {
    synopsis: ["[--json | --prometheus]"],
    description: `Prints what is going on, read from the slave directory and (on the
master, with master_db) from PostgreSQL:

On both: the sync daemon (running? pid, heartbeat), the last sync
(segment, position, seconds ago), the master's position and how far the
shipped WAL is behind it; backups (count, newest, oldest, size); each
standby recorded in completed_wals with its lag; each also_archive_to
repository with its newest segment; who holds the sync lock.

Positions of two timelines are never compared: after a failover, a last
sync of the old timeline is named as such, and a sync lock held by another
master's daemon (the old master's, left running) is shown as held by
another master, with how to stop it.

On the master: the .ready backlog in pg_wal/archive_status (count, age of
the oldest) and pg_stat_archiver (failures, last error).

On the slave: the newest complete segment and the partial segment, the
control files (PAUSE, STOP, BACKUPLOCK with its age and holder), free
disk, and the standby's replay position, lag and paused state.

--prometheus prints the text exposition format for node_exporter's
textfile collector; write it to a temporary name and rename it, so the
collector never reads half a file.`,
    examples: [
      ["wal-ctl /etc/walmgr/master.ini status", "is the daemon running, how far behind is the slave"],
      ["wal-ctl /etc/walmgr/slave.ini status --json | jq .standbys", "the standbys' lag, for a script"],
      [
        "* * * * * wal-ctl /etc/walmgr/master.ini status --prometheus > /var/lib/node_exporter/textfile/walmgr.prom.$$ && mv /var/lib/node_exporter/textfile/walmgr.prom.$$ /var/lib/node_exporter/textfile/walmgr.prom",
        "crontab line: metrics for node_exporter every minute",
      ],
    ],
    exit: [[0, "always, whatever the status shows; only a bad CONFIG (3) or bad arguments (2) fail it"]],
  },
  check: {
    synopsis: ["[--timeout SECONDS] [--json | --nagios]"],
    description: `Checks the setup one item at a time and prints one line per item: OK,
WARN, FAIL or SKIP (an item that cannot be checked because an earlier one
failed), with the reason and, for WARN and FAIL, the fix.

On the master: CONFIG is valid; archive_mode, archive_command (it must run
this project's wal-archive with this CONFIG) and wal_level as PostgreSQL
reports them; the slave directory is reachable and writable (a probe file
is written and removed); the archiver is not failing and the .ready
backlog is small (pg_stat_archiver, pg_wal/archive_status). Then it forces
a WAL switch (pg_switch_wal after a restore point) and waits until that
segment has arrived in completed_wals.

--timeout bounds, on either side, all the check does with a slave directory
in S3 (every request and retry) and the wait for the switched segment: a
store that answers slowly, trickles or never answers makes its items FAIL
(naming the limit) when the time is up, never a check that hangs.

On the slave: the directory layout exists; the standby's restore_command
points at this CONFIG; the newest backup's WAL chain is complete; no stale
BACKUPLOCK; the standby is replaying (not paused).

The exit code is that of the first FAIL's kind (with no FAIL, the first
WARN's), from the table below.

--nagios prints one line for Nagios, Icinga or NRPE, with perfdata:
    WALMGR OK|WARNING|CRITICAL|UNKNOWN - ...
and exits with the Nagios codes (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
instead of the ones below.`,
    examples: [
      ["wal-ctl /etc/walmgr/master.ini check", "after setup: does a WAL switch reach the slave directory?"],
      ["wal-ctl /etc/walmgr/slave.ini check", "is the standby set up and replaying?"],
      [
        "command[check_walmgr]=/opt/walmgr-ts/bin/wal-ctl /etc/walmgr/master.ini check --nagios --timeout 30",
        "NRPE line (nrpe.cfg)",
      ],
    ],
    exit: [
      [0, "every item is OK (or SKIP, not applicable)"],
      [1, "the switched WAL segment did not reach completed_wals within --timeout"],
      [3, "configuration (CONFIG, archive settings); the first FAIL's kind counts (no FAIL: the first WARN's)"],
      [4, "a lock (a stale BACKUPLOCK)"],
      [6, "the transport (ssh, network, S3)"],
      [7, "the database (connection, archiver, replay)"],
      [9, "I/O (slave directory not writable, WAL chain broken)"],
    ],
  },
  backup: {
    synopsis: ["[--clear-stale-lock] [--archive-timeout SECONDS]"],
    description: `On the master: a non-exclusive base backup (pg_backup_start/pg_backup_stop
in one session) of master_data and its tablespaces into full_backup; it
ends once the WAL the backup needs is archived, and fails (exit 9, the set
not kept) when that takes longer than --archive-timeout SECONDS
(backup_archive_timeout, default 60). On the slave: the same, taken from the
running standby, with no load on the master.

completed_wals/BACKUPLOCK is held throughout; a second backup is refused
and names the holder. With keep_backups = N > 0 sets are rotated
(data.master, data.master.0, ...) and WAL no kept set and no live standby
needs is purged. The set appears only when complete, with a manifest
(size and sha256 of every file) for verify. Same as wal-backup CONFIG.`,
    examples: [
      [
        "30 2 * * * /opt/walmgr-ts/bin/wal-ctl -q /etc/walmgr/master.ini backup",
        "crontab line of the postgres user: a base backup every night",
      ],
      ["wal-ctl /etc/walmgr/slave.ini backup", "back up from the standby instead of the master"],
      ["wal-ctl /etc/walmgr/master.ini backup --clear-stale-lock", "after a backup was killed with kill -9"],
    ],
    exit: [
      [4, "another backup holds BACKUPLOCK (or a stale lock: rerun with --clear-stale-lock)"],
      [7, "the database refused pg_backup_start/pg_backup_stop"],
      [9, "the WAL the backup needs was not archived within the archive timeout (the set is not kept)"],
    ],
  },
  restore: {
    synopsis: [
      "[--timeout SECONDS] [--clear-stale-lock]",
      "\n{--target-time T | --target-lsn L | --target-xid X | --target-name N}\n[--target-action promote|pause|shutdown] [--target-exclusive]\n[--timeout SECONDS] [--clear-stale-lock]",
    ],
    arguments: [
      ["SET", "a backup set name (data.master, data.master.1, ...) or path; default: the newest, moved"],
      ["DST", "the data directory to restore into; default slave_data"],
    ],
    description: `On the slave: puts a backup set into DST (default slave_data): the newest
set is moved when no SET is named, a named SET is copied. The old data
directory is kept as DST.N (backup_datadir = yes) or removed; a server
running in DST is stopped with slave_stop_cmd first. pg_wal is linked to
slave_pg_xlog when set; saved config files go to slave_config_dir. Then it
writes the recovery settings (restore_command running wal-restore with
this CONFIG, standby.signal; recovery.conf before PostgreSQL 12), makes
sure the restored node does not archive, removes STOP, and starts the
server with slave_start_cmd (only when DST is slave_data).

With a --target-* option it is a point-in-time restore: recovery.signal
instead of standby.signal, recovery stops at the target and then does
--target-action.

While it finds and takes (moves, copies or fetches) the set it holds
completed_wals/BACKUPLOCK, as a backup does: a running backup makes it
refuse (exit 4, naming the backup) before anything changes, and no backup
starts meanwhile. A stale lock of a killed restore is cleared; a killed
backup's only with --clear-stale-lock.

An interrupted restore (error, kill -9, power loss) is finished by running
the same command again. On the master (EXPERIMENTAL, as in walmgr) SET and
DST are required and nothing is started.`,
    examples: [
      ["wal-ctl /etc/walmgr/slave.ini restore", "build the standby from the newest backup and start it"],
      [
        "wal-ctl /etc/walmgr/slave.ini restore data.master.1 /srv/pitr --target-time '2026-11-24 06:00:00+00'",
        "a copy of the database as it was at 06:00 UTC, beside the standby",
      ],
      [
        "wal-ctl /etc/walmgr/slave.ini restore data.master --target-name before_upgrade --target-action pause",
        "recover to a restore point and pause there for inspection",
      ],
    ],
    exit: [
      [1, "no backup set, or (a standby) the WAL its set needs from its start is not in completed_wals"],
      [2, "a bad --target-* value, or DST is neither missing, empty nor a data directory"],
      [
        4,
        "the server in DST did not stop within --timeout, another restore into DST runs, or a backup holds BACKUPLOCK",
      ],
    ],
  },
  listbackups: {
    synopsis: ["[--json]"],
    description: `Lists the backup sets in full_backup, newest first: NAME, START TIME,
LABEL, START WAL, SIZE. A set whose metadata cannot be read is listed as
DAMAGED, and leftovers of killed backups are named. Then the pending restores:
sets taken by a restore that has not finished, whose WAL is kept until it
does, with whether it runs and the command that finishes it.`,
    examples: [
      ["wal-ctl /etc/walmgr/slave.ini listbackups", "which sets can be restored"],
      ["wal-ctl /etc/walmgr/master.ini listbackups --json", "the same from the master, as JSON"],
    ],
    exit: [[9, "a set is DAMAGED"]],
  },
  expire: {
    synopsis: [""],
    description: `Retention of the block repository (backup_format = repo): keeps the
newest keep_backups sets (at least one) and, with keep_days, every set needed
to restore to any moment of the last keep_days days; drops the others, then
removes every pack no kept set references, then (keep_backups above 0) the WAL
no kept set, pending restore or live standby needs. Runs under BACKUPLOCK (never
beside a backup) and after every repo backup. Killed at any point, every kept
set stays restorable; the next run finishes the work. With -n it says what it
would remove and changes nothing.`,
    examples: [
      ["wal-ctl -n /etc/walmgr/master.ini expire", "what retention would remove now"],
      ["wal-ctl /etc/walmgr/master.ini expire", "apply it (a backup does this after each set)"],
    ],
    exit: [[4, "a backup (or another expire) holds BACKUPLOCK"]],
  },
  verify: {
    synopsis: ["[--json]"],
    arguments: [["SET", "one backup set (name or path); default: every set"]],
    description: `Checks each backup set's files against its manifest (size and sha256),
re-reads every archived WAL file against its checksum, and walks the WAL
chain of each timeline from each set's start to the newest segment. It
reports every gap, corrupt file and unexpected file, and for each set the
latest point it can be restored to. A WARNING names signs of two masters
writing at once (files of an older timeline written after a newer
timeline's .history appeared; the sync lock held by a live process of an
older timeline): a warning only, the exit status is unchanged. Works from
the master for an ssh or S3 slave directory too (the files are read where
they are). Shows progress on a terminal.`,
    examples: [
      ["wal-ctl /etc/walmgr/slave.ini verify", "check everything"],
      ["wal-ctl /etc/walmgr/master.ini verify data.master", "check the newest set and the WAL it needs"],
      [
        "0 4 * * 0 /opt/walmgr-ts/bin/wal-ctl -q /etc/walmgr/slave.ini verify",
        "crontab line: every Sunday; cron mails the output when it fails",
      ],
    ],
    exit: [
      [0, "everything checks"],
      [1, "there is no backup set (or no set of that name)"],
      [9, "a file is damaged or missing, the WAL chain has a gap, or a set cannot reach the newest WAL"],
    ],
  },
  xarchive: {
    synopsis: [""],
    arguments: [
      ["%p", "the file's path, relative to the data directory"],
      ["%f", "its name in the archive"],
    ],
    description: `walmgr.py's archive_command, kept so that an existing
archive_command = 'walmgr.py master.ini xarchive %p %f' has an equivalent.
Same as wal-archive CONFIG %p %f, which setup configures.`,
    examples: [
      [
        "archive_command = '/opt/walmgr-ts/bin/wal-ctl /etc/walmgr/master.ini xarchive %p %f'",
        "postgresql.conf line (setup writes the wal-archive form)",
      ],
    ],
    exit: [
      [0, "the file and its checksum are durable in completed_wals"],
      [8, "an archived file of this name holds other content (left untouched)"],
    ],
  },
  xrestore: {
    synopsis: [""],
    arguments: [
      ["%f", "the WAL file PostgreSQL asks for"],
      ["%p", "where to put it"],
      ["%r", "the standby's restart point: WAL before it may be purged"],
    ],
    description: `walmgr.py's restore_command, kept so that an existing
restore_command = 'walmgr.py slave.ini xrestore %f %p' has an equivalent.
Same as wal-restore CONFIG %f %p [%r], which restore configures.`,
    examples: [
      [
        "restore_command = '/opt/walmgr-ts/bin/wal-ctl /etc/walmgr/slave.ini xrestore %f %p %r'",
        "recovery setting (restore writes the wal-restore form)",
      ],
    ],
    exit: [
      [0, "the file is at %p, checked against its checksum"],
      [1, "not available (yet, or PAUSE): PostgreSQL retries"],
    ],
  },
  xpartialsync: {
    synopsis: [""],
    description: `walmgr.py's name for one partial-segment sync, kept for old scripts.
Same as sync.`,
    examples: [["wal-ctl /etc/walmgr/master.ini xpartialsync", "same as wal-ctl /etc/walmgr/master.ini sync"]],
    exit: [[4, "the sync daemon or another sync holds partial_wals/.walmgr-sync-lock"]],
  },
  xhelper: {
    config: "SLAVE_CONFIG",
    synopsis: [""],
    description: `With slave = host:/path the master starts one helper session per command:
ssh HOST 'wal-ctl SLAVE_CONFIG xhelper' (SLAVE_CONFIG is - when the master
has no slave_config; slave_wal_ctl names wal-ctl on that host). The helper
serves the master's requests on its stdin and stdout in a framed protocol
until the master closes it, each with the local storage on the slave host:
files are written under a temporary name, fsynced, renamed and their
folder fsynced, exactly as locally. Master and slave must run the same
walmgr-ts version: the session starts with a hello in which both ends say
their helper protocol, version and requests, and a master of another
build gets every request refused unrun (code 6, naming both). The
requests:`,
    examples: [
      [
        "ssh slavehost '/opt/walmgr-ts/bin/wal-ctl /etc/walmgr/slave.ini xhelper' </dev/null",
        "what the master runs; by hand it only shows that ssh and wal-ctl work on the slave host",
      ],
    ],
    exit: [[0, "the master closed the session"]],
  },
};

/** The pages, in the order the overview lists them (the record's order). */
export const COMMAND_DOCS = Object.fromEntries(
  (Object.keys(CTL_COMMANDS) as DocumentedCommand[]).map((name) => {
    const { run: _run, ...spec }: CommandSpec = CTL_COMMANDS[name];
    return [name, { ...spec, ...COMMAND_PAGES[name] }];
  }),
) as Record<DocumentedCommand, CommandDoc>;
