/**
 * Command-line parsing: util.parseArgs for wal-archive and wal-restore (cli/args.ts), yargs for
 * wal-ctl, wal-sync and wal-backup (cli/parse.ts), and the positional counts both share. In
 * process; test/unit/cli.test.ts spawns the executables for the exit codes.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkPositionals, HOT_PATH_FLAGS, parseHotPathArgs, type ParsedArgs } from "../../src/cli/args";
import { COMMAND_DOCS, GENERAL_OPTIONS, TOOL_OPTIONS } from "../../src/cli/command-docs";
import { checkCtlArgs, CTL_COMMAND_ARGS, type CtlCommand } from "../../src/cli/commands";
import {
  commandOptions,
  optionSpec,
  parseCtlArgs,
  parseToolArgs,
  positionalIndexes,
  type OptionSpec,
} from "../../src/cli/parse";
import { closest, editDistance } from "../../src/suggest";
import { ExitCode, UsageError } from "../../src/errors";

const CTL_COMMANDS = Object.keys(CTL_COMMAND_ARGS) as CtlCommand[];

/** The UsageError `fn` throws (sync or async), checked against `message` and `hint`. */
async function usageError(fn: () => unknown, message: RegExp, hint?: RegExp): Promise<UsageError> {
  let caught: unknown;
  try {
    await fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof UsageError, `expected a UsageError, got ${String(caught)}`);
  assert.equal(caught.exitCode, ExitCode.USAGE);
  assert.match(caught.message, message);
  if (hint) assert.match(caught.hint ?? "", hint);
  return caught;
}

const hot = (argv: string[]): ParsedArgs => parseHotPathArgs(argv, "wal-archive");

describe("wal-archive, wal-restore: util.parseArgs", () => {
  test("no arguments gives the defaults", () => {
    const a = hot([]);
    assert.deepEqual(a.positional, []);
    assert.equal(a.options.size, 0);
    assert.deepEqual([a.help, a.version, a.quiet, a.verbose, a.dryRun, a.json], [false, false, false, 0, false, false]);
  });

  test("positional arguments keep their order; options may come between them", () => {
    const a = hot(["slave.ini", "-v", "000000010000000000000001", "--not-really", "pg_wal/RECOVERYXLOG"]);
    assert.deepEqual(a.positional, ["slave.ini", "000000010000000000000001", "pg_wal/RECOVERYXLOG"]);
    assert.equal(a.verbose, 1);
    assert.equal(a.dryRun, true);
  });

  test("the general options, short and long, bundled, -v repeated", () => {
    assert.equal(hot(["-h"]).help, true);
    assert.equal(hot(["--help"]).help, true);
    assert.equal(hot(["-q"]).quiet, true);
    assert.equal(hot(["--quiet"]).quiet, true);
    assert.equal(hot(["-n"]).dryRun, true);
    assert.equal(hot(["--version"]).version, true);
    const a = hot(["-qv", "cfg.ini"]);
    assert.equal(a.quiet, true);
    assert.equal(a.verbose, 1);
    assert.deepEqual(a.positional, ["cfg.ini"]);
    const b = hot(["-vvn", "--verbose"]);
    assert.equal(b.verbose, 3);
    assert.equal(b.dryRun, true);
  });

  test("the flags are the general options of the pages", () => {
    assert.deepEqual(
      HOT_PATH_FLAGS,
      GENERAL_OPTIONS.map(([flag]) => flag),
    );
    assert.deepEqual(TOOL_OPTIONS.walArchive, []);
    assert.deepEqual(TOOL_OPTIONS.walRestore, []);
  });

  test("an unknown option is a usage error naming it, with what the executable takes", async () => {
    await usageError(() => hot(["--bogus"]), /^unknown option --bogus$/, /wal-archive takes -h, --help.*--version/);
    await usageError(() => hot(["-qx"]), /^unknown option -x$/);
    await usageError(() => hot(["--verbos"]), /unknown option --verbos/, /did you mean --verbose\?/);
    // Options of other executables are not taken here: PostgreSQL passes none.
    await usageError(() => hot(["--json"]), /unknown option --json/);
    await usageError(() => hot(["--daemon"]), /unknown option --daemon/);
    await usageError(() => hot(["--constructor"]), /unknown option --constructor/);
    await usageError(() => hot(["--__proto__"]), /unknown option --__proto__/);
  });

  test("a switch given a value is a usage error", async () => {
    await usageError(() => hot(["--quiet=1"]), /option --quiet takes no value/);
  });

  test("-- ends the options; a lone - is a positional", () => {
    const a = hot(["-v", "--", "-q", "--bogus", "--", "x"]);
    assert.equal(a.verbose, 1);
    assert.equal(a.quiet, false);
    assert.deepEqual(a.positional, ["-q", "--bogus", "--", "x"]);
    assert.deepEqual(hot(["-", "cfg"]).positional, ["-", "cfg"]);
  });

  test("the argv array is not modified", () => {
    const argv = ["-qv", "cfg", "p", "f"];
    hot(argv);
    assert.deepEqual(argv, ["-qv", "cfg", "p", "f"]);
  });
});

