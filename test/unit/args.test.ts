/** Command-line parsing shared by every executable. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { checkCtlArgs, checkPositionals, CTL_COMMAND_ARGS, parseArgs } from "../../src/cli/args";
import { ExitCode, UsageError } from "../../src/errors";

function usageError(fn: () => unknown, pattern?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.equal(err.exitCode, ExitCode.USAGE);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

describe("parseArgs", () => {
  test("no arguments gives the defaults", () => {
    const a = parseArgs([]);
    assert.deepEqual(a.positional, []);
    assert.equal(a.options.size, 0);
    assert.equal(a.help, false);
    assert.equal(a.version, false);
    assert.equal(a.quiet, false);
    assert.equal(a.verbose, 0);
    assert.equal(a.dryRun, false);
    assert.equal(a.json, false);
  });

  test("positional arguments keep their order", () => {
    const a = parseArgs(["master.ini", "backup", "extra"]);
    assert.deepEqual(a.positional, ["master.ini", "backup", "extra"]);
  });

  test("common short flags", () => {
    assert.equal(parseArgs(["-h"]).help, true);
    assert.equal(parseArgs(["-q"]).quiet, true);
    assert.equal(parseArgs(["-v"]).verbose, 1);
    assert.equal(parseArgs(["-n"]).dryRun, true);
  });

  test("common long flags", () => {
    const a = parseArgs(["--help", "--quiet", "--verbose", "--not-really", "--version", "--json"]);
    assert.equal(a.help, true);
    assert.equal(a.quiet, true);
    assert.equal(a.verbose, 1);
    assert.equal(a.dryRun, true);
    assert.equal(a.version, true);
    assert.equal(a.json, true);
    assert.equal(a.options.size, 0);
  });

  test("bundled short flags", () => {
    const a = parseArgs(["-qv", "cfg.ini"]);
    assert.equal(a.quiet, true);
    assert.equal(a.verbose, 1);
    assert.deepEqual(a.positional, ["cfg.ini"]);
    const b = parseArgs(["-vvn"]);
    assert.equal(b.verbose, 2);
    assert.equal(b.dryRun, true);
  });

  test("flags may come between positionals", () => {
    const a = parseArgs(["slave.ini", "-v", "restore", "--not-really", "data.master.0"]);
    assert.deepEqual(a.positional, ["slave.ini", "restore", "data.master.0"]);
    assert.equal(a.verbose, 1);
    assert.equal(a.dryRun, true);
  });

  test("--opt=value and --opt value", () => {
    const spec = { valueOptions: ["target-time", "target-lsn"] };
    const a = parseArgs(["--target-time=2024-01-02 03:04:05+00", "cfg"], spec);
    assert.equal(a.options.get("target-time"), "2024-01-02 03:04:05+00");
    assert.deepEqual(a.positional, ["cfg"]);
    const b = parseArgs(["--target-lsn", "0/3000028", "cfg"], spec);
    assert.equal(b.options.get("target-lsn"), "0/3000028");
    assert.deepEqual(b.positional, ["cfg"]);
  });

  test("a value may contain '=' and may look like an option", () => {
    const spec = { valueOptions: ["target-name"] };
    assert.equal(parseArgs(["--target-name=a=b"], spec).options.get("target-name"), "a=b");
    assert.equal(parseArgs(["--target-name", "-q"], spec).options.get("target-name"), "-q");
    assert.equal(parseArgs(["--target-name="], spec).options.get("target-name"), "");
  });

  test("a repeated option keeps the last value", () => {
    const a = parseArgs(["--target-xid", "1", "--target-xid=2"], { valueOptions: ["target-xid"] });
    assert.equal(a.options.get("target-xid"), "2");
  });

  test("a value option without its value is a usage error", () => {
    usageError(() => parseArgs(["--target-time"], { valueOptions: ["target-time"] }), /target-time/);
  });

  test("extra flags and short aliases", () => {
    const spec = {
      flags: ["daemon", "clear-stale-lock"],
      valueOptions: ["target-action"],
      short: { d: "daemon", a: "target-action" },
    };
    const a = parseArgs(["-d", "--clear-stale-lock", "-a", "pause", "cfg"], spec);
    assert.equal(a.options.get("daemon"), "true");
    assert.equal(a.options.get("clear-stale-lock"), "true");
    assert.equal(a.options.get("target-action"), "pause");
    assert.deepEqual(a.positional, ["cfg"]);
    const b = parseArgs(["-qd"], spec);
    assert.equal(b.quiet, true);
    assert.equal(b.options.get("daemon"), "true");
    usageError(() => parseArgs(["-a"], spec), /-a/);
  });

  test("an unknown long option is a usage error naming it", () => {
    usageError(() => parseArgs(["--bogus"]), /--bogus/);
    usageError(() => parseArgs(["--daemon"]), /--daemon/);
  });

  test("an unknown short option is a usage error naming it", () => {
    usageError(() => parseArgs(["-x"]), /-x/);
    usageError(() => parseArgs(["-qx"]), /-x/);
  });

  test("a flag given a value is a usage error", () => {
    usageError(() => parseArgs(["--quiet=1"]), /--quiet/);
  });

  test("-- ends the options", () => {
    const a = parseArgs(["-v", "--", "-q", "--bogus", "--", "x"]);
    assert.equal(a.verbose, 1);
    assert.equal(a.quiet, false);
    assert.deepEqual(a.positional, ["-q", "--bogus", "--", "x"]);
  });

  test("a lone - is a positional", () => {
    assert.deepEqual(parseArgs(["-", "cfg"]).positional, ["-", "cfg"]);
  });

  test("the argv array is not modified", () => {
    const argv = ["-qv", "--target-time", "x", "cfg"];
    const copy = [...argv];
    parseArgs(argv, { valueOptions: ["target-time"] });
    assert.deepEqual(argv, copy);
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

  test("too few is a usage error naming the command, with its usage as the hint", () => {
    assert.throws(
      () => checkPositionals(["pg_wal/x"], archive),
      (err: unknown) =>
        err instanceof UsageError && /wal-archive: missing/.test(err.message) && /%p %f/.test(err.hint ?? ""),
    );
  });

  test("an extra argument is a usage error naming it", () => {
    usageError(() => checkPositionals(["p", "f", "extra"], archive), /wal-archive: unexpected extra argument "extra"/);
    usageError(() => checkPositionals(["f", "p", "r", "more", "andmore"], restore), /"more" "andmore"/);
    usageError(
      () => checkPositionals(["x"], { command: "wal-sync", min: 0, max: 0, usage: "wal-sync CONFIG" }),
      /wal-sync: unexpected extra argument "x" \(wal-sync takes no arguments\)/,
    );
  });

  test("wal-ctl: a command without arguments refuses one, naming it and the command", () => {
    usageError(() => checkCtlArgs(["pause", "extra"]), /wal-ctl pause: unexpected extra argument "extra"/);
    for (const name of Object.keys(CTL_COMMAND_ARGS)) {
      const spec = CTL_COMMAND_ARGS[name as keyof typeof CTL_COMMAND_ARGS];
      const enough = Array.from({ length: spec.max }, (_, i) => `a${i}`);
      checkCtlArgs([name, ...enough]);
      usageError(() => checkCtlArgs([name, ...enough, "surplus"]), new RegExp(`wal-ctl ${name}: .*"surplus"`));
    }
  });

  test("wal-ctl: restore takes [SET [DST]], verify [SET], xrestore %f %p [%r], xarchive %p %f", () => {
    checkCtlArgs(["restore"]);
    checkCtlArgs(["restore", "data.master.0"]);
    checkCtlArgs(["restore", "data.master.0", "/tmp/dst"]);
    usageError(() => checkCtlArgs(["restore", "data.master.0", "/tmp/dst", "x"]), /"x"/);
    checkCtlArgs(["verify", "data.master"]);
    usageError(() => checkCtlArgs(["verify", "data.master", "data.master.0"]), /"data\.master\.0"/);
    usageError(() => checkCtlArgs(["xrestore", "f"]), /missing/);
    checkCtlArgs(["xrestore", "f", "p", "r"]);
    usageError(() => checkCtlArgs(["xarchive", "p"]), /missing/);
    usageError(() => checkCtlArgs(["xarchive", "p", "f", "x"]), /"x"/);
  });

  test("wal-ctl: a missing or unknown command is a usage error (no prototype names either)", () => {
    usageError(() => checkCtlArgs([]), /missing COMMAND/);
    usageError(() => checkCtlArgs(["bogus"]), /unknown command "bogus"/);
    usageError(() => checkCtlArgs(["constructor"]), /unknown command "constructor"/);
  });
});
