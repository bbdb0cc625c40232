/*
 * The restore prefetcher, started (detached) by wal-restore: `wal-prefetch CONFIG SPOOLDIR`, in
 * the standby's data directory. Not an executable of its own in bin/: nobody runs it by hand.
 */
import { main } from "../cli/entry";
import { runPrefetcher } from "../command/archive/prefetch";

main({
  name: "wal-prefetch",
  help: "walRestore",
  positionals: { min: 1, max: 1, usage: "wal-prefetch CONFIG SPOOLDIR" },
  run: async (ctx) => runPrefetcher(ctx, ctx.args[0] ?? ""),
});
