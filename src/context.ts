import type { Config } from "./config/load";
import type { Logger } from "./log";

/**
 * What every command function receives. Commands are plain async functions over this; only the
 * entry point (`cli/entry.ts`) turns their errors into exit codes.
 */
export interface Context {
  config: Config;
  log: Logger;
  /** -n/--not-really: print every action, change nothing. */
  dryRun: boolean;
  json: boolean;
  /** Positional arguments after CONFIG (and after the command name, for wal-ctl). */
  args: string[];
  options: Map<string, string>;
  /** Output meant for the operator (tables, JSON): stdout. */
  out: (text: string) => void;
  /** Runs `fn` unless --not-really, in which case it logs `what` instead. */
  act: <T>(what: string, fn: () => T | Promise<T>) => Promise<T | undefined>;
  /** Registers cleanup to run on exit, error and SIGINT/SIGTERM; returns an unregister function. */
  onCleanup: (fn: () => void) => () => void;
  /**
   * Replaces the default SIGINT/SIGTERM handling (run cleanups, die of the signal) for the first
   * such signal: `fn` is called and the command ends itself; a second signal gets the default.
   * Returns an unregister function.
   */
  onStopSignal: (fn: (sig: NodeJS.Signals) => void) => () => void;
}
