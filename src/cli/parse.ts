/**
 * The command lines of wal-ctl, wal-sync and wal-backup, parsed with yargs: the executables
 * people and cron run, where yargs' start-up (about 20 ms) is nothing beside the work. Each
 * wal-ctl command is a yargs command module with exactly the options its page documents
 * (command-docs.ts is the one list: the help and the parser cannot disagree); unknown options and
 * commands are refused (exit 2) with a "did you mean" hint; `wal-ctl completion` prints yargs'
 * shell completion script. wal-archive and wal-restore never load this file (cli/args.ts).
 *
 * yargs' own help and version output are switched off: --help prints our man pages (help.ts),
 * and the entry point prints the version, so each executable answers them the same way.
 */
import type { Argv, CommandModule } from "yargs";
import yargs from "yargs/yargs";
import { UsageError } from "../errors";
import type { ParsedArgs } from "./args";
import { GENERAL_OPTIONS, TOOL_OPTIONS } from "./command-docs";
import { checkCtlArgs, CTL_COMMANDS, isDocumentedCommand, type DocumentedCommand, type OptionDoc } from "./commands";
import { closest } from "../suggest";

/** One option as the parser needs it, read from its documented form (`-d, --detach`, `--timeout SECONDS`). */
export interface OptionSpec {
  long: string;
  short?: string;
  /** `--timeout SECONDS`: takes a value; `--json`: a switch. */
  takesValue: boolean;
}

/** `["-d, --detach", …]` → { long: "detach", short: "d", takesValue: false }. */
export function optionSpec([flag]: OptionDoc): OptionSpec {
  const words = flag.split(/,?\s+/);
  const long = words.find((w) => w.startsWith("--"))?.slice(2);
  if (long === undefined) throw new Error(`option ${JSON.stringify(flag)} has no long name`);
  const short = words.find((w) => /^-[^-]$/.test(w))?.slice(1);
  return { long, ...(short !== undefined ? { short } : {}), takesValue: words.some((w) => !w.startsWith("-")) };
}

const GENERAL = GENERAL_OPTIONS.map(optionSpec);

/** Every wal-ctl command name (commands.ts), the ssh helper's xhelper included. */
const COMMAND_NAMES = Object.keys(CTL_COMMANDS) as DocumentedCommand[];

/** The options `command` takes beyond the general ones (undefined: none, as on wal-ctl's own line). */
export function commandOptions(command: DocumentedCommand | undefined): OptionSpec[] {
  return command === undefined ? [] : CTL_COMMANDS[command].options.map(optionSpec);
}

/** Long names of options that take a value, in any command: to find the positionals before yargs runs. */
const VALUE_OPTIONS = new Set(
  [...GENERAL, ...COMMAND_NAMES.flatMap(commandOptions), ...Object.values(TOOL_OPTIONS).flat().map(optionSpec)]
    .filter((o) => o.takesValue)
    .map((o) => o.long),
);

/**
 * Where the positional arguments are in `argv`: everything that is neither an option nor the
 * value of one (`--timeout 5`), and everything after `--`. The same reading yargs makes (value
 * options are the same list), done first because wal-ctl's command comes after CONFIG.
 */
export function positionalIndexes(argv: readonly string[]): number[] {
  const at: number[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (a === "--") {
      for (let j = i + 1; j < argv.length; j++) at.push(j);
      break;
    }
    if (a === "-" || !a.startsWith("-")) at.push(i);
    else if (a.startsWith("--") && !a.includes("=") && VALUE_OPTIONS.has(a.slice(2))) i++;
  }
  return at;
}

/**
 * yargs-parser settings for walmgr's syntax: option names as typed (no camelCase twins, no
 * --no-X negations), a repeated option keeps its last value, and values and positionals stay
 * strings (`--target-xid 0012`, a set named 1).
 */
const PARSER_CONFIGURATION = {
  "camel-case-expansion": false,
  "boolean-negation": false,
  "duplicate-arguments-array": false,
  "parse-numbers": false,
  "parse-positional-numbers": false,
  "dot-notation": false,
  "strip-aliased": true,
} as const;

