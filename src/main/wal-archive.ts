import { archivePush } from "../command/archive/push";
import { main } from "../cli/entry";
import { HELP } from "../cli/help";

main({
  name: "wal-archive",
  help: HELP.walArchive,
  minArgs: 2,
  run: async (ctx) => {
    const [src, name] = ctx.args;
    await archivePush(ctx, src ?? "", name ?? "");
  },
});
