/**
 * wal-ctl's commands, each declared once: the side it runs on, its positional arguments, its own
 * options, its one-line summary and the code that runs it. Everything else reads this record:
 * dispatch (main/wal-ctl.ts), the argument count check before CONFIG is read (checkCtlArgs below),
 * the parser's per-command options (cli/parse.ts), the man pages and the overview (cli/help.ts,
 * with the long texts of cli/command-docs.ts) and the README's list of commands (docs/readme.ts,
 * checked by test/unit/readme.test.ts). A new command is one entry here and one page there.
 *
 * `run` loads the command's module only when that command is chosen, so a simple command does not
 * pay for pg or the backup code. wal-archive and wal-restore never load this file (cli/args.ts);
 * the help bundle keeps the command modules external (package.json's build).
 */
import type { Context } from "../context";
import { UsageError, type ExitCodeValue } from "../errors";
import type { HELPER_COMMAND } from "../storage/ssh/verbs";
import { checkPositionals } from "./args";

/** Which side a command runs on; a command for both does different work on each. */
export type Role = "master" | "slave";

/** An option as typed (`-d, --detach`, `--timeout SECONDS`) and what it does. */
export type OptionDoc = readonly [flag: string, doc: string];

/** What running a command comes to: an exit code, or nothing for 0. */
export type CommandRun = (ctx: Context) => Promise<ExitCodeValue | void>;

/** One wal-ctl command. */
export interface CommandSpec {
  /** Roles the command runs in (from the CONFIG's section: [wal-master] or [wal-slave]). */
  readonly roles: readonly Role[];
  /** walmgr.py's internal x-commands and the ssh helper: listed apart, not for use by hand. */
  readonly internal?: boolean;
  /**
   * The positional arguments after the command name, as the synopsis shows them: `[SET [DST]]`,
   * `%f %p [%r]`. Also how many it takes: a bracketed word is optional (ctlArity).
   */
  readonly args: string;
  /** One line: the man page's NAME, the overview's entry and the README's list. */
  readonly summary: string;
  /**
   * The options this command takes beyond the general ones: [flags as typed, what it does]. The
   * parser (cli/parse.ts) accepts exactly these: a flag with a second word (`--timeout SECONDS`)
   * takes a value, one without is a switch.
   */
  readonly options: readonly OptionDoc[];
  /**
   * Loads the command's module and runs it, with ctx.args the arguments after the command name.
   * Absent for xhelper only: bin/wal-ctl hands `wal-ctl SLAVE_CONFIG xhelper` to the helper bundle.
   */
  readonly run?: CommandRun;
}