/** A yargs validation message, thrown out of its .fail() hook and turned into a UsageError below. */
class YargsFailure extends Error {}

/** Declares `specs` on `y`; switches take no value (`--json=1` is refused, `--json false` keeps "false" positional). */
function declare(y: Argv, specs: readonly OptionSpec[]): Argv {
  for (const o of specs) {
    y.option(o.long, {
      ...(o.short !== undefined ? { alias: o.short } : {}),
      ...(o.long === "verbose"
        ? { type: "count" }
        : o.takesValue
          ? { type: "string", requiresArg: true }
          : { type: "boolean", nargs: 0 }),
    });
  }
  return y;
}

/** A yargs instance with walmgr's settings and the general options. */
function base(program: string, argv: readonly string[]): Argv {
  return declare(
    yargs([...argv])
      .scriptName(program)
      // Our man pages and our version line, not yargs' generated ones.
      .help(false)
      .version(false)
      // Messages in English whatever LANG says (usageError below reads them), and no locale files read.
      .detectLocale(false)
      .showHelpOnFail(false)
      // Only the entry point ends the process and picks the exit code.
      .exitProcess(false)
      .parserConfiguration(PARSER_CONFIGURATION)
      .fail((msg: string | undefined, err: Error | undefined) => {
        throw new YargsFailure(msg ?? err?.message ?? "invalid command line");
      }),
    GENERAL,
  );
}

/** `x` and `--name` → `-x` and `--name`: how an option name is typed. */
const typed = (name: string): string => (name.length === 1 ? `-${name}` : `--${name}`);

/**
 * The first option in `argv` that `known` (and the general options) lack, as typed: `--bogus`,
 * `-x` (from a bundle like `-qx`). Read from argv rather than from yargs' message, which
 * mangles some names (`__proto__`) and lists positionals alike.
 */
function unknownOption(argv: readonly string[], known: readonly OptionSpec[]): string | undefined {
  const all = [...GENERAL, ...known];
  const longs = new Set(all.map((o) => o.long));
  const shorts = new Set(all.flatMap((o) => (o.short !== undefined ? [o.short] : [])));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] ?? "";
    if (a === "--") break;
    if (a.startsWith("--")) {
      const name = a.slice(2).split("=")[0] ?? "";
      if (!longs.has(name)) return `--${name}`;
      if (!a.includes("=") && VALUE_OPTIONS.has(name)) i++;
    } else if (a.startsWith("-") && a !== "-") {
      for (const ch of a.slice(1)) if (!shorts.has(ch)) return `-${ch}`;
    }
  }
  return undefined;
}

/** Every option some wal-ctl command takes (long names). */
const ALL_COMMAND_OPTIONS = new Set(COMMAND_NAMES.flatMap((c) => commandOptions(c).map((o) => o.long)));

/** Where an option `command` lacks can be found instead: the commands that take it. */
function commandsTaking(long: string): DocumentedCommand[] {
  return COMMAND_NAMES.filter((c) => commandOptions(c).some((o) => o.long === long));
}

interface FailureContext {
  /**
   * What the message names first: the wal-ctl command (`restore: unknown option …`), or nothing
   * (the log line already starts with the program's name).
   */
  who?: string;
  argv: readonly string[];
  /** The options of the command (or executable) beyond the general ones. */
  options: readonly OptionSpec[];
  /** Where the full list of options is: `wal-ctl help restore`, `wal-sync --help`. */
  helpRef: string;
  command?: DocumentedCommand;
  /** Throws the usage error for a wrong number of positional arguments, if that is what is wrong. */
  positionals?: () => void;
}

/**
 * yargs' complaint about a command line as a usage error (exit 2) in the words of the rest of
 * walmgr: what is wrong, and a HINT with the nearest right thing. The messages matched are
 * yargs 17's English ones (the locale is pinned above; test/unit/args.test.ts has a case for
 * each, so an upgrade that rewords them fails there, not in a user's terminal).
 */
