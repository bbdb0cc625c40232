/*
 * Batch archiving's background pusher, started (detached) by wal-archive:
 * `wal-archive-ahead CONFIG WALDIR STAMP NAME...` (src/command/archive/ahead.ts). Not an
 * executable of its own in bin/: nobody runs it by hand.
 */
import { main } from "../cli/entry";
import { runPusher } from "../command/archive/ahead";

main({
  name: "wal-archive-ahead",
  help: "walArchive",
  positionals: { min: 3, max: Number.MAX_SAFE_INTEGER, usage: "wal-archive-ahead CONFIG WALDIR STAMP NAME..." },
  run: async (ctx) => {
    const [walDir, stamp, ...names] = ctx.args;
    await runPusher(ctx, walDir ?? "", stamp ?? "", names);
  },
});
