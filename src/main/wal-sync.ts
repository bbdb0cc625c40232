import { main } from "../cli/entry";
import { parseToolArgs } from "../cli/parse";

main({
  name: "wal-sync",
  help: "walSync",
  positionals: { min: 0, max: 0, usage: "wal-sync CONFIG [--daemon]" },
  parse: (argv) => parseToolArgs("wal-sync", argv),
  run: async (ctx) => (await import("../command/sync/daemon.js")).syncCommand(ctx),
});
