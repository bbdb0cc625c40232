import { main } from "../cli/entry";

main({
  name: "wal-sync",
  help: "walSync",
  spec: { flags: ["daemon"] },
  run: async (ctx) => (await import("../command/sync")).syncOnce(ctx),
});
