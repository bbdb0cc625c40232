/*
 * Man-page style help: one page per executable, one per wal-ctl command (rendered from the data
 * in command-docs.ts), and wal-ctl's overview. Built from plain data with no I/O: --help must be
 * instant and must work with no config file at all.
 */
import { UsageError } from "../errors";
import { HELPER_VERBS } from "../storage/ssh/verbs";
import {
  COMMAND_DOCS,
  GENERAL_OPTIONS,
  TOOL_OPTIONS,
  type CommandDoc,
  type DocumentedCommand,
  type Role,
} from "./command-docs";
import { isDocumentedCommand as isCommand } from "./commands";
import { closest } from "../suggest";

/** Lines of a page are at most this wide, as a terminal's 80 columns with no wrap. */
const WIDTH = 80;
const INDENT = "    ";
/** Where an option's or a command's text starts. */
const COLUMN = 28;

/** Words of `text` in lines of at most `width` characters (a longer word keeps a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

/**
 * A two-column list (options, commands, exit codes): the term, then its text wrapped beside it;
 * a term too long for its column gets a line of its own, as man pages do.
 */
function table(rows: readonly (readonly [string, string])[], column = COLUMN, lead = INDENT): string {
  const out: string[] = [];
  const pad = " ".repeat(column);
  for (const [term, text] of rows) {
    const body = wrap(text, WIDTH - column);
    const left = `${lead}${term}`;
    if (left.length + 2 > column) {
      out.push(left, ...body.map((l) => pad + l));
    } else {
      out.push(left.padEnd(column) + (body[0] ?? ""), ...body.slice(1).map((l) => pad + l));
    }
  }
  return out.join("\n");
}

/** Long-only flags line up after the short ones' "-d, ", as in getopt's usage texts. */
function optionRows(options: readonly (readonly [string, string])[]): [string, string][] {
  return options.map(([flag, doc]) => [flag.startsWith("--") ? `    ${flag}` : flag, doc]);
}

/**
 * DESCRIPTION text laid out for the page: lines that start with a space are kept as written
 * (settings, command lines), the others are paragraphs, reflowed to the page's width.
 */
function flow(text: string): string {
  const out: string[] = [];
  let para: string[] = [];
  const flush = (): void => {
    if (para.length > 0) out.push(...wrap(para.join(" "), WIDTH - INDENT.length));
    para = [];
  };
  for (const line of text.split("\n")) {
    if (line.trim() === "") {
      flush();
      out.push("");
    } else if (/^\s/.test(line)) {
      flush();
      out.push(line);
    } else {
      para.push(line);
    }
  }
  flush();
  return indent(out.join("\n"));
}

function indent(text: string): string {
  return text
    .split("\n")
    .map((l) => (l === "" ? "" : INDENT + l))
    .join("\n");
}

/** The one exit-code table (errors.ts), as every page ends with it. */
const EXIT_TABLE = `0 done   1 not available (no such WAL yet)   2 usage   3 config
4 lock held   6 transport (ssh/rsync/network)   7 database
8 archive conflict   9 I/O (disk full, permissions, corrupt file)
70 internal error`;

/** One man page, whatever it documents. */
interface Page {
  /** NAME's term: wal-archive, wal-ctl-check. */
  name: string;
  summary: string;
  synopsis: readonly string[];
  arguments?: readonly (readonly [string, string])[];
  description: string;
  /** Text after DESCRIPTION's own (the helper's requests). */
  descriptionExtra?: string;
  options: readonly (readonly [string, string])[];
  examples: readonly (readonly [string, string])[];
  exit?: readonly (readonly [number, string])[];
  seeAlso: string;
}

function exitSection(exit: Page["exit"]): string {
  if (!exit || exit.length === 0) return indent(EXIT_TABLE);
  const own = table(
    exit.map(([code, doc]) => [String(code), doc]),
    INDENT.length + 4,
  );
  return `${own}\n\n${INDENT}Otherwise, by the kind of failure:\n${indent(EXIT_TABLE)}`;
}

/** NAME's line: `    name - summary`, the summary wrapped under itself when it is long. */
function nameLine(name: string, summary: string): string {
  const lead = `${INDENT}${name} - `;
  return wrap(summary, WIDTH - lead.length)
    .map((l, i) => (i === 0 ? lead : " ".repeat(lead.length)) + l)
    .join("\n");
}

