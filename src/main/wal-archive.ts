import { archivePush } from "../command/archive/push";
import { main } from "../cli/entry";

main({
  name: "wal-archive",
  help: "walArchive",
  minArgs: 2,
  run: async (ctx) => {
    const [src, name] = ctx.args;
    await archivePush(ctx, src ?? "", name ?? "");
  },
});
