import { loadConfig } from "../config/load";
import type { Context } from "../context";
import { describeError, ExitCode, WalmgrError, type ExitCodeValue } from "../errors";
import { Logger, writeStdout } from "../log";
import { VERSION } from "../version";
import { checkPositionals, parseHotPathArgs, type ParsedArgs } from "./args";

export interface Program {
  name: string;
  /** Key of the help text in cli/help.ts, loaded only for --help. */
  help: keyof typeof import("./help").HELP;
  /**
   * Help pages beyond that one (wal-ctl: `help COMMAND`, `COMMAND --help`): the page the command
   * line asks for, or undefined when it asks for none (then --help prints `help`'s page). Runs
   * before CONFIG is read, so help works without a config file.
   */
  helpPage?: (parsed: ParsedArgs) => Promise<string | undefined>;
  /**
   * Reads the command line; throws a UsageError for a bad one. Default: the general options and
   * positional arguments only, with node's util.parseArgs (args.ts), which costs no start-up
   * time; wal-ctl, wal-sync and wal-backup use yargs (parse.ts).
   */
  parse?: (argv: string[]) => ParsedArgs | Promise<ParsedArgs>;
  /**
   * The positional arguments after CONFIG: how many (min, max; `usage` for the hint), or a function
   * that throws a UsageError (wal-ctl: per command). Checked before CONFIG is read; extra
   * arguments are refused rather than ignored.
   */
  positionals: { min: number; max: number; usage: string } | ((rest: string[]) => void);
  run: (ctx: Context, parsed: ParsedArgs) => Promise<ExitCodeValue | void>;
}

const cleanups = new Set<() => void>();

function runCleanups(): void {
  for (const fn of [...cleanups].reverse()) {
    try {
      fn();
    } catch {
      // cleanup must not mask the original failure
    }
  }
  cleanups.clear();
}

/** A command's own SIGINT/SIGTERM handler (the sync daemon's graceful stop); one-shot. */
let stopHandler: ((sig: NodeJS.Signals) => void) | undefined;

function onSignal(sig: NodeJS.Signals): void {
  const handler = stopHandler;
  if (handler) {
    // The command stops itself (and then exits through `finish`); a second signal is the default.
    stopHandler = undefined;
    process.once(sig, onSignal);
    handler(sig);
    return;
  }
  runCleanups();
  process.removeAllListeners(sig);
  // Die of the same signal, so callers (PostgreSQL among them) see what really happened.
  process.kill(process.pid, sig);
}

/**
 * The help pages, from a bundle of their own (dist/bin/help.js; the build marks "./help"
 * external): 45 KB of text that every wal-archive and wal-restore start would otherwise parse,
 * and PostgreSQL starts those once per segment. Under tsc's output it is dist/src/cli/help.js.
 */
function helpPages(): typeof import("./help") {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a separate bundle, loaded for --help only
  return require("./help") as typeof import("./help");
}

/**
 * The single entry point of every executable: parses arguments, loads CONFIG, runs the command,
 * and maps what happened to an exit code from the one table in errors.ts.
 */
export function main(program: Program, argv = process.argv.slice(2)): void {
  const log = new Logger({ verbosity: 2, jobName: program.name });
  let ended = false;
  const finish = (code: number): void => {
    if (ended) return;
    ended = true;
    runCleanups();
    log.close();
    process.exitCode = code;
    // Nothing may keep the process alive after its work (a lingering socket, a timer): exit now.
    process.exit(code);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  // Node exits with 0 when its event loop empties while the command still awaits something
  // (an unref'd timer, a stream nobody ends): for archive_command that is "durable" for a file
  // that is not. Ending that way is an internal error, never success.
  process.once("beforeExit", () => {
    if (ended) return;
    log.error(
      `${program.name}: internal error: the command stopped waiting before it finished (nothing left to wait on)`,
    );
    finish(ExitCode.INTERNAL);
  });
  (async (): Promise<number> => {
    const parsed = program.parse ? await program.parse(argv) : parseHotPathArgs(argv, program.name);
    if (parsed.output !== undefined) {
      writeStdout(parsed.output);
      return ExitCode.OK;
    }
    const page = (await program.helpPage?.(parsed)) ?? (parsed.help ? helpPages().HELP[program.help] : undefined);
    if (page !== undefined) {
      writeStdout(page);
      return ExitCode.OK;
    }
    if (parsed.version) {
      writeStdout(`${program.name} (walmgr-ts) ${VERSION}\n`);
      return ExitCode.OK;
    }
    log.configure({ verbosity: parsed.quiet ? 0 : 2 + parsed.verbose });
    const [configFile, ...rest] = parsed.positional;
    if (configFile === undefined) {
      throw new WalmgrError(
        `${program.name}: missing CONFIG argument`,
        ExitCode.USAGE,
        `usage: see ${program.name} --help`,
      );
    }
    if (typeof program.positionals === "function") program.positionals(rest);
    else checkPositionals(rest, { command: program.name, ...program.positionals });
    const config = loadConfig(configFile);
    const logfile = config.path("logfile");
    log.configure({ jobName: config.jobName, ...(logfile ? { logfile } : {}) });
    for (const w of config.warnings) log.warn(w);
    const ctx: Context = {
      config,
      log,
      dryRun: parsed.dryRun,
      json: parsed.json,
      args: rest,
      options: parsed.options,
      out: (text) => writeStdout(text.endsWith("\n") ? text : `${text}\n`),
      act: async (what, fn) => {
        if (parsed.dryRun) {
          writeStdout(`[not really] ${what}\n`);
          return undefined;
        }
        log.debug(what);
        return await fn();
      },
      onCleanup: (fn) => {
        cleanups.add(fn);
        return () => cleanups.delete(fn);
      },
      onStopSignal: (fn) => {
        stopHandler = fn;
        return () => {
          if (stopHandler === fn) stopHandler = undefined;
        };
      },
    };
    const code = await program.run(ctx, parsed);
    return code ?? ExitCode.OK;
  })().then(
    (code) => finish(code),
    (err: unknown) => {
      const { text, code } = describeError(err);
      log.error(text);
      // A monitoring system reads stdout and the plugin exit codes only: a `check --nagios` that
      // cannot run (bad config, bad arguments, a bug) is UNKNOWN (3), with the reason on the one
      // line. (--nagios given to another command is that command's usage error, exit 2.)
      if (argv.includes("--nagios") && argv.includes("check")) {
        writeStdout(`WALMGR UNKNOWN - ${(text.split("\n")[0] ?? "").replace(/\|/g, " ")}\n`);
        finish(3);
        return;
      }
      finish(code);
    },
  );
}