function usageError(msg: string, c: FailureContext): UsageError {
  let m: RegExpExecArray | null;
  if (/^Unknown arguments?: /.test(msg)) {
    // yargs says the same of an extra positional argument; checkCtlArgs names it better.
    c.positionals?.();
    const bad = unknownOption(c.argv, c.options);
    if (bad !== undefined) return unknownOptionError(bad, c);
  }
  if ((m = /^Not enough arguments following: (.+)$/.exec(msg))) {
    const opt = typed(m[1] ?? "");
    return new UsageError(
      `${prefix(c)}option ${opt} needs a value`,
      `${c.helpRef} says what it takes; a value that starts with - is given as ${opt}=VALUE`,
    );
  }
  if ((m = /^Argument unexpected for: (.+)$/.exec(msg))) {
    return new UsageError(`${prefix(c)}option ${typed(m[1] ?? "")} takes no value`, `${c.helpRef} lists the options`);
  }
  return new UsageError(`${prefix(c)}${msg}`, `${c.helpRef} describes the command line`);
}

const prefix = (c: FailureContext): string => (c.who !== undefined ? `${c.who}: ` : "");

/**
 * `unknown option --nagio`, with the nearest option of this command as the hint, or else the
 * command that has it (`--nagios is an option of check, not of status`).
 */
function unknownOptionError(bad: string, c: FailureContext): UsageError {
  const name = bad.startsWith("--") ? bad.slice(2) : undefined;
  const own = [...GENERAL, ...c.options].map((o) => o.long);
  const near = name !== undefined ? closest(name, own) : undefined;
  const other = name !== undefined && near === undefined ? closest(name, [...ALL_COMMAND_OPTIONS]) : undefined;
  const takers = other !== undefined ? commandsTaking(other) : [];
  const hint =
    near !== undefined
      ? `did you mean --${near}? ${c.helpRef} lists the options`
      : other !== undefined && c.command !== undefined
        ? `--${other} is an option of ${takers.join(", ")}, not of ${c.command}; ${c.helpRef} lists ${c.command}'s`
        : other !== undefined
          ? `--${other} is an option of ${takers.join(", ")}: give it after the command (wal-ctl CONFIG COMMAND --${other})`
          : `${c.helpRef} lists the options`;
  return new UsageError(`${prefix(c)}unknown option ${bad}`, hint);
}

/** Runs yargs over `argv`; its complaints become usage errors. */
function run(y: Argv, c: FailureContext): Record<string, unknown> {
  try {
    return y.parseSync();
  } catch (err) {
    if (err instanceof YargsFailure) throw usageError(err.message, c);
    throw err;
  }
}

/** ParsedArgs from yargs' argv: the general options, and `specs` (the command's own) as the options map. */
function parsedFrom(argv: Record<string, unknown>, specs: readonly OptionSpec[], positional: string[]): ParsedArgs {
  const options = new Map<string, string>();
  let json = false;
  for (const o of specs) {
    const v = argv[o.long];
    if (v === undefined || v === false) continue;
    if (o.long === "json") json = true;
    else if (v === true) options.set(o.long, "true");
    else if (typeof v === "string") options.set(o.long, v);
  }
  return {
    positional,
    options,
    help: argv.help === true,
    version: argv.version === true,
    quiet: argv.quiet === true,
    verbose: typeof argv.verbose === "number" ? argv.verbose : 0,
    dryRun: argv["not-really"] === true,
    json,
  };
}

/**
 * wal-sync's and wal-backup's command line: `PROGRAM [OPTIONS] CONFIG` with the executable's own
 * options (TOOL_OPTIONS). Options are checked strictly; the positional count is the entry
 * point's check (its message names the extra argument).
 */
export function parseToolArgs(program: "wal-sync" | "wal-backup", argv: readonly string[]): ParsedArgs {
  const specs = TOOL_OPTIONS[program === "wal-sync" ? "walSync" : "walBackup"].map(optionSpec);
  const context: FailureContext = { argv, options: specs, helpRef: `${program} --help` };
  const parsed = run(declare(base(program, argv), specs).strictOptions(), context);
  return parsedFrom(
    parsed,
    specs,
    positionalIndexes(argv).map((i) => argv[i] ?? ""),
  );
}

