import { TransportError } from "../errors";
import type { Location } from "../config/load";
import type { StorageDriver } from "./driver";
import { LocalDriver } from "./local";

/** The driver for a configured location: local directory now; `host:/path` needs the ssh driver. */
export function driverFor(loc: Location): StorageDriver {
  if (loc.host === undefined) return new LocalDriver();
  throw new TransportError(
    `slave on host '${loc.host}' (${loc.host}:${loc.path}) needs the ssh transport, which this version does not have yet`,
    "use a local or mounted directory for `slave` until the ssh transport lands",
  );
}
