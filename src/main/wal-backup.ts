import { main } from "../cli/entry";

main({
  name: "wal-backup",
  help: "walBackup",
  positionals: { min: 0, max: 0, usage: "wal-backup CONFIG" },
  spec: { flags: ["clear-stale-lock"] },
  run: async (ctx) => (await import("../command/backup/run")).backup(ctx),
});
