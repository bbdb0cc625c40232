/**
 * The walmgr manual's QUICK START (test/helpers/quickstart.ts) with the slave directory a local
 * folder: setup, backup, restore, replay, pause/continue, sync of the in-progress segment, boot.
 */
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
import { removeTempDir, runBin } from "../helpers/env";
import { NOTHING_MORE, onDisk, quickStartTest } from "../helpers/quickstart";
import { createPair, stopPair } from "../helpers/walmgr";

quickStartTest("QUICK START: setup, backup, restore, replay, pause, continue, sync, boot", async () => {
  const p = await createPair("quickstart", { master: "use_xlog_functions = 1" });
  return {
    ...p,
    slaveBin: runBin,
    ...onDisk(p.slaveDir),
    pauseFile: join(p.slaveDir, "logs.complete", "PAUSE"),
    slaveLog: join(p.base, "slave.log"),
    afterSetup: async () => {
      for (const d of ["logs.complete", "logs.partial"]) assert.ok(statSync(join(p.slaveDir, d)).isDirectory());
    },
    afterBackup: NOTHING_MORE,
    extraSteps: NOTHING_MORE,
    afterRestore: NOTHING_MORE,
    stop: async () => {
      stopPair(p);
      removeTempDir(p.base);
    },
  };
});