describe("options from the pages (command-docs.ts)", () => {
  test("optionSpec reads the documented forms", () => {
    assert.deepEqual(optionSpec(["-d, --detach", ""]), { long: "detach", short: "d", takesValue: false });
    assert.deepEqual(optionSpec(["--timeout SECONDS", ""]), { long: "timeout", takesValue: true });
    assert.deepEqual(optionSpec(["--json", ""]), { long: "json", takesValue: false });
    assert.deepEqual(optionSpec(["-q, --quiet", ""]), { long: "quiet", short: "q", takesValue: false });
  });

  test("an option is a switch everywhere or takes a value everywhere (the positionals are found before the command)", () => {
    const seen = new Map<string, boolean>();
    const all: OptionSpec[] = [
      ...GENERAL_OPTIONS.map(optionSpec),
      ...Object.values(TOOL_OPTIONS).flat().map(optionSpec),
      ...Object.values(COMMAND_DOCS).flatMap((d) => d.options.map(optionSpec)),
    ];
    for (const o of all) {
      assert.notEqual(
        seen.get(o.long),
        !o.takesValue,
        `--${o.long} is a switch in one place and takes a value in another`,
      );
      seen.set(o.long, o.takesValue);
    }
  });

  test("the options a command takes are the ones its page lists", () => {
    assert.deepEqual(
      commandOptions("check").map((o) => o.long),
      ["timeout", "json", "nagios"],
    );
    assert.deepEqual(
      commandOptions("status").map((o) => o.long),
      ["json", "prometheus"],
    );
    assert.deepEqual(commandOptions("pause"), []);
    assert.ok(commandOptions("restore").some((o) => o.long === "target-time" && o.takesValue));
  });

  test("positionalIndexes skips options and the values of value options", () => {
    assert.deepEqual(positionalIndexes(["-v", "x.ini", "--timeout", "5", "check", "--json"]), [1, 4]);
    assert.deepEqual(positionalIndexes(["x.ini", "restore", "--target-time=2026-01-01", "set"]), [0, 1, 3]);
    assert.deepEqual(positionalIndexes(["-", "--", "-q"]), [0, 2]);
  });
});