/** The yargs names of a command's positional arguments: `[SET [DST]]` → `[set] [dst]`. */
function positionalsOf(command: DocumentedCommand): string {
  const names = CTL_COMMANDS[command].args.match(/[A-Za-z]+/g) ?? [];
  // All optional here: the entry point counts them (checkCtlArgs), naming what is missing or extra.
  return ["[config]", ...names.map((n) => `[${n.toLowerCase()}]`)].join(" ");
}

/** One yargs command module per wal-ctl command, its options from its record. */
function commandModule(name: DocumentedCommand): CommandModule {
  const doc: { internal?: boolean; summary: string } = CTL_COMMANDS[name];
  return {
    command: `${name} ${positionalsOf(name)}`,
    // The internal ones are hidden from completion, as from the overview's main lists.
    describe: doc.internal === true ? false : doc.summary,
    builder: (y) => declare(y, commandOptions(name)),
    handler: () => undefined,
  };
}

/**
 * wal-ctl's yargs: every command module, `help [TOPIC]` (answered from the pages, but a name
 * recommendCommands may suggest), and yargs' completion with our completion function for
 * `words`, the line being completed.
 */
function ctlYargs(argv: readonly string[], words: readonly string[] = []): Argv {
  const y = base("wal-ctl", argv);
  for (const name of COMMAND_NAMES) y.command(commandModule(name));
  return y
    .command({
      command: "help [topic]",
      describe: "show a command's manual page",
      handler: () => undefined,
    })
    .completion("completion", false, (current: string) => completions(words, current))
    .strict()
    .recommendCommands();
}

/**
 * What the shell may put in place of `current`, the last of `line` (the shell's words up to the
 * cursor, the program name first): after CONFIG a command (or help); after `help` a command;
 * options where one starts, the command's own and the general ones. Nothing for CONFIG, or a
 * command's SET and DST: offered nothing, the shell completes file names.
 */
function completions(line: readonly string[], current: string): string[] {
  const words = line.slice(1, -1);
  const before = positionalIndexes(words).map((i) => words[i] ?? "");
  const previous = words[words.length - 1] ?? "";
  if (previous.startsWith("--") && VALUE_OPTIONS.has(previous.slice(2))) return [];
  const [first, second] = before;
  if (current.startsWith("-")) {
    const command = first === "help" ? undefined : before.length === 1 && isDocumentedCommand(first) ? first : second;
    const specs = [...GENERAL, ...(isDocumentedCommand(command) ? commandOptions(command) : [])];
    return specs.map((o) => `--${o.long}`).filter((o) => o.startsWith(current) && !words.includes(o));
  }
  if (before.length !== 1) return [];
  const names = [
    ...COMMAND_NAMES.filter((n) => !("internal" in CTL_COMMANDS[n])),
    ...(first === "help" ? [] : ["help"]),
  ];
  return names.filter((n) => n.startsWith(current));
}

/** yargs' completion script for bash (zsh when SHELL says so), as `wal-ctl completion` prints it. */
function completionScript(): Promise<string> {
  return new Promise((resolve, reject) => {
    // parse() with a callback hands over the output instead of printing it (and is synchronous here).
    void yargs(["completion"])
      .scriptName("wal-ctl")
      .help(false)
      .version(false)
      .detectLocale(false)
      .completion("completion", false)
      .parse(["completion"], {}, (err: Error | undefined, _argv: unknown, output: string) =>
        err ? reject(err) : resolve(output),
      );
  });
}

/** The key yargs' completion script passes: `wal-ctl --get-yargs-completions WORDS…`. */
const COMPLETION_KEY = "--get-yargs-completions";