function renderPage(p: Page): string {
  const sections: [string, string][] = [
    ["NAME", nameLine(p.name, p.summary)],
    // A synopsis line continued on the next one is indented further, as man pages do.
    ["SYNOPSIS", p.synopsis.map((l) => INDENT + l.split("\n").join(`\n${INDENT}${INDENT}`)).join("\n")],
  ];
  if (p.arguments && p.arguments.length > 0) sections.push(["ARGUMENTS", table(p.arguments)]);
  sections.push(["DESCRIPTION", flow(p.description) + (p.descriptionExtra ? `\n${p.descriptionExtra}` : "")]);
  sections.push([
    "OPTIONS",
    p.options.length > 0 ? table(optionRows(p.options)) : `${INDENT}none of its own; the general options below`,
  ]);
  sections.push(["GENERAL OPTIONS", table(optionRows(GENERAL_OPTIONS))]);
  sections.push([
    "EXAMPLES",
    p.examples
      .map(
        ([line, doc]) =>
          `${INDENT}${line}\n${wrap(doc, WIDTH - 8)
            .map((l) => `${INDENT}${INDENT}${l}`)
            .join("\n")}`,
      )
      .join("\n\n"),
  ]);
  sections.push(["EXIT STATUS", exitSection(p.exit)]);
  sections.push(["SEE ALSO", indent(wrap(p.seeAlso, WIDTH - INDENT.length).join("\n"))]);
  return `${sections.map(([head, body]) => `${head}\n${body}`).join("\n\n")}\n`;
}

/** The helper's requests, from the one list (storage/ssh/verbs.ts). */
const HELPER_VERBS_HELP = table(
  Object.entries(HELPER_VERBS).map(([v, spec]) => [
    [v, ...spec.args.map((a) => a.toUpperCase())].join(" "),
    `${spec.doc}${spec.body === "in" ? " (body in)" : spec.body === "out" ? " (body out)" : ""}`,
  ]),
  36,
  INDENT + INDENT,
);

/** True for a name `wal-ctl help NAME` has a page for. */
export const isDocumentedCommand = (name: string): name is DocumentedCommand => isCommand(name);

/** `wal-ctl CONFIG restore [SET [DST]]`: the command line up to its options. */
function commandLine(name: DocumentedCommand, doc: CommandDoc): string {
  return `wal-ctl [OPTIONS] ${doc.config ?? "CONFIG"} ${name} ${doc.args}`.trimEnd();
}

function roleText(roles: readonly Role[]): string {
  return roles.length > 1
    ? "Runs on the master and on the slave: CONFIG's section ([wal-master] or [wal-slave]) says which."
    : roles[0] === "master"
      ? "Runs on the master: CONFIG has [wal-master]."
      : "Runs on the slave: CONFIG has [wal-slave].";
}

/** The man page of one wal-ctl command (`wal-ctl help NAME`). */
export function commandPage(name: DocumentedCommand): string {
  const doc = COMMAND_DOCS[name];
  return renderPage({
    name: `wal-ctl-${name}`,
    summary: doc.summary,
    synopsis: doc.synopsis.map((opts) =>
      `${commandLine(name, doc)}${opts.startsWith("\n") ? "" : " "}${opts}`.trimEnd(),
    ),
    ...(doc.arguments ? { arguments: doc.arguments } : {}),
    // A command given another CONFIG (xhelper's SLAVE_CONFIG, maybe -) says where it runs itself.
    description: doc.config ? doc.description : `${roleText(doc.roles)}\n\n${doc.description}`,
    ...(name === "xhelper" ? { descriptionExtra: HELPER_VERBS_HELP } : {}),
    options: doc.options,
    examples: doc.examples,
    ...(doc.exit ? { exit: doc.exit } : {}),
    seeAlso: "wal-ctl --help (every command), wal-ctl help COMMAND, wal-archive, wal-restore, wal-sync, wal-backup",
  });
}

/** The overview's list of commands: each with its arguments and summary. */
function commandList(filter: (doc: CommandDoc) => boolean): string {
  return table(
    (Object.entries(COMMAND_DOCS) as [DocumentedCommand, CommandDoc][])
      .filter(([, doc]) => filter(doc))
      .map(([name, doc]) => [`${name} ${doc.args}`.trimEnd(), doc.summary]),
  );
}

/** Every option some command takes, and which commands take it: built from the pages. */
function optionIndex(): string {
  const byFlag = new Map<string, string[]>();
  for (const [name, doc] of Object.entries(COMMAND_DOCS)) {
    for (const [flag] of doc.options) byFlag.set(flag, [...(byFlag.get(flag) ?? []), name]);
  }
  return table(optionRows([...byFlag].map(([flag, names]) => [flag, names.join(", ")])));
}