/** The commands, in the order the overview and the README list them. */
export const CTL_COMMANDS = {
  setup: {
    roles: ["master", "slave"],
    args: "",
    summary: "turn archiving on and create the slave directory layout",
    options: [],
    run: async (ctx) => (await import("../command/setup/run.js")).setup(ctx),
  },
  stop: {
    roles: ["master"],
    args: "",
    summary: "turn archiving off and stop the sync daemon",
    options: [],
    run: async (ctx) => (await import("../command/setup/stop.js")).stopArchiving(ctx),
  },
  pause: {
    roles: ["slave"],
    args: "",
    summary: "hold back new WAL from the standby (creates PAUSE)",
    options: [],
    run: async (ctx) => (await import("../command/replay/run.js")).pause(ctx),
  },
  continue: {
    roles: ["slave"],
    args: "",
    summary: "let WAL reach the standby again (removes PAUSE)",
    options: [],
    run: async (ctx) => (await import("../command/replay/run.js")).resume(ctx),
  },
  boot: {
    roles: ["slave"],
    args: "",
    summary: "replay all shipped WAL, then promote the standby",
    options: [["--timeout SECONDS", "how long to wait for the standby to replay all shipped WAL (default 600)"]],
    run: async (ctx) => (await import("../command/replay/run.js")).boot(ctx),
  },
  sync: {
    roles: ["master"],
    args: "",
    summary: "ship the in-progress WAL segment once (see wal-sync)",
    options: [],
    run: async (ctx) => (await import("../command/sync/daemon.js")).syncCommand(ctx),
  },
  syncdaemon: {
    roles: ["master"],
    args: "",
    summary: "ship the in-progress segment every loop_delay seconds",
    options: [["-d, --detach", "run in the background (needs pidfile); returns once the pidfile is written"]],
    run: async (ctx) => (await import("../command/sync/daemon.js")).syncDaemon(ctx),
  },
  periodic: {
    roles: ["master"],
    args: "",
    summary: "run periodic_command if command_interval has passed",
    options: [["--force", "run periodic_command now, even when it is not due"]],
    run: async (ctx) => (await import("../command/sync/periodic.js")).periodic(ctx),
  },
  status: {
    roles: ["master", "slave"],
    args: "",
    summary: "shipping, replay, backups and standbys at a glance",
    options: [
      ["--json", "one JSON object (schema: schemas/status.schema.json)"],
      ["--prometheus", "Prometheus text exposition format (node_exporter textfile collector)"],
    ],
    run: async (ctx) => (await import("../command/status/run.js")).status(ctx),
  },
  check: {
    roles: ["master", "slave"],
    args: "",
    summary: "check that WAL shipping works end to end, item by item",
    options: [
      [
        "--timeout SECONDS",
        "time for the check's S3 requests and the wait for the switched segment, together (default 60)",
      ],
      ["--json", "{ok, role, checks: [{name, status, detail, fix?}]} (schema: schemas/check.schema.json)"],
      ["--nagios", "one Nagios plugin line with perfdata; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"],
    ],
    run: async (ctx) => (await import("../command/check/run.js")).check(ctx),
  },
  backup: {
    roles: ["master", "slave"],
    args: "",
    summary: "take a base backup into full_backup (see wal-backup)",
    options: [
      ["--clear-stale-lock", "clear a BACKUPLOCK whose holder is provably not a running backup"],
      [
        "--archive-timeout SECONDS",
        "how long to wait for the WAL the backup needs to be archived (default backup_archive_timeout, 60)",
      ],
    ],
    run: async (ctx) => (await import("../command/backup/run.js")).backup(ctx),
  },
  restore: {
    roles: ["master", "slave"],
    args: "[SET [DST]]",
    summary: "restore a backup set: a standby, or a point in time",
    options: [
      ["--timeout SECONDS", "how long to wait for the server in DST to stop after slave_stop_cmd (default 60)"],
      ["--clear-stale-lock", "clear a BACKUPLOCK whose holder is provably not a running backup"],
      [
        "--target-time T",
        "recover up to a time: YYYY-MM-DD[ HH:MM[:SS]] with an optional zone (Z, +02, Europe/Berlin)",
      ],
      ["--target-lsn L", "recover up to a WAL location X/X"],
      ["--target-xid X", "recover up to a transaction id"],
      ["--target-name N", "recover up to a restore point made with pg_create_restore_point"],
      ["--target-action A", "at the target: promote (default), pause or shutdown"],
      ["--target-exclusive", "stop just before the target instead of just after it"],
    ],
    run: async (ctx) => (await import("../command/restore/run.js")).restore(ctx),
  },
  listbackups: {
    roles: ["master", "slave"],
    args: "",
    summary: "list the backup sets in the slave directory",
    options: [["--json", "an array of sets (pending restores last, with pendingRestore), for scripts"]],
    run: async (ctx) => (await import("../command/backup/list.js")).listBackups(ctx),
  },
  expire: {
    roles: ["master", "slave"],
    args: "",
    summary: "apply keep_backups and keep_days to the block repository (backup_format = repo)",
    options: [],
    run: async (ctx) => {
      await (await import("../command/backup/expire.js")).expireSets(ctx);
    },
  },
  verify: {
    roles: ["master", "slave"],
    args: "[SET]",
    summary: "check backup sets and archived WAL against their checksums",
    options: [["--json", "the findings as one JSON object (schema: schemas/verify.schema.json)"]],
    run: async (ctx) => (await import("../command/backup/verify.js")).verify(ctx),
  },
  xarchive: {
    roles: ["master"],
    internal: true,
    args: "%p %f",
    summary: "archive one WAL file (same as wal-archive)",
    options: [],
    run: async (ctx) => {
      const [src, name] = ctx.args;
      if (src === undefined || name === undefined) throw new UsageError("xarchive needs %p %f");
      return (await import("../command/archive/push.js")).archiveCall(ctx, src, name);
    },
  },
  xrestore: {
    roles: ["slave"],
    internal: true,
    args: "%f %p [%r]",
    summary: "serve one WAL file to the standby (same as wal-restore)",
    options: [],
    run: async (ctx) => {
      const [name, dest, keep] = ctx.args;
      if (name === undefined || dest === undefined) throw new UsageError("xrestore needs %f %p [%r]");
      return (await import("../command/archive/get.js")).restoreGet(ctx, name, dest, keep);
    },
  },
  xpartialsync: {
    roles: ["master"],
    internal: true,
    args: "",
    summary: "walmgr.py's partial sync; same as sync",
    options: [],
    run: async (ctx) => (await import("../command/sync/daemon.js")).syncCommand(ctx),
  },
  xhelper: {
    roles: ["slave"],
    internal: true,
    args: "",
    summary: "the slave side of the ssh transport (run by the master)",
    options: [],
  },
} as const satisfies Record<string, CommandSpec> & Record<typeof HELPER_COMMAND, CommandSpec>;

