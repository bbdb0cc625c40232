import { main } from "../cli/entry";
import { parseToolArgs } from "../cli/parse";

main({
  name: "wal-backup",
  help: "walBackup",
  positionals: { min: 0, max: 0, usage: "wal-backup CONFIG" },
  parse: (argv) => parseToolArgs("wal-backup", argv),
  run: async (ctx) => (await import("../command/backup/run.js")).backup(ctx),
});
