import { UsageError } from "../errors";

export interface ParsedArgs {
  positional: string[];
  /** Long option name (without dashes) → value; flags are "true". Repeats keep the last. */
  options: Map<string, string>;
  help: boolean;
  version: boolean;
  quiet: boolean;
  verbose: number;
  dryRun: boolean;
  json: boolean;
}

export interface ArgSpec {
  /** Long options that take a value, e.g. "target-time". */
  valueOptions?: string[];
  /** Long boolean flags beyond the common ones, e.g. "daemon". */
  flags?: string[];
  /** Short aliases: "d" → "detach". */
  short?: Record<string, string>;
}

const COMMON_SHORT: Record<string, string> = { h: "help", q: "quiet", v: "verbose", n: "not-really" };
const COMMON_FLAGS = ["help", "quiet", "verbose", "not-really", "version", "json"];

/**
 * A small getopt: common options (-h -q -v -n --version --json) on every executable, plus the
 * executable's own. Hand-written rather than yargs so that wal-archive/wal-restore, which
 * PostgreSQL starts once per segment, load nothing they do not need.
 */
export function parseArgs(argv: string[], spec: ArgSpec = {}): ParsedArgs {
  const valueOpts = new Set(spec.valueOptions ?? []);
  const flags = new Set([...COMMON_FLAGS, ...(spec.flags ?? [])]);
  const short = { ...COMMON_SHORT, ...(spec.short ?? {}) };
  const out: ParsedArgs = {
    positional: [],
    options: new Map(),
    help: false,
    version: false,
    quiet: false,
    verbose: 0,
    dryRun: false,
    json: false,
  };
  const setFlag = (name: string): void => {
    if (name === "help") out.help = true;
    else if (name === "version") out.version = true;
    else if (name === "quiet") out.quiet = true;
    else if (name === "verbose") out.verbose++;
    else if (name === "not-really") out.dryRun = true;
    else if (name === "json") out.json = true;
    else out.options.set(name, "true");
  };
  let onlyPositional = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (onlyPositional || a === "-" || !a.startsWith("-")) {
      out.positional.push(a);
      continue;
    }
    if (a === "--") {
      onlyPositional = true;
      continue;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
      if (valueOpts.has(name)) {
        let value = eq === -1 ? argv[++i] : a.slice(eq + 1);
        if (value === undefined) throw new UsageError(`option --${name} needs a value`);
        out.options.set(name, value);
        value = undefined;
      } else if (flags.has(name)) {
        if (eq !== -1) throw new UsageError(`option --${name} takes no value`);
        setFlag(name);
      } else {
        throw new UsageError(`unknown option --${name}`);
      }
      continue;
    }
    // Bundled short flags: -qv, -n.
    for (const ch of a.slice(1)) {
      const name = short[ch];
      if (name === undefined) throw new UsageError(`unknown option -${ch}`);
      if (valueOpts.has(name)) {
        const value = argv[++i];
        if (value === undefined) throw new UsageError(`option -${ch} needs a value`);
        out.options.set(name, value);
      } else {
        setFlag(name);
      }
    }
  }
  return out;
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

/** wal-ctl's commands and their positional arguments after the command name. */
export const CTL_COMMAND_ARGS = {
  setup: { min: 0, max: 0, args: "" },
  stop: { min: 0, max: 0, args: "" },
  pause: { min: 0, max: 0, args: "" },
  continue: { min: 0, max: 0, args: "" },
  boot: { min: 0, max: 0, args: "" },
  sync: { min: 0, max: 0, args: "" },
  syncdaemon: { min: 0, max: 0, args: "" },
  periodic: { min: 0, max: 0, args: "" },
  status: { min: 0, max: 0, args: "" },
  check: { min: 0, max: 0, args: "" },
  backup: { min: 0, max: 0, args: "" },
  restore: { min: 0, max: 2, args: "[SET [DST]]" },
  listbackups: { min: 0, max: 0, args: "" },
  verify: { min: 0, max: 1, args: "[SET]" },
  xarchive: { min: 2, max: 2, args: "%p %f" },
  xrestore: { min: 2, max: 3, args: "%f %p [%r]" },
  xpartialsync: { min: 0, max: 0, args: "" },
} satisfies Record<string, { min: number; max: number; args: string }>;

/** A wal-ctl command name (bin/wal-ctl's table must have exactly these: the type checks it). */
export type CtlCommand = keyof typeof CTL_COMMAND_ARGS;

/**
 * Checks `wal-ctl CONFIG COMMAND ARGS…` before anything is loaded: `rest` is what follows
 * CONFIG. An unknown command or a wrong number of arguments is a usage error.
 */
export function checkCtlArgs(rest: string[]): void {
  const [name, ...args] = rest;
  const spec =
    name !== undefined && Object.hasOwn(CTL_COMMAND_ARGS, name) ? CTL_COMMAND_ARGS[name as CtlCommand] : undefined;
  if (name === undefined) throw new UsageError("wal-ctl: missing COMMAND", "usage: wal-ctl CONFIG COMMAND [ARGS]");
  if (!spec) {
    throw new UsageError(
      `wal-ctl: unknown command ${JSON.stringify(name)}`,
      `commands: ${Object.keys(CTL_COMMAND_ARGS).join(", ")}`,
    );
  }
  checkPositionals(args, {
    command: `wal-ctl ${name}`,
    min: spec.min,
    max: spec.max,
    usage: `wal-ctl CONFIG ${name} ${spec.args}`.trimEnd(),
  });
}