describe("wal-ctl: yargs, one command module per command", () => {
  test("CONFIG, then the command and its arguments, in the order typed", async () => {
    const a = await parseCtlArgs(["slave.ini", "restore", "data.master.1", "/srv/pitr"]);
    assert.deepEqual(a.positional, ["slave.ini", "restore", "data.master.1", "/srv/pitr"]);
    assert.equal(a.options.size, 0);
  });

  test("general options anywhere: before CONFIG, between, after", async () => {
    const a = await parseCtlArgs(["-q", "master.ini", "-vv", "backup", "--not-really", "--clear-stale-lock"]);
    assert.deepEqual(a.positional, ["master.ini", "backup"]);
    assert.equal(a.quiet, true);
    assert.equal(a.verbose, 2);
    assert.equal(a.dryRun, true);
    assert.equal(a.options.get("clear-stale-lock"), "true");
  });

  test("a command's options may come before CONFIG too", async () => {
    const a = await parseCtlArgs(["--timeout", "30", "master.ini", "check", "--nagios"]);
    assert.deepEqual(a.positional, ["master.ini", "check"]);
    assert.equal(a.options.get("timeout"), "30");
    assert.equal(a.options.get("nagios"), "true");
  });

  test("--opt value and --opt=value; a value may contain '=' and stays a string", async () => {
    const a = await parseCtlArgs(["s.ini", "restore", "--target-time=2024-01-02 03:04:05+00", "--target-xid", "0012"]);
    assert.equal(a.options.get("target-time"), "2024-01-02 03:04:05+00");
    assert.equal(a.options.get("target-xid"), "0012");
    const b = await parseCtlArgs(["s.ini", "restore", "--target-name=a=b"]);
    assert.equal(b.options.get("target-name"), "a=b");
  });

  test("a repeated option keeps the last value", async () => {
    const a = await parseCtlArgs(["s.ini", "restore", "--target-xid", "1", "--target-xid=2"]);
    assert.equal(a.options.get("target-xid"), "2");
  });

  test("--json is the json flag, not an option of the map", async () => {
    const a = await parseCtlArgs(["m.ini", "status", "--json"]);
    assert.equal(a.json, true);
    assert.equal(a.options.has("json"), false);
  });

  test("every command takes each option its page lists, and the general ones", async () => {
    for (const name of CTL_COMMANDS) {
      const spec = CTL_COMMAND_ARGS[name];
      const args = Array.from({ length: spec.max }, (_, i) => `a${i}`);
      for (const o of commandOptions(name)) {
        const typed = o.takesValue ? [`--${o.long}`, "1"] : [`--${o.long}`];
        const a = await parseCtlArgs(["c.ini", name, ...args, ...typed, "-q", "-v", "-n"]);
        assert.deepEqual(a.positional, ["c.ini", name, ...args]);
        if (o.long === "json") assert.equal(a.json, true);
        else assert.equal(a.options.get(o.long), o.takesValue ? "1" : "true", `${name} --${o.long}`);
        if (o.short !== undefined) {
          const s = await parseCtlArgs(["c.ini", name, ...args, `-q${o.short}`]);
          assert.equal(s.options.get(o.long), "true", `${name} -${o.short}`);
        }
      }
    }
  });

  test("a command refuses the options of other commands, naming the command that has it", async () => {
    await usageError(
      () => parseCtlArgs(["m.ini", "status", "--nagios"]),
      /^status: unknown option --nagios$/,
      /--nagios is an option of check, not of status/,
    );
    await usageError(
      () => parseCtlArgs(["m.ini", "pause", "--target-time", "x"]),
      /pause: unknown option --target-time/,
    );
    await usageError(() => parseCtlArgs(["m.ini", "sync", "-d"]), /sync: unknown option -d/);
    await usageError(() => parseCtlArgs(["m.ini", "backup", "--json"]), /backup: unknown option --json/);
  });

  test("an unknown option: did you mean the nearest of the command's", async () => {
    await usageError(
      () => parseCtlArgs(["s.ini", "restore", "--target-tme", "2026-01-01"]),
      /^restore: unknown option --target-tme$/,
      /did you mean --target-time\? wal-ctl help restore lists the options/,
    );
    await usageError(() => parseCtlArgs(["s.ini", "status", "--prom"]), /unknown option --prom/, /--prometheus\?/);
    await usageError(
      () => parseCtlArgs(["s.ini", "status", "--nagio"]),
      /unknown option --nagio/,
      /--nagios is an option of check/,
    );
    await usageError(() => parseCtlArgs(["s.ini", "pause", "-x"]), /pause: unknown option -x/, /wal-ctl help pause/);
    await usageError(() => parseCtlArgs(["s.ini", "pause", "-qx"]), /pause: unknown option -x/);
  });

  test("an option with no command is refused, saying which commands take it", async () => {
    await usageError(
      () => parseCtlArgs(["m.ini", "--json"]),
      /^unknown option --json$/,
      /--json is an option of status, check, listbackups, verify: give it after the command/,
    );
    await usageError(() => parseCtlArgs(["--bogus"]), /^unknown option --bogus$/, /wal-ctl --help/);
  });

  test("a value option without its value, a switch with one", async () => {
    await usageError(() => parseCtlArgs(["m.ini", "check", "--timeout"]), /^check: option --timeout needs a value$/);
    await usageError(
      () => parseCtlArgs(["s.ini", "restore", "--target-name", "-x"]),
      /option --target-name needs a value/,
      /given as --target-name=VALUE/,
    );
    assert.equal((await parseCtlArgs(["s.ini", "restore", "--target-name=-x"])).options.get("target-name"), "-x");
    await usageError(() => parseCtlArgs(["m.ini", "check", "--json=1"]), /^check: option --json takes no value$/);
    await usageError(() => parseCtlArgs(["m.ini", "check", "--quiet=yes"]), /option --quiet takes no value/);
  });

  test("a switch does not swallow the next word", async () => {
    const a = await parseCtlArgs(["s.ini", "restore", "--target-exclusive", "false"]);
    assert.deepEqual(a.positional, ["s.ini", "restore", "false"]);
    assert.equal(a.options.get("target-exclusive"), "true");
  });

  test("no --no-X negations and no camelCase twins", async () => {
    await usageError(() => parseCtlArgs(["m.ini", "status", "--no-json"]), /unknown option --no-json/);
    await usageError(() => parseCtlArgs(["m.ini", "backup", "--clearStaleLock"]), /unknown option --clearStaleLock/);
  });

  test("-- ends the options", async () => {
    const a = await parseCtlArgs(["s.ini", "restore", "--", "-set-with-dash"]);
    assert.deepEqual(a.positional, ["s.ini", "restore", "-set-with-dash"]);
  });

  test("a misspelt command: yargs' recommendation, and the list", async () => {
    const err = await usageError(
      () => parseCtlArgs(["m.ini", "stauts"]),
      /^unknown command "stauts"$/,
      /^did you mean status\? commands: setup, stop,/,
    );
    for (const name of CTL_COMMANDS) assert.match(err.hint ?? "", new RegExp(`\\b${name}\\b`));
    await usageError(() => parseCtlArgs(["m.ini", "listbackup"]), /unknown command/, /did you mean listbackups\?/);
    await usageError(() => parseCtlArgs(["m.ini", "frobnicate"]), /unknown command "frobnicate"/, /^commands: /);
  });

  test("Object's property names are unknown commands, not a TypeError", async () => {
    for (const name of ["toString", "__proto__", "constructor", "hasOwnProperty", "valueOf"]) {
      await usageError(() => parseCtlArgs(["x.ini", name]), new RegExp(`unknown command "${name}"`));
      await usageError(() => parseCtlArgs(["x.ini", "status", `--${name}`]), new RegExp(`unknown option --${name}`));
    }
  });

  test("too many arguments: checkCtlArgs' message, naming the extra one", async () => {
    await usageError(
      () => parseCtlArgs(["m.ini", "pause", "extra"]),
      /wal-ctl pause: unexpected extra argument "extra" \(wal-ctl pause takes no arguments\)/,
      /usage: wal-ctl CONFIG pause/,
    );
    await usageError(() => parseCtlArgs(["s.ini", "restore", "a", "b", "c"]), /wal-ctl restore: .*"c"/);
  });

  test("a command alone: its page with --help, else a missing CONFIG", async () => {
    const a = await parseCtlArgs(["check", "--help"]);
    assert.equal(a.help, true);
    assert.deepEqual(a.positional, ["check"]);
    await usageError(() => parseCtlArgs(["status"]), /^status: missing CONFIG$/, /usage: wal-ctl CONFIG status/);
    await usageError(() => parseCtlArgs(["xarchive"]), /xarchive: missing CONFIG/, /wal-ctl CONFIG xarchive %p %f/);
  });

  test("CONFIG alone parses (the entry point says the command is missing); --help and --version pass", async () => {
    assert.deepEqual((await parseCtlArgs(["m.ini"])).positional, ["m.ini"]);
    assert.equal((await parseCtlArgs(["m.ini", "--help"])).help, true);
    assert.equal((await parseCtlArgs(["--version"])).version, true);
    assert.equal((await parseCtlArgs(["m.ini", "status", "--version"])).version, true);
  });

  test("help is answered from the pages: the words are passed on as typed", async () => {
    assert.deepEqual((await parseCtlArgs(["help", "restore"])).positional, ["help", "restore"]);
    assert.deepEqual((await parseCtlArgs(["m.ini", "help", "check"])).positional, ["m.ini", "help", "check"]);
  });
});

