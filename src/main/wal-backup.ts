import { main } from "../cli/entry";
import { HELP } from "../cli/help";

main({
  name: "wal-backup",
  help: HELP.walBackup,
  spec: { flags: ["clear-stale-lock"] },
  run: async (ctx) => (await import("../command/backup/run")).backup(ctx),
});
