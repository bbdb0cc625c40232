import { restoreGet } from "../command/archive/get";
import { main } from "../cli/entry";
import { HELP } from "../cli/help";

main({
  name: "wal-restore",
  help: HELP.walRestore,
  minArgs: 2,
  run: async (ctx) => {
    const [name, dest, keepFrom] = ctx.args;
    return restoreGet(ctx, name ?? "", dest ?? "", keepFrom);
  },
});