describe("wal-ctl completion (yargs' .completion())", () => {
  const complete = async (...words: string[]): Promise<string[]> => {
    const out = (await parseCtlArgs(["--get-yargs-completions", "wal-ctl", ...words])).output ?? "";
    return out.split("\n").filter((l) => l !== "");
  };

  test("the script", async () => {
    const script = (await parseCtlArgs(["completion"])).output ?? "";
    assert.match(script, /wal-ctl --get-yargs-completions/);
    assert.match(script, /complete .*wal-ctl/);
  });

  test("completion stands alone, and the completion key is the script's first argument only", async () => {
    await usageError(
      () => parseCtlArgs(["m.ini", "completion"]),
      /completion takes no CONFIG/,
      /usage: wal-ctl completion/,
    );
    await usageError(() => parseCtlArgs(["completion", "x"]), /completion takes no CONFIG/);
    await usageError(
      () => parseCtlArgs(["m.ini", "status", "--get-yargs-completions"]),
      /unknown option --get-yargs-completions/,
    );
  });

  test("after CONFIG: the commands (the internal ones are not offered), and help", async () => {
    const all = await complete("m.ini", "");
    for (const name of CTL_COMMANDS.filter((n) => COMMAND_DOCS[n].internal !== true))
      assert.ok(all.includes(name), name);
    assert.ok(all.includes("help"));
    assert.ok(!all.includes("xarchive"));
    assert.deepEqual(await complete("m.ini", "st"), ["stop", "status"]);
    assert.deepEqual(await complete("-q", "m.ini", "list"), ["listbackups"]);
  });

  test("CONFIG and a command's SET or DST: nothing, so the shell completes file names", async () => {
    assert.deepEqual(await complete(""), []);
    assert.deepEqual(await complete("m."), []);
    assert.deepEqual(await complete("s.ini", "restore", ""), []);
    assert.deepEqual(await complete("m.ini", "check", "--timeout", ""), []);
  });

  test("options: the command's own and the general ones, not another command's", async () => {
    const opts = await complete("m.ini", "check", "--");
    for (const o of ["--timeout", "--json", "--nagios", "--quiet", "--help", "--not-really"])
      assert.ok(opts.includes(o), o);
    assert.ok(!opts.includes("--prometheus"));
    assert.deepEqual(await complete("m.ini", "status", "--p"), ["--prometheus"]);
    assert.deepEqual(await complete("s.ini", "restore", "--target-a"), ["--target-action"]);
    assert.ok(!(await complete("m.ini", "status", "--json", "--")).includes("--json"), "given already");
  });

  test("after help: the commands", async () => {
    assert.deepEqual(await complete("help", "ver"), ["verify"]);
  });
});

