import { checkCtlArgs, CTL_COMMAND_ARGS, CTL_COMMANDS, isCtlCommand } from "../cli/commands";
import { main } from "../cli/entry";
import { parseCtlArgs } from "../cli/parse";
import { UsageError } from "../errors";
import { HELPER_COMMAND } from "../storage/ssh/verbs";

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
    // Every command is declared once, in cli/commands.ts; its run loads its module on the way.
    if (!isCtlCommand(name)) {
      throw new UsageError(
        `unknown command ${JSON.stringify(name)}`,
        `commands: ${Object.keys(CTL_COMMAND_ARGS).join(", ")}`,
      );
    }
    ctx.args = rest;
    return CTL_COMMANDS[name].run(ctx);
  },
});
