import { main } from "../cli/entry";

main({
  name: "wal-sync",
  help: "walSync",
  spec: { flags: ["daemon", "detach"], short: { d: "detach" } },
  run: async (ctx) => (await import("../command/sync")).syncOnce(ctx),
});
