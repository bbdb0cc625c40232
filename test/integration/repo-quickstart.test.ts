/**
 * The walmgr manual's QUICK START (test/helpers/quickstart.ts) with backup_format = repo: the
 * base backup goes into the block repository and `restore` materializes the newest set; replay,
 * pause/continue, sync of the in-progress segment and boot work as with plain sets.
 */
import { join } from "node:path";
import { removeTempDir, runBin } from "../helpers/env";
import { NOTHING_MORE, onDisk, quickStartTest } from "../helpers/quickstart";
import { createPair, stopPair } from "../helpers/walmgr";

quickStartTest(
  "QUICK START with backup_format = repo: setup, backup, restore, replay, pause, continue, sync, boot",
  async () => {
    const p = await createPair("repo-quickstart", {
      master: "use_xlog_functions = 1\nbackup_format = repo",
      slave: "backup_format = repo",
    });
    return {
      ...p,
      format: "repo" as const,
      slaveBin: runBin,
      ...onDisk(p.slaveDir),
      pauseFile: join(p.slaveDir, "logs.complete", "PAUSE"),
      slaveLog: join(p.base, "slave.log"),
      afterSetup: NOTHING_MORE,
      afterBackup: NOTHING_MORE,
      extraSteps: NOTHING_MORE,
      afterRestore: NOTHING_MORE,
      stop: async () => {
        stopPair(p);
        removeTempDir(p.base);
      },
    };
  },
);