/** Every command wal-ctl documents: those it runs, and the ssh helper's `xhelper`. */
export type DocumentedCommand = keyof typeof CTL_COMMANDS;

/** A command wal-ctl itself runs (every one but xhelper, which has no `run`). */
export type CtlCommand = {
  [K in DocumentedCommand]: (typeof CTL_COMMANDS)[K] extends { run: CommandRun } ? K : never;
}[DocumentedCommand];

/** The record of `name`, typed loosely for code that walks every command. */
export function commandSpec(name: DocumentedCommand): CommandSpec {
  return CTL_COMMANDS[name];
}

/** True for one of the commands (never for an inherited name such as `constructor`). */
export function isDocumentedCommand(name: string | undefined): name is DocumentedCommand {
  return name !== undefined && Object.hasOwn(CTL_COMMANDS, name);
}

/** True for a command wal-ctl runs itself. */
export function isCtlCommand(name: string | undefined): name is CtlCommand {
  return isDocumentedCommand(name) && commandSpec(name).run !== undefined;
}

/** How many positional arguments `args` (`[SET [DST]]`, `%f %p [%r]`) stands for: words, and those outside brackets. */
export function ctlArity(args: string): { min: number; max: number } {
  const words = args.split(/\s+/).filter((w) => w !== "");
  const firstOptional = words.findIndex((w) => w.startsWith("["));
  return { min: firstOptional === -1 ? words.length : firstOptional, max: words.length };
}

/** Each command wal-ctl runs, with how many positional arguments it takes after its name. */
export const CTL_COMMAND_ARGS = Object.fromEntries(
  (Object.keys(CTL_COMMANDS) as DocumentedCommand[])
    .filter(isCtlCommand)
    .map((name) => [name, { ...ctlArity(CTL_COMMANDS[name].args), args: CTL_COMMANDS[name].args }]),
) as Record<CtlCommand, { min: number; max: number; args: string }>;

/**
 * Checks `wal-ctl CONFIG COMMAND ARGS…` before anything is loaded: `rest` is what follows
 * CONFIG. An unknown command or a wrong number of arguments is a usage error.
 */
export function checkCtlArgs(rest: string[]): void {
  const [name, ...args] = rest;
  if (name === undefined)
    throw new UsageError(
      "wal-ctl: missing COMMAND",
      "usage: wal-ctl CONFIG COMMAND [ARGS]; wal-ctl --help lists the commands",
    );
  if (!isCtlCommand(name)) {
    throw new UsageError(
      `wal-ctl: unknown command ${JSON.stringify(name)}`,
      `commands: ${Object.keys(CTL_COMMAND_ARGS).join(", ")}`,
    );
  }
  const spec = CTL_COMMAND_ARGS[name];
  checkPositionals(args, {
    command: `wal-ctl ${name}`,
    min: spec.min,
    max: spec.max,
    usage: `wal-ctl CONFIG ${name} ${spec.args}`.trimEnd(),
  });
}
