import { main } from "../cli/entry";

main({
  name: "wal-backup",
  help: "walBackup",
  spec: { flags: ["clear-stale-lock"] },
  run: async (ctx) => (await import("../command/backup/run")).backup(ctx),
});