/**
 * wal-ctl's command line: `wal-ctl [OPTIONS] CONFIG COMMAND [ARGS] [COMMAND OPTIONS]`,
 * `wal-ctl [CONFIG] COMMAND --help`, `wal-ctl help [COMMAND]`, `wal-ctl completion`.
 *
 * walmgr.py's order puts CONFIG before the command, and yargs finds a command only in the first
 * positional place: so the command word is moved to the front before yargs reads the line
 * (`master.ini backup -q` is read as `backup master.ini -q`). A single positional word that names
 * a command is the command (`wal-ctl check --help`); otherwise it is CONFIG. `help` is answered
 * from the pages without yargs (any CONFIG is not read, and a config file named help is ./help).
 */
export async function parseCtlArgs(argv: readonly string[]): Promise<ParsedArgs> {
  if (argv[0] === COMPLETION_KEY) {
    const line = argv.slice(1);
    const list = await ctlYargs([], line).getCompletion([...line]);
    return { ...NOTHING, output: list.length > 0 ? `${list.join("\n")}\n` : "" };
  }
  const at = positionalIndexes(argv);
  const words = at.map((i) => argv[i] ?? "");
  // yargs would answer the key anywhere, print completions and then let the command run.
  const end = argv.indexOf("--");
  if ((end === -1 ? argv : argv.slice(0, end)).includes(COMPLETION_KEY)) {
    throw new UsageError(
      `unknown option ${COMPLETION_KEY}`,
      "it is the completion script's, and only its first argument",
    );
  }
  if (words[0] === "help" || words[1] === "help") return { ...NOTHING, positional: words };
  if (words[0] === "completion" || words[1] === "completion") {
    // yargs prints its script for `completion` anywhere on the line; here it stands alone.
    if (words.length > 1) throw new UsageError("completion takes no CONFIG or arguments", "usage: wal-ctl completion");
    return { ...NOTHING, output: await completionScript() };
  }
  const commandAt = words.length === 1 ? (isDocumentedCommand(words[0]) ? at[0] : undefined) : at[1];
  const configAt = commandAt === at[0] ? undefined : at[0];
  const command = commandAt === undefined ? undefined : argv[commandAt];
  // yargs reads: the command, then everything else in order (CONFIG stays a positional of the
  // command); with no command, CONFIG is left out, or yargs would take it for one.
  const line =
    commandAt === undefined
      ? argv.filter((_, i) => i !== configAt)
      : [argv[commandAt] ?? "", ...argv.filter((_, i) => i !== commandAt)];
  const known = isDocumentedCommand(command) ? command : undefined;
  const context: FailureContext = {
    ...(known ? { who: known } : {}),
    argv,
    options: commandOptions(known),
    helpRef: known ? `wal-ctl help ${known}` : "wal-ctl --help",
    ...(known ? { command: known } : {}),
    ...(known ? { positionals: () => checkCtlArgs(configAt === undefined ? words : words.slice(1)) } : {}),
  };
  if (command !== undefined && !known) {
    // Let yargs recommend a command (its recommendCommands), then say it our way.
    let recommended: string | undefined;
    try {
      ctlYargs(line).parseSync();
    } catch (err) {
      if (!(err instanceof YargsFailure)) throw err;
      recommended = /^Did you mean (.+)\?$/.exec(err.message)?.[1];
    }
    throw new UsageError(
      `unknown command ${JSON.stringify(command)}`,
      `${recommended !== undefined ? `did you mean ${recommended}? ` : ""}commands: ${COMMAND_NAMES.join(", ")}; wal-ctl --help describes them`,
    );
  }
  const parsed = parsedFrom(run(ctlYargs(line), context), context.options, words);
  if (known && configAt === undefined && !parsed.help && !parsed.version) {
    const args = CTL_COMMANDS[known].args;
    throw new UsageError(`${known}: missing CONFIG`, `usage: wal-ctl CONFIG ${known} ${args}`.trimEnd());
  }
  return parsed;
}

/** A command line that runs nothing (help, completion): the general options all off. */
const NOTHING: ParsedArgs = {
  positional: [],
  options: new Map(),
  help: false,
  version: false,
  quiet: false,
  verbose: 0,
  dryRun: false,
  json: false,
};
