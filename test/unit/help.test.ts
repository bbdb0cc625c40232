/**
 * --help reads like the manual: every executable and every wal-ctl command has a page with the
 * man sections, reachable as `wal-ctl help COMMAND`, `wal-ctl COMMAND --help` and
 * `wal-ctl CONFIG COMMAND --help`, without a config file. Most of it is checked on the renderer
 * in-process; the spawns check that the real executables route to the same pages.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { COMMAND_DOCS, type DocumentedCommand } from "../../src/cli/command-docs";
import { CTL_COMMAND_ARGS, type CtlCommand } from "../../src/cli/commands";
import { commandPage, ctlHelp, HELP, isDocumentedCommand } from "../../src/cli/help";
import { ExitCode, UsageError } from "../../src/errors";
import { binPath } from "../helpers/env";

const SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS"];
const CTL_COMMANDS = Object.keys(CTL_COMMAND_ARGS) as CtlCommand[];
const ALL_COMMANDS: DocumentedCommand[] = [...CTL_COMMANDS, "xhelper"];
/** A config path that does not exist: help must never read CONFIG. */
const NO_CONFIG = "/nonexistent/walmgr-help-test/master.ini";

/** The page's sections, as the headings at the start of a line. */
function sections(page: string): string[] {
  return page.split("\n").filter((l) => /^[A-Z][A-Z ()]*$/.test(l));
}

function assertManPage(page: string, what: string): void {
  const have = sections(page);
  for (const s of SECTIONS) assert.ok(have.includes(s), `${what}: no ${s} section (has ${have.join(", ")})`);
  // In the manual's order.
  const order = SECTIONS.map((s) => have.indexOf(s));
  assert.deepEqual(
    order,
    [...order].sort((a, b) => a - b),
    `${what}: sections out of order`,
  );
  for (const s of SECTIONS) {
    const body = new RegExp(`(?:^|\\n)${s}\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(page)?.[1] ?? "";
    assert.notEqual(body.trim(), "", `${what}: ${s} is empty`);
  }
}

function usageError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.equal(err.exitCode, ExitCode.USAGE);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("executables' pages", () => {
  for (const [key, page] of Object.entries(HELP)) {
    test(`${key} has the manual's sections`, () => assertManPage(page, key));
  }
});

describe("wal-ctl command pages (data in cli/command-docs.ts)", () => {
  test("every command of CTL_COMMAND_ARGS, and xhelper, is documented; nothing else", () => {
    assert.deepEqual(Object.keys(COMMAND_DOCS).sort(), [...ALL_COMMANDS].sort());
  });

  for (const name of CTL_COMMANDS) {
    test(`${name}: the synopsis' arguments are the ones the parser takes`, () => {
      assert.equal(COMMAND_DOCS[name].args, CTL_COMMAND_ARGS[name].args);
    });
  }

  for (const name of ALL_COMMANDS) {
    test(`${name}: its page has the sections, its name, synopsis and options`, () => {
      const doc = COMMAND_DOCS[name];
      const page = commandPage(name);
      assertManPage(page, name);
      assert.match(page, new RegExp(`^NAME\\n {4}wal-ctl-${name} - `, "m"));
      assert.ok(page.includes(`CONFIG ${name}`), `${name}: synopsis does not show CONFIG ${name}`);
      for (const [flag] of doc.options) assert.ok(page.includes(flag), `${name}: option ${flag} not on the page`);
      assert.ok(doc.roles.length > 0, `${name}: no role`);
      assert.ok(doc.examples.length > 0, `${name}: no example`);
    });
  }

  test("xhelper's page lists the helper's requests", () => {
    assert.match(commandPage("xhelper"), /put PATH EXCLUSIVE PADTO/);
  });

  test("the overview lists every command, with its section per role", () => {
    const page = HELP.walCtl;
    assertManPage(page, "wal-ctl");
    for (const name of ALL_COMMANDS) assert.match(page, new RegExp(`^ {4}${name}\\b`, "m"), `overview lacks ${name}`);
    for (const s of ["MASTER COMMANDS", "SLAVE COMMANDS", "MASTER OR SLAVE COMMANDS"])
      assert.ok(sections(page).includes(s));
    assert.match(page, /wal-ctl help \[COMMAND\]/);
  });
});