function ctlOverview(): string {
  const open = (doc: CommandDoc): boolean => doc.internal !== true;
  const only = (role: Role) => (doc: CommandDoc) => open(doc) && doc.roles.length === 1 && doc.roles[0] === role;
  return `NAME
    wal-ctl - manage WAL shipping, standby replay and restores (walmgr.py)

SYNOPSIS
    wal-ctl [OPTIONS] CONFIG COMMAND [ARGS]
    wal-ctl help [COMMAND]
    wal-ctl [CONFIG] COMMAND --help
    wal-ctl completion

DESCRIPTION
    Runs one command with CONFIG, an ini file in walmgr's format: a [wal-master]
    section makes it a master command, [wal-slave] a slave command. walmgr.py's
    command names work unchanged: walmgr.py master.ini backup becomes
    wal-ctl master.ini backup.

    Each command has its own page: wal-ctl help COMMAND, or
    wal-ctl COMMAND --help (CONFIG may be given; it is not read). A config file
    named help is given as ./help.

    Each command takes only its own options (listed below and on its page);
    an unknown option or command is refused (exit 2) with the nearest right
    one. wal-ctl completion prints a bash completion script (zsh when SHELL is
    zsh): wal-ctl completion >> ~/.bashrc (wal-ctl must be in PATH).

MASTER COMMANDS
${commandList(only("master"))}

SLAVE COMMANDS
${commandList(only("slave"))}

MASTER OR SLAVE COMMANDS
${commandList((doc) => open(doc) && doc.roles.length > 1)}

INTERNAL COMMANDS (as walmgr.py named them; not for use by hand)
${commandList((doc) => !open(doc))}
        The helper's requests, served on its stdin and stdout:
${HELPER_VERBS_HELP}

OPTIONS
    Each command's own (see wal-ctl help COMMAND), and which commands take it:
${optionIndex()}

GENERAL OPTIONS
${table(optionRows(GENERAL_OPTIONS))}

EXAMPLES
    wal-ctl /etc/walmgr/master.ini setup
        start archiving into the slave directory
    wal-ctl /etc/walmgr/master.ini check
        does a forced WAL switch reach the slave directory?
    wal-ctl /etc/walmgr/slave.ini restore
        build the standby from the newest backup and start it
    wal-ctl /etc/walmgr/slave.ini boot
        fail over: replay everything shipped, then promote
    wal-ctl help restore
        the restore command's page

EXIT STATUS
    Each command's page says what its codes mean. By kind of failure:
${indent(EXIT_TABLE)}

SEE ALSO
    wal-archive, wal-restore, wal-sync, wal-backup (each with --help); README.md
`;
}

/**
 * wal-ctl's help for a command line, or undefined when it asks for none. Asked by
 * `wal-ctl help [COMMAND]`, `wal-ctl CONFIG help [COMMAND]`, or --help anywhere: then the
 * command is the first positional argument when it names one (`wal-ctl COMMAND --help`), else
 * the second (`wal-ctl CONFIG COMMAND --help`). CONFIG is never read. An unknown command is a
 * usage error listing the commands, so a typo is not answered with some other page.
 */
export function ctlHelp(positional: readonly string[], helpFlag: boolean): string | undefined {
  let topic: string | undefined;
  const verbAt = positional[0] === "help" ? 0 : positional[1] === "help" ? 1 : -1;
  if (verbAt >= 0) {
    const rest = positional.slice(verbAt + 1);
    if (rest.length > 1) {
      throw new UsageError(
        `help takes one COMMAND, got ${rest.map((a) => JSON.stringify(a)).join(" ")}`,
        "usage: wal-ctl help [COMMAND]",
      );
    }
    topic = rest[0];
  } else if (helpFlag) {
    const [first, second] = positional;
    topic = first !== undefined && isDocumentedCommand(first) ? first : second;
  } else {
    return undefined;
  }
  if (topic === undefined) return HELP.walCtl;
  if (!isDocumentedCommand(topic)) {
    const near = closest(topic, Object.keys(COMMAND_DOCS));
    throw new UsageError(
      `unknown command ${JSON.stringify(topic)}`,
      `${near !== undefined ? `did you mean ${near}? ` : ""}commands: ${Object.keys(COMMAND_DOCS).join(", ")}; wal-ctl --help describes them`,
    );
  }
  return commandPage(topic);
}

