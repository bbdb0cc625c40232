import { parseArgs } from "node:util";
import { UsageError } from "../errors";
import { closest } from "../suggest";

/** What a command line asks for, as every executable's parser returns it to the entry point. */
export interface ParsedArgs {
  /** Positional arguments in the order typed: CONFIG first (then, for wal-ctl, the command). */
  positional: string[];
  /** The command's own options, long name (without dashes) → value; switches are "true". */
  options: Map<string, string>;
  help: boolean;
  version: boolean;
  quiet: boolean;
  verbose: number;
  dryRun: boolean;
  json: boolean;
  /** Text the command line asks for instead of a run (`wal-ctl completion`): printed, exit 0. */
  output?: string;
}

/**
 * The general options (command-docs.ts' GENERAL_OPTIONS, which a test compares with this) in
 * util.parseArgs' terms. -v may be repeated.
 */
const HOT_PATH_OPTIONS = {
  help: { type: "boolean", short: "h" },
  quiet: { type: "boolean", short: "q" },
  verbose: { type: "boolean", short: "v", multiple: true },
  "not-really": { type: "boolean", short: "n" },
  version: { type: "boolean" },
} as const;

/** The option names of HOT_PATH_OPTIONS, as typed (for tests and hints). */
export const HOT_PATH_FLAGS = Object.entries(HOT_PATH_OPTIONS).map(([long, o]) =>
  "short" in o ? `-${o.short}, --${long}` : `--${long}`,
);

/**
 * The command line of wal-archive, wal-restore (and the prefetcher): the general options and
 * positional arguments, nothing else. PostgreSQL starts these once per WAL segment, so they use
 * Node's built-in util.parseArgs (two of node's internal modules, loaded from the binary itself;
 * no file to read) rather than yargs, which would add about 20 ms to every segment. Strict: an
 * unknown option or a value given to a switch is a usage error (exit 2) naming it.
 */
export function parseHotPathArgs(argv: string[], program: string): ParsedArgs {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: HOT_PATH_OPTIONS, strict: true, allowPositionals: true });
  } catch (err) {
    throw hotPathUsageError(err, program);
  }
  const v = parsed.values;
  return {
    positional: parsed.positionals,
    options: new Map(),
    help: v.help === true,
    version: v.version === true,
    quiet: v.quiet === true,
    verbose: v.verbose?.length ?? 0,
    dryRun: v["not-really"] === true,
    json: false,
  };
}

/** util.parseArgs' error in our words: which option, and what the executable takes instead. */
function hotPathUsageError(err: unknown, program: string): UsageError {
  const e = err as { code?: string; message?: string };
  const message = e.message ?? String(err);
  // util.parseArgs names the option in quotes: "Unknown option '--bogus'. …", "Option '-q, --quiet' does not take …".
  const named = /'([^']+)'/.exec(message)?.[1] ?? "";
  const takes = `${program} takes ${HOT_PATH_FLAGS.join(", ")} and positional arguments only; see ${program} --help`;
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") {
    const near = named.startsWith("--") ? closest(named.slice(2), Object.keys(HOT_PATH_OPTIONS)) : undefined;
    return new UsageError(`unknown option ${named}`, near ? `did you mean --${near}? ${takes}` : takes);
  }
  if (e.code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") {
    return new UsageError(`option ${named.split(", ").pop() ?? named} takes no value`, takes);
  }
  return new UsageError(message, takes);
}

/** How many positional arguments (after CONFIG, and after the command name for wal-ctl) a command takes. */
export interface PositionalSpec {
  /** For messages: `wal-archive`, `wal-ctl pause`. */
  command: string;
  min: number;
  max: number;
  /** The command line as --help shows it, for the hint: `wal-ctl CONFIG restore [SET [DST]]`. */
  usage: string;
}

/**
 * Refuses too few or too many positional arguments with a usage error (exit 2) naming what is
 * missing or the first extra argument: an ignored argument is usually a typo or a misplaced
 * option value, and doing something other than what was typed is worse than refusing.
 */
export function checkPositionals(args: string[], spec: PositionalSpec): void {
  const hint = `usage: ${spec.usage}`;
  if (args.length < spec.min) {
    throw new UsageError(`${spec.command}: missing arguments`, hint);
  }
  if (args.length > spec.max) {
    const extra = args.slice(spec.max);
    const takes = spec.max === 0 ? "takes no arguments" : `takes at most ${spec.max}`;
    throw new UsageError(
      `${spec.command}: unexpected extra argument${extra.length > 1 ? "s" : ""} ` +
        `${extra.map((a) => JSON.stringify(a)).join(" ")} (${spec.command} ${takes}); nothing was done`,
      hint,
    );
  }
}
