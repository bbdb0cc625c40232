import { restoreGet } from "../command/archive/get";
import { main } from "../cli/entry";

main({
  name: "wal-restore",
  help: "walRestore",
  positionals: { min: 2, max: 3, usage: "wal-restore CONFIG %f %p [%r]" },
  run: async (ctx) => {
    const [name, dest, keepFrom] = ctx.args;
    return restoreGet(ctx, name ?? "", dest ?? "", keepFrom);
  },
});