/** The pages of the executables, keyed as entry.ts's Program.help names them. */
export const HELP = {
  walArchive: renderPage({
    name: "wal-archive",
    summary: "archive one WAL file to the slave directory (archive_command)",
    synopsis: ["wal-archive [OPTIONS] CONFIG %p %f"],
    arguments: [
      ["CONFIG", "the master's config file ([wal-master])"],
      ["%p", "the file's path, relative to the data directory (PostgreSQL's %p)"],
      ["%f", "its file name (PostgreSQL's %f)"],
    ],
    description: `Run by PostgreSQL on the master as its archive_command (wal-ctl setup sets it):
    archive_command = '/path/to/bin/wal-archive /path/to/master.ini %p %f'
Copies %p (relative to the data directory) into completed_wals as %f, with a
sha256 checksum beside it (.%f.sha256). Exits 0 only once both are durable
(temp file, fsync, rename, directory fsync). Archiving identical content again
succeeds; other content under an archived name is refused with exit 8 and the
archived copy is left untouched. Needs no database connection.
In the same run it also archives ahead up to archive_batch further segments
PostgreSQL marked ready, archive_parallel at a time, and records each one that
is durable (pg_wal/.walmgr-archived); PostgreSQL's own call for a recorded
segment is then answered by the sh front without starting Node, and PostgreSQL
marks every segment done itself (pg_stat_archiver stays exact).
With slave = host:/path the file travels over ssh (BatchMode, ConnectTimeout =
ssh_timeout) to the slave's wal-ctl, which stores it the same way there; an
unreachable host exits 6. With slave = s3://… the whole call is bounded by
s3_timeout × (s3_retries + 1) seconds; past it, exit 6 (PostgreSQL retries).
With also_archive_to it exits 0 only once every repository holds the file.`,
    options: TOOL_OPTIONS.walArchive,
    examples: [
      [
        "archive_command = '/opt/walmgr-ts/bin/wal-archive /etc/walmgr/master.ini %p %f'",
        "postgresql.conf on the master (with archive_mode = on, wal_level = replica)",
      ],
      [
        "wal-ctl /etc/walmgr/master.ini check",
        "check archive_command end to end: a forced WAL switch must reach the slave directory",
      ],
    ],
    exit: [
      [0, "the file and its checksum are durable in the slave directory"],
      [6, "the slave host or object store cannot be reached (PostgreSQL retries)"],
      [8, "an archived file of this name holds other content (left untouched)"],
    ],
    seeAlso: "wal-ctl help setup, wal-ctl help check, wal-restore",
  }),
  walRestore: renderPage({
    name: "wal-restore",
    summary: "serve one WAL file to a standby (restore_command)",
    synopsis: ["wal-restore [OPTIONS] CONFIG %f %p [%r]"],
    arguments: [
      ["CONFIG", "the slave's config file ([wal-slave])"],
      ["%f", "the WAL file PostgreSQL asks for"],
      ["%p", "where to put it"],
      ["%r", "the standby's restart point: recorded, and WAL before it may be purged"],
    ],
    description: `Run by PostgreSQL on the slave as its restore_command (wal-ctl restore sets it):
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
The next restore_prefetch segments are fetched ahead into
pg_wal/.walmgr-prefetch, verified. Never waits: PostgreSQL does the retrying.
With slave = host:/path an unreachable host answers 1 within restore_timeout
seconds; with slave = s3://… restore_timeout bounds the whole call, each
request and retry included, so a store that trickles or never answers
answers 1 within it too.`,
    options: TOOL_OPTIONS.walRestore,
    examples: [
      [
        "restore_command = '/opt/walmgr-ts/bin/wal-restore /etc/walmgr/slave.ini %f %p %r'",
        "the standby's postgresql.auto.conf (with standby.signal)",
      ],
      [
        "restore_command = '/opt/walmgr-ts/bin/wal-restore /etc/walmgr/slave.ini %f %p'",
        "a point-in-time restore: without %r nothing is purged",
      ],
      [
        "wal-restore /etc/walmgr/slave.ini 000000010000000000000042 /tmp/000000010000000000000042",
        "fetch one segment by hand, checked against its checksum",
      ],
    ],
    exit: [
      [0, "the file is at %p, complete and checked"],
      [1, "not available (not archived yet, PAUSE, or the slave host unreachable): PostgreSQL retries"],
      [9, "the archived file fails its checksum (never served)"],
    ],
    seeAlso: "wal-ctl help restore, wal-ctl help pause, wal-ctl help boot, wal-archive",
  }),
  walSync: renderPage({
    name: "wal-sync",
    summary: "ship the in-progress WAL segment to the slave",
    synopsis: ["wal-sync [OPTIONS] CONFIG", "wal-sync [OPTIONS] CONFIG --daemon [-d]"],
    description: `Run on the master. With use_xlog_functions = 1 (record mode) it asks the master
for its current WAL position and ships only the bytes written since the last
sync (the position is kept in partial_wals/.walmgr-sync-state). With
use_xlog_functions = 0 (file mode) it copies the newest segment file of
pg_wal. Partial segments are stored full-size (zero-padded), durably. When the
master has moved to a new segment, the rest of the old one is shipped first.
A partial segment is removed once its complete segment is archived. A
one-shot sync beside a running daemon is refused (exit 4): it is not needed.

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
partial_wals/.walmgr-daemon-state: see wal-ctl CONFIG status.`,
    options: TOOL_OPTIONS.walSync,
    examples: [
      ["wal-sync /etc/walmgr/master.ini", "ship the in-progress segment once"],
      ["wal-sync /etc/walmgr/master.ini -d", "start the daemon in the background"],
      [
        "ExecStart=/opt/walmgr-ts/bin/wal-sync /etc/walmgr/master.ini --daemon",
        "systemd unit (Type=simple, User=postgres, ExecReload=/bin/kill -HUP $MAINPID)",
      ],
      [
        "* * * * * /opt/walmgr-ts/bin/wal-sync -q /etc/walmgr/master.ini",
        "crontab line of the postgres user: ship every minute without a daemon",
      ],
    ],
    exit: [
      [0, "shipped (or nothing new); the daemon: stopped by a signal or wal-ctl CONFIG stop"],
      [4, "a daemon runs already (or, one-shot, holds the sync lock)"],
    ],
    seeAlso: "wal-ctl help syncdaemon, wal-ctl help status, wal-ctl help stop",
  }),
  walBackup: renderPage({
    name: "wal-backup",
    summary: "take a base backup into the slave directory",
    synopsis: ["wal-backup [OPTIONS] CONFIG"],
    description: `On the master (CONFIG has [wal-master]): a non-exclusive base backup
(pg_backup_start/pg_backup_stop in one session) of master_data into
full_backup. On the slave (CONFIG has [wal-slave]): the same, taken from the
running standby in slave_data, with no load on the master (connection from
slave_db, or from the standby's postmaster.pid). A master's backup ends once
the WAL it needs is archived; when that takes longer than --archive-timeout
SECONDS (backup_archive_timeout, default 60: archive_command keeps failing)
it fails with exit 9, naming what pg_stat_archiver reports, and the set is
not kept.

completed_wals/BACKUPLOCK is held throughout. With keep_backups = N > 0 the
sets are rotated before the copy starts (data.master -> data.master.0 -> ...;
at most N remain, the slave's archive_command runs with the path of a set
before that set is removed, and its failure stops the backup), and after the
backup WAL that no kept set and no live standby needs is purged (.history
kept; a standby whose record is older than standby_expire is warned about),
in completed_wals and, with the same cut-off, in each also_archive_to
repository (keeping what standbys recorded there still need; one that cannot
be reached is skipped with a warning).
With keep_backups = 0 the new set replaces the old one once it is complete.
The set is built under a hidden temporary name and appears only when
complete; it holds backup_label, tablespace_map, .walmgr-backup.json (LSNs,
WAL files, timeline, times, version, system identifier, size, file count)
and .walmgr-manifest.json (size and sha256 of every file; see wal-ctl verify).
The master's postgresql.conf, pg_hba.conf and pg_ident.conf go to config_backup.`,
    options: TOOL_OPTIONS.walBackup,
    examples: [
      [
        "30 2 * * * /opt/walmgr-ts/bin/wal-backup -q /etc/walmgr/master.ini",
        "crontab line of the postgres user: a base backup every night at 02:30",
      ],
      ["wal-backup /etc/walmgr/slave.ini", "take the backup from the standby instead"],
      ["wal-backup /etc/walmgr/master.ini --clear-stale-lock", "after a backup was killed with kill -9"],
    ],
    exit: [
      [0, "the new set is complete and in place"],
      [4, "another backup holds BACKUPLOCK (it is named; a stale one: --clear-stale-lock)"],
      [7, "the database refused the backup"],
      [9, "the WAL the backup needs was not archived within the archive timeout (the set is not kept)"],
    ],
    seeAlso: "wal-ctl help backup, wal-ctl help listbackups, wal-ctl help verify, wal-ctl help restore",
  }),
  walCtl: ctlOverview(),
};
