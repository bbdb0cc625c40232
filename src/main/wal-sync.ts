import { main } from "../cli/entry";

main({
  name: "wal-sync",
  help: "walSync",
  positionals: { min: 0, max: 0, usage: "wal-sync CONFIG [--daemon]" },
  spec: { flags: ["daemon", "detach"], short: { d: "detach" } },
  run: async (ctx) => (await import("../command/daemon")).syncCommand(ctx),
});
