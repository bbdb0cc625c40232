import { join } from "node:path";
import { configStem, type Config, type Location } from "../config/load";
import { ControlFiles } from "./control";
import { LocalDriver } from "../storage/local/driver";
import type { StorageDriver } from "../storage/driver";
import { driverFor } from "../storage/open";

/** The slave directory as configured: walmgr's names, so walmgr.py slave folders keep working. */
export interface SlaveLayout {
  completed: Location;
  partial: Location | undefined;
  fullBackup: Location | undefined;
  configBackup: Location | undefined;
  driver: StorageDriver;
}

export function slaveLayout(config: Config, why: string): SlaveLayout {
  const completed = config.requireLocation("completed_wals", why);
  return {
    completed,
    partial: config.location("partial_wals"),
    fullBackup: config.location("full_backup"),
    configBackup: config.location("config_backup"),
    driver: driverFor(completed, config),
  };
}

/**
 * The control files of the slave directory at `completed` (reached through `driver`): in
 * completed_wals itself (walmgr's place), except in an object store, where PAUSE, STOP and the
 * boot markers live in a local folder of the standby (`control_dir`, default NAME.control beside
 * the config file) and only BACKUPLOCK stays beside the WAL.
 */
export function controlFilesFor(config: Config, completed: Location, driver: StorageDriver): ControlFiles {
  if (completed.bucket === undefined) return new ControlFiles(driver, completed.path);
  const dir = config.path("control_dir") ?? join(config.baseDir, `${configStem(config.file)}.control`);
  return new ControlFiles(new LocalDriver(), dir, { driver, dir: completed.path });
}
