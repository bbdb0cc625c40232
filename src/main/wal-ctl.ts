import { checkCtlArgs, type CtlCommand } from "../cli/args";
import { main } from "../cli/entry";
import { parseCtlArgs } from "../cli/parse";
import type { Context } from "../context";
import { UsageError, type ExitCodeValue } from "../errors";
import { HELPER_COMMAND } from "../storage/helper-verbs";

type Command = (ctx: Context) => Promise<ExitCodeValue | void>;

/*
 * Every walmgr.py command name maps here. Each loads its module only when chosen, so a simple
 * command does not pay for pg or the backup code.
 */
const COMMANDS: Record<CtlCommand, Command> = {
  setup: async (ctx) => (await import("../command/setup.js")).setup(ctx),
  stop: async (ctx) => (await import("../command/setup.js")).stopArchiving(ctx),
  pause: async (ctx) => (await import("../command/replay.js")).pause(ctx),
  continue: async (ctx) => (await import("../command/replay.js")).resume(ctx),
  boot: async (ctx) => (await import("../command/replay.js")).boot(ctx),
  sync: async (ctx) => (await import("../command/daemon.js")).syncCommand(ctx),
  syncdaemon: async (ctx) => (await import("../command/daemon.js")).syncDaemon(ctx),
  periodic: async (ctx) => (await import("../command/periodic.js")).periodic(ctx),
  status: async (ctx) => (await import("../command/status.js")).status(ctx),
  check: async (ctx) => (await import("../command/check/run.js")).check(ctx),
  backup: async (ctx) => (await import("../command/backup/run.js")).backup(ctx),
  restore: async (ctx) => (await import("../command/restore.js")).restore(ctx),
  listbackups: async (ctx) => (await import("../command/backup/list.js")).listBackups(ctx),
  verify: async (ctx) => (await import("../command/backup/verify.js")).verify(ctx),
  xarchive: async (ctx) => {
    const [src, name] = ctx.args;
    if (src === undefined || name === undefined) throw new UsageError("xarchive needs %p %f");
    return (await import("../command/archive/push.js")).archiveCall(ctx, src, name);
  },
  xrestore: async (ctx) => {
    const [name, dest, keep] = ctx.args;
    if (name === undefined || dest === undefined) throw new UsageError("xrestore needs %f %p [%r]");
    return (await import("../command/archive/get.js")).restoreGet(ctx, name, dest, keep);
  },
  xpartialsync: async (ctx) => (await import("../command/daemon.js")).syncCommand(ctx),
};

main({
  name: "wal-ctl",
  help: "walCtl",
  // `wal-ctl help [COMMAND]`, `wal-ctl [CONFIG] COMMAND --help`: that command's page. Only such a
  // command line loads the pages; `help` stands where CONFIG or COMMAND would.
  helpPage: async ({ positional, help }) =>
    help || positional[0] === "help" || positional[1] === "help"
      ? (await import("../cli/help.js")).ctlHelp(positional, help)
      : undefined,
  positionals: (rest) => {
    // bin/wal-ctl hands `wal-ctl SLAVE_CONFIG xhelper` to the helper bundle before this runs; a
    // line that gets here has options (or comes by another way) and would not be served.
    if (rest[0] === HELPER_COMMAND) {
      throw new UsageError(
        `${HELPER_COMMAND} takes no options: the master runs it as \`wal-ctl SLAVE_CONFIG ${HELPER_COMMAND}\``,
        `run bin/wal-ctl SLAVE_CONFIG ${HELPER_COMMAND}, or see wal-ctl help ${HELPER_COMMAND}`,
      );
    }
    checkCtlArgs(rest);
  },
  // yargs: one command module per command, with the options its page lists (cli/parse.ts).
  parse: parseCtlArgs,
  run: async (ctx) => {
    const [name, ...rest] = ctx.args;
    const cmd = Object.hasOwn(COMMANDS, name ?? "") ? COMMANDS[name as CtlCommand] : undefined;
    if (!cmd) {
      throw new UsageError(`unknown command ${JSON.stringify(name)}`, `commands: ${Object.keys(COMMANDS).join(", ")}`);
    }
    ctx.args = rest;
    return cmd(ctx);
  },
});