describe("wal-sync, wal-backup: yargs", () => {
  test("their own options, from their pages", async () => {
    const a = parseToolArgs("wal-sync", ["m.ini", "--daemon"]);
    assert.deepEqual(a.positional, ["m.ini"]);
    assert.equal(a.options.get("daemon"), "true");
    const b = parseToolArgs("wal-sync", ["-qd", "m.ini"]);
    assert.equal(b.quiet, true);
    assert.equal(b.options.get("detach"), "true");
    assert.equal(parseToolArgs("wal-sync", ["m.ini", "--detach"]).options.get("detach"), "true");
    assert.equal(parseToolArgs("wal-backup", ["m.ini", "--clear-stale-lock"]).options.get("clear-stale-lock"), "true");
    const c = parseToolArgs("wal-backup", ["-vn", "m.ini", "extra"]);
    // The entry point counts the positionals (checkPositionals names "extra").
    assert.deepEqual(c.positional, ["m.ini", "extra"]);
    assert.equal(c.verbose, 1);
    assert.equal(c.dryRun, true);
  });

  test("anything else is refused with the nearest option", async () => {
    await usageError(
      () => parseToolArgs("wal-sync", ["m.ini", "--deamon"]),
      /^unknown option --deamon$/,
      /did you mean --daemon\? wal-sync --help/,
    );
    await usageError(
      () => parseToolArgs("wal-backup", ["m.ini", "--clear-stale"]),
      /unknown option --clear-stale/,
      /--clear-stale-lock\?/,
    );
    await usageError(() => parseToolArgs("wal-backup", ["m.ini", "--daemon"]), /unknown option --daemon/);
    await usageError(() => parseToolArgs("wal-backup", ["m.ini", "--json"]), /unknown option --json/);
    await usageError(() => parseToolArgs("wal-sync", ["m.ini", "--daemon=yes"]), /option --daemon takes no value/);
  });
});

