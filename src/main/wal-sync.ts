import { main } from "../cli/entry";
import { HELP } from "../cli/help";

main({
  name: "wal-sync",
  help: HELP.walSync,
  spec: { flags: ["daemon"] },
  run: async (ctx) => (await import("../command/sync")).syncOnce(ctx),
});
