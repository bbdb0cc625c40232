import { archiveCall } from "../command/archive/push";
import { main } from "../cli/entry";

main({
  name: "wal-archive",
  help: "walArchive",
  positionals: { min: 2, max: 2, usage: "wal-archive CONFIG %p %f" },
  run: async (ctx) => {
    const [src, name] = ctx.args;
    await archiveCall(ctx, src ?? "", name ?? "");
  },
});
