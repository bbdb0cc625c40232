import { restoreGet } from "../command/archive/get";
import { main } from "../cli/entry";

main({
  name: "wal-restore",
  help: "walRestore",
  minArgs: 2,
  run: async (ctx) => {
    const [name, dest, keepFrom] = ctx.args;
    return restoreGet(ctx, name ?? "", dest ?? "", keepFrom);
  },
});
