/** An in-process command context for unit tests: the given config and log, nothing else happens. */
import type { Config } from "../../src/config/load";
import type { Context } from "../../src/context";
import type { Logger } from "../../src/log";

export function testContext(config: Config, log: Logger): Context {
  return {
    config,
    log,
    dryRun: false,
    json: false,
    args: [],
    options: new Map(),
    out: () => undefined,
    act: async (_what, fn) => fn(),
    onCleanup: () => () => undefined,
    onStopSignal: () => () => undefined,
  };
}