describe("positional argument counts", () => {
  const archive = { command: "wal-archive", min: 2, max: 2, usage: "wal-archive CONFIG %p %f" };
  const restore = { command: "wal-restore", min: 2, max: 3, usage: "wal-restore CONFIG %f %p [%r]" };

  test("the right number of arguments passes", () => {
    checkPositionals(["pg_wal/x", "x"], archive);
    checkPositionals(["x", "pg_wal/RECOVERYXLOG"], restore);
    checkPositionals(["x", "pg_wal/RECOVERYXLOG", "y"], restore);
  });

  test("too few is a usage error naming the command, with its usage as the hint", async () => {
    await usageError(() => checkPositionals(["pg_wal/x"], archive), /wal-archive: missing/, /%p %f/);
  });

  test("an extra argument is a usage error naming it", async () => {
    await usageError(
      () => checkPositionals(["p", "f", "extra"], archive),
      /wal-archive: unexpected extra argument "extra"/,
    );
    await usageError(() => checkPositionals(["f", "p", "r", "more", "andmore"], restore), /"more" "andmore"/);
    await usageError(
      () => checkPositionals(["x"], { command: "wal-sync", min: 0, max: 0, usage: "wal-sync CONFIG" }),
      /wal-sync: unexpected extra argument "x" \(wal-sync takes no arguments\)/,
    );
  });

  test("wal-ctl: each command's count, the extra argument named", async () => {
    await usageError(() => checkCtlArgs(["pause", "extra"]), /wal-ctl pause: unexpected extra argument "extra"/);
    for (const name of CTL_COMMANDS) {
      const spec = CTL_COMMAND_ARGS[name];
      const enough = Array.from({ length: spec.max }, (_, i) => `a${i}`);
      checkCtlArgs([name, ...enough]);
      await usageError(() => checkCtlArgs([name, ...enough, "surplus"]), new RegExp(`wal-ctl ${name}: .*"surplus"`));
    }
  });

  test("wal-ctl: restore takes [SET [DST]], verify [SET], xrestore %f %p [%r], xarchive %p %f", async () => {
    checkCtlArgs(["restore"]);
    checkCtlArgs(["restore", "data.master.0"]);
    checkCtlArgs(["restore", "data.master.0", "/tmp/dst"]);
    await usageError(() => checkCtlArgs(["restore", "data.master.0", "/tmp/dst", "x"]), /"x"/);
    checkCtlArgs(["verify", "data.master"]);
    await usageError(() => checkCtlArgs(["verify", "data.master", "data.master.0"]), /"data\.master\.0"/);
    await usageError(() => checkCtlArgs(["xrestore", "f"]), /missing/);
    checkCtlArgs(["xrestore", "f", "p", "r"]);
    await usageError(() => checkCtlArgs(["xarchive", "p"]), /missing/);
    await usageError(() => checkCtlArgs(["xarchive", "p", "f", "x"]), /"x"/);
  });

  test("wal-ctl: a missing or unknown command is a usage error (no prototype names either)", async () => {
    await usageError(() => checkCtlArgs([]), /missing COMMAND/);
    await usageError(() => checkCtlArgs(["bogus"]), /unknown command "bogus"/);
    await usageError(() => checkCtlArgs(["constructor"]), /unknown command "constructor"/);
  });
});

describe("did you mean", () => {
  test("edit distance counts a swap of neighbours as one edit", () => {
    assert.equal(editDistance("status", "status"), 0);
    assert.equal(editDistance("stauts", "status"), 1);
    assert.equal(editDistance("", "abc"), 3);
    assert.equal(editDistance("kitten", "sitting"), 3);
  });

  test("closest: near names, a unique prefix, nothing for short or far names", () => {
    assert.equal(closest("stauts", ["stop", "status", "setup"]), "status");
    assert.equal(closest("prom", ["json", "prometheus"]), "prometheus");
    assert.equal(closest("target", ["target-time", "target-lsn"]), undefined);
    assert.equal(closest("x", ["q", "v"]), undefined);
    assert.equal(closest("frobnicate", ["status", "check"]), undefined);
  });
});