describe("ctlHelp: which page a wal-ctl command line asks for", () => {
  for (const name of ALL_COMMANDS) {
    test(`${name}: help ${name}, ${name} --help, CONFIG ${name} --help, CONFIG help ${name}`, () => {
      const page = commandPage(name);
      assert.equal(ctlHelp(["help", name], false), page);
      assert.equal(ctlHelp([name], true), page);
      assert.equal(ctlHelp([NO_CONFIG, name], true), page);
      assert.equal(ctlHelp([NO_CONFIG, name, "a", "b"], true), page);
      assert.equal(ctlHelp([NO_CONFIG, "help", name], false), page);
    });
  }

  test("no command: the overview", () => {
    assert.equal(ctlHelp([], true), HELP.walCtl);
    assert.equal(ctlHelp(["help"], false), HELP.walCtl);
    assert.equal(ctlHelp([NO_CONFIG], true), HELP.walCtl);
    assert.equal(ctlHelp([NO_CONFIG, "help"], false), HELP.walCtl);
  });

  test("a command line that asks for no help", () => {
    assert.equal(ctlHelp([NO_CONFIG, "status"], false), undefined);
    assert.equal(ctlHelp([], false), undefined);
  });

  test("an unknown command is a usage error listing the commands", () => {
    for (const argv of [
      ["help", "stauts"],
      [NO_CONFIG, "stauts"],
    ]) {
      assert.throws(
        () => ctlHelp(argv, argv[0] !== "help"),
        (err: unknown) => {
          assert.ok(err instanceof UsageError);
          assert.equal(err.exitCode, ExitCode.USAGE);
          assert.match(err.message, /unknown command "stauts"/);
          for (const name of ALL_COMMANDS) assert.match(err.hint ?? "", new RegExp(`\\b${name}\\b`));
          return true;
        },
      );
    }
    usageError(() => ctlHelp(["help", "status", "check"], false), /takes one COMMAND/);
  });

  test("isDocumentedCommand refuses inherited names", () => {
    assert.equal(isDocumentedCommand("toString"), false);
    assert.equal(isDocumentedCommand("status"), true);
  });
});

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs one of our executables (async, so that many run at once) in an empty folder. */
function runAsync(name: string, args: string[], cwd: string): Promise<Ran> {
  const start = Date.now();
  return new Promise((resolve) => {
    execFile(binPath(name), args, { cwd, encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) => {
      const status = err ? (typeof err.code === "number" ? err.code : null) : 0;
      resolve({ status, stdout, stderr, ms: Date.now() - start });
    });
  });
}

describe("the executables route to the pages (spawned, no config file anywhere)", () => {
  const cwd = mkdtempSync(join(tmpdir(), "walmgr-help-"));
  after(() => rmSync(cwd, { recursive: true, force: true }));

  test("each executable's --help: its page, exit 0", async () => {
    const pages = { "wal-archive": HELP.walArchive, "wal-restore": HELP.walRestore, "wal-sync": HELP.walSync };
    const all = { ...pages, "wal-backup": HELP.walBackup, "wal-ctl": HELP.walCtl };
    const runs = await Promise.all(Object.keys(all).map((bin) => runAsync(bin, ["--help"], cwd)));
    Object.values(all).forEach((page, i) => {
      const r = runs[i];
      assert.equal(r?.status, 0, r?.stderr);
      assert.equal(r?.stdout, page);
    });
    // With CONFIG and the other arguments given too: still only the page.
    const r = await runAsync("wal-archive", [NO_CONFIG, "pg_wal/000000010000000000000001", "x", "-h"], cwd);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, HELP.walArchive);
  });

  test("every wal-ctl command's page, three ways (with the command's own options), exit 0", async () => {
    const ways = (name: CtlCommand): string[][] => {
      // Each option the page documents, as typed: the parser must accept them all.
      const opts = COMMAND_DOCS[name].options.flatMap(([flag]) => {
        const [long, value] = (flag.split(", ").pop() ?? flag).split(" ");
        return value === undefined ? [long ?? ""] : [long ?? "", "1"];
      });
      return [
        ["help", name],
        [name, "--help"],
        [NO_CONFIG, name, ...opts, "--help"],
      ];
    };
    const jobs = CTL_COMMANDS.flatMap((name) => ways(name).map((argv) => ({ name, argv })));
    const runs = await Promise.all(jobs.map((j) => runAsync("wal-ctl", j.argv, cwd)));
    jobs.forEach((j, i) => {
      const r = runs[i];
      assert.equal(r?.status, 0, `wal-ctl ${j.argv.join(" ")}: ${r?.stderr}`);
      assert.equal(r?.stdout, commandPage(j.name), `wal-ctl ${j.argv.join(" ")}`);
      assert.equal(r?.stderr, "", `wal-ctl ${j.argv.join(" ")}`);
    });
  });

  test("xhelper --help: its page", async () => {
    const r = await runAsync("wal-ctl", ["xhelper", "--help"], cwd);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, commandPage("xhelper"));
  });

  // bin/wal-ctl sends `wal-ctl X xhelper` to the helper bundle, except a request for help.
  test("help xhelper and CONFIG xhelper --help: its page", async () => {
    for (const argv of [
      ["help", "xhelper"],
      [NO_CONFIG, "xhelper", "--help"],
    ]) {
      const r = await runAsync("wal-ctl", argv, cwd);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, commandPage("xhelper"));
    }
  });

  test("an unknown command with --help: exit 2, the commands listed", async () => {
    for (const argv of [
      [NO_CONFIG, "stauts", "--help"],
      ["help", "stauts"],
    ]) {
      const r = await runAsync("wal-ctl", argv, cwd);
      assert.equal(r.status, ExitCode.USAGE, `wal-ctl ${argv.join(" ")}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /unknown command "stauts"/);
      for (const name of CTL_COMMANDS) assert.match(r.stderr, new RegExp(`\\b${name}\\b`));
    }
  });

  test("help is quick: no config, no database, no slave directory", async () => {
    const r = await runAsync("wal-ctl", [NO_CONFIG, "check", "--help"], cwd);
    assert.equal(r.status, 0, r.stderr);
    // Node's start-up is most of it; a second would mean help waits on something.
    assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  });
});
