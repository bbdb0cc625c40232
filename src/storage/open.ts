import type { Config, Location } from "../config/load";
import type { StorageDriver } from "./driver";
import { LocalDriver } from "./local";
import { binPath } from "../paths";

/**
 * The driver for a configured location: the local directory, or `host:/path` over ssh. The ssh
 * driver is loaded only for a remote location, so wal-archive/wal-restore stay lean otherwise.
 * `timeout` overrides ssh_timeout (wal-restore passes restore_timeout).
 */
export function driverFor(loc: Location, config?: Config, opts: { timeout?: number } = {}): StorageDriver {
  if (loc.host === undefined) return new LocalDriver();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { SshDriver } = require("./ssh") as typeof import("./ssh");
  return new SshDriver({
    host: loc.host,
    remoteBin: config?.get("slave_wal_ctl") || binPath("wal-ctl"),
    ...(config?.has("slave_config") ? { remoteConfig: config.get("slave_config") } : {}),
    timeout: opts.timeout ?? (config ? config.float("ssh_timeout") : 10),
    compression: config?.bool("compression") ?? false,
    ...(config?.has("ssh_config") ? { sshConfig: config.path("ssh_config") } : {}),
    controlPersist: config ? config.float("ssh_control_persist") : 60,
  });
}
