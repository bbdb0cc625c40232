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
