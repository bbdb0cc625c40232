import type { Config, Location } from "./config/load";
import type { StorageDriver } from "./storage/driver";
import { driverFor } from "./storage/open";

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
