/**
 * The command lines of the real executables (spawned from bin/, no server, no config file):
 * usage errors exit 2 with a HINT, a command line that parses gets as far as reading CONFIG
 * (exit 3 for one that does not exist), completion, and the README's list of commands.
 * test/unit/args.test.ts checks the parsers in process; test/unit/help.test.ts the pages.
 */
import assert from "node:assert/strict";
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, test } from "node:test";
import { COMMAND_DOCS, type DocumentedCommand } from "../../src/cli/command-docs";
import { CTL_COMMAND_ARGS, type CtlCommand } from "../../src/cli/commands";
import { commandPage } from "../../src/cli/help";
import { commandOptions } from "../../src/cli/parse";
import { ExitCode } from "../../src/errors";
import { binPath, REPO_ROOT } from "../helpers/env";

/** A config path that does not exist: a command line that parses stops there, with exit 3. */
const NO_CONFIG = "/nonexistent/walmgr-cli-test/master.ini";

/** Every name walmgr.py's command line took, and the ones walmgr-ts adds. */
const WALMGR_PY_NAMES = [
  "setup",
  "stop",
  "sync",
  "syncdaemon",
  "periodic",
  "listbackups",
  "backup",
  "restore",
  "boot",
  "pause",
  "continue",
  "xarchive",
  "xrestore",
  "xpartialsync",
  "xhelper",
];
const OUR_NAMES = ["status", "check", "verify", "expire"];

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

const cwd = mkdtempSync(join(tmpdir(), "walmgr-cli-"));
after(() => rmSync(cwd, { recursive: true, force: true }));

/** Runs one of our executables in an empty folder, stdin closed (xhelper would wait on it). */
function runAsync(name: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Ran> {
  return new Promise((resolve) => {
    const child = execFile(
      binPath(name),
      args,
      { cwd, env, encoding: "utf8", timeout: 30_000 },
      (err, stdout, stderr) => {
        resolve({ status: err ? (typeof err.code === "number" ? err.code : null) : 0, stdout, stderr });
      },
    );
    child.stdin?.end();
  });
}

function assertUsage(r: Ran, what: string, message: RegExp, hint?: RegExp): void {
  assert.equal(r.status, ExitCode.USAGE, `${what}: ${r.stdout}${r.stderr}`);
  assert.equal(r.stdout, "", what);
  assert.match(r.stderr, message, what);
  if (hint) assert.match(r.stderr, new RegExp(`\\nHINT: .*${hint.source}`), what);
  assert.doesNotMatch(r.stderr, /internal error|TypeError/, what);
}

function assertConfigError(r: Ran, what: string): void {
  assert.equal(r.status, ExitCode.CONFIG, `${what}: ${r.stdout}${r.stderr}`);
  assert.match(r.stderr, /walmgr-cli-test\/master\.ini/, what);
}

describe("wal-ctl: every walmgr.py command name (and status, check, verify) is taken", () => {
  test("the names are wal-ctl's commands", () => {
    assert.deepEqual([...WALMGR_PY_NAMES, ...OUR_NAMES].sort(), Object.keys(COMMAND_DOCS).sort());
  });

  test("each parses, with each of its options, and stops at the missing CONFIG (exit 3, not 2)", async () => {
    const lines = [...WALMGR_PY_NAMES, ...OUR_NAMES].flatMap((name) => {
      const spec = Object.hasOwn(CTL_COMMAND_ARGS, name) ? CTL_COMMAND_ARGS[name as CtlCommand] : undefined;
      const args = Array.from({ length: spec?.min ?? 0 }, (_, i) => `arg${i}`);
      const options = commandOptions(name as DocumentedCommand)
        // --json is refused beside --nagios and --prometheus, but only once CONFIG is read.
        .flatMap((o) => (o.takesValue ? [`--${o.long}`, "1"] : [`--${o.long}`]));
      // xhelper is run by the master exactly so (bin/wal-ctl hands it to the helper): no options.
      return name === "xhelper"
        ? [[NO_CONFIG, name]]
        : [
            [NO_CONFIG, name, ...args],
            ["-q", NO_CONFIG, name, ...args, ...options],
          ];
    });
    const runs = await Promise.all(lines.map((argv) => runAsync("wal-ctl", argv)));
    runs.forEach((r, i) => assertConfigError(r, `wal-ctl ${lines[i]?.join(" ")}`));
  });
});

describe("wal-ctl: usage errors exit 2 with a hint", () => {
  test("an unknown option: did you mean the command's nearest", async () => {
    const r = await runAsync("wal-ctl", [NO_CONFIG, "restore", "--target-tme", "2026-11-24 06:00:00+00"]);
    assertUsage(r, "--target-tme", /restore: unknown option --target-tme/, /did you mean --target-time\?/);
  });

  test("an option of another command names that command", async () => {
    const r = await runAsync("wal-ctl", [NO_CONFIG, "status", "--nagios"]);
    assertUsage(r, "status --nagios", /status: unknown option --nagios/, /--nagios is an option of check/);
  });

  test("a misspelt command: did you mean, and every command", async () => {
    const r = await runAsync("wal-ctl", ["x.ini", "stauts"]);
    assertUsage(r, "stauts", /unknown command "stauts"/, /did you mean status\?/);
    for (const name of Object.keys(COMMAND_DOCS)) assert.match(r.stderr, new RegExp(`\\b${name}\\b`));
  });

  test("Object's property names as commands: a clean usage error", async () => {
    const names = ["toString", "__proto__", "constructor", "hasOwnProperty"];
    const runs = await Promise.all(names.map((n) => runAsync("wal-ctl", ["x.ini", n])));
    runs.forEach((r, i) => assertUsage(r, names[i] ?? "", new RegExp(`unknown command "${names[i]}"`)));
  });

  test("a missing value, a value for a switch, an extra argument, no CONFIG", async () => {
    const cases: [string[], RegExp][] = [
      [[NO_CONFIG, "check", "--timeout"], /check: option --timeout needs a value/],
      [[NO_CONFIG, "status", "--json=yes"], /status: option --json takes no value/],
      [[NO_CONFIG, "pause", "extra"], /wal-ctl pause: unexpected extra argument "extra"/],
      [["status"], /status: missing CONFIG/],
      [[NO_CONFIG], /missing COMMAND/],
      [[], /missing CONFIG/],
    ];
    const runs = await Promise.all(cases.map(([argv]) => runAsync("wal-ctl", argv)));
    runs.forEach((r, i) => assertUsage(r, cases[i]?.[0].join(" ") ?? "", cases[i]?.[1] ?? /./));
  });

  test("xhelper with an option: exit 2 naming the form the master runs", async () => {
    const r = await runAsync("wal-ctl", ["-q", NO_CONFIG, "xhelper"]);
    assertUsage(r, "-q xhelper", /xhelper takes no options/, /wal-ctl SLAVE_CONFIG xhelper/);
  });

  test("-h after a command and its options: the command's page", async () => {
    const r = await runAsync("wal-ctl", [NO_CONFIG, "check", "--nagios", "-h"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, commandPage("check"));
  });
});

describe("wal-sync, wal-backup: yargs", () => {
  test("their options parse (exit 3 at the missing CONFIG); others exit 2 with the nearest", async () => {
    const ok: [string, string[]][] = [
      ["wal-sync", [NO_CONFIG, "--daemon"]],
      ["wal-sync", ["-qd", NO_CONFIG]],
      ["wal-sync", [NO_CONFIG, "--detach", "-v"]],
      ["wal-backup", [NO_CONFIG, "--clear-stale-lock", "-n"]],
    ];
    const runs = await Promise.all(ok.map(([bin, argv]) => runAsync(bin, argv)));
    runs.forEach((r, i) => assertConfigError(r, ok[i]?.join(" ") ?? ""));
    assertUsage(
      await runAsync("wal-sync", [NO_CONFIG, "--deamon"]),
      "wal-sync --deamon",
      /unknown option --deamon/,
      /did you mean --daemon\?/,
    );
    assertUsage(await runAsync("wal-backup", [NO_CONFIG, "--json"]), "wal-backup --json", /unknown option --json/);
    assertUsage(await runAsync("wal-backup", [NO_CONFIG, "extra"]), "wal-backup extra", /unexpected extra argument/);
  });
});

describe("wal-archive, wal-restore: util.parseArgs, the same syntax as before", () => {
  test("general options and PostgreSQL's arguments parse (exit 3 at the missing CONFIG)", async () => {
    const seg = "000000010000000000000001";
    const ok: [string, string[]][] = [
      ["wal-archive", [NO_CONFIG, `pg_wal/${seg}`, seg]],
      ["wal-archive", ["-qv", "-n", NO_CONFIG, `pg_wal/${seg}`, seg]],
      ["wal-restore", [NO_CONFIG, seg, "pg_wal/RECOVERYXLOG"]],
      ["wal-restore", ["--quiet", NO_CONFIG, seg, "pg_wal/RECOVERYXLOG", "000000010000000000000000"]],
    ];
    const runs = await Promise.all(ok.map(([bin, argv]) => runAsync(bin, argv)));
    runs.forEach((r, i) => assertConfigError(r, ok[i]?.join(" ") ?? ""));
  });

  test("anything else exits 2 naming it", async () => {
    const bad: [string, string[], RegExp][] = [
      ["wal-archive", ["--bogus", NO_CONFIG, "p", "f"], /unknown option --bogus/],
      ["wal-archive", ["-x", NO_CONFIG, "p", "f"], /unknown option -x/],
      ["wal-restore", ["--json", NO_CONFIG, "f", "p"], /unknown option --json/],
      ["wal-archive", ["--quiet=1", NO_CONFIG, "p", "f"], /option --quiet takes no value/],
      ["wal-archive", [NO_CONFIG, "p"], /wal-archive: missing arguments/],
      ["wal-restore", [NO_CONFIG, "f", "p", "r", "x"], /wal-restore: unexpected extra argument "x"/],
    ];
    const runs = await Promise.all(bad.map(([bin, argv]) => runAsync(bin, argv)));
    runs.forEach((r, i) => assertUsage(r, bad[i]?.[1].join(" ") ?? "", bad[i]?.[2] ?? /./));
  });

  test("yargs is not in their bundles (it would cost every WAL segment its start-up)", () => {
    for (const bundle of ["wal-archive", "wal-restore", "wal-prefetch", "wal-helper"]) {
      const text = readFileSync(join(REPO_ROOT, "dist", "bin", `${bundle}.js`), "utf8");
      assert.doesNotMatch(text, /yargs/, `${bundle}.js contains yargs`);
    }
    assert.match(readFileSync(join(REPO_ROOT, "dist", "bin", "wal-ctl.js"), "utf8"), /yargs/);
  });

  test("bin/wal-restore (sh) finds its Node program through a symlink, and run as sh wal-restore", () => {
    const link = join(cwd, "wal-restore-link");
    symlinkSync(binPath("wal-restore"), link);
    const run = (file: string, args: string[], dir: string): string =>
      execFileSync(file, args, { cwd: dir, encoding: "utf8" });
    const version = /^wal-restore \(walmgr-ts\) /;
    assert.match(run(link, ["--version"], cwd), version);
    assert.match(run("/bin/sh", ["wal-restore", "--version"], dirname(binPath("wal-restore"))), version);
  });

  test("--version on every executable", async () => {
    const bins = ["wal-archive", "wal-restore", "wal-sync", "wal-backup", "wal-ctl"];
    const runs = await Promise.all(bins.map((b) => runAsync(b, ["--version"])));
    runs.forEach((r, i) => {
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^${bins[i]} \\(walmgr-ts\\) \\d+\\.\\d+\\.\\d+\\n$`));
    });
  });
});

describe("wal-ctl completion", () => {
  test("wal-ctl completion prints yargs' bash script", async () => {
    const r = await runAsync("wal-ctl", ["completion"], { ...process.env, SHELL: "/bin/bash" });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^###-begin-wal-ctl-completions-###$/m);
    assert.match(r.stdout, /wal-ctl --get-yargs-completions "\$\{args\[@\]\}"/);
    assert.match(r.stdout, /^complete -o bashdefault -o default -F _wal-ctl_yargs_completions wal-ctl$/m);
  });

  test("asked as the script asks: commands after CONFIG, then the command's options", async () => {
    const ask = (...words: string[]): Promise<Ran> =>
      runAsync("wal-ctl", ["--get-yargs-completions", "wal-ctl", ...words], { ...process.env, SHELL: "/bin/bash" });
    const [commands, st, options, none] = await Promise.all([
      ask("master.ini", ""),
      ask("master.ini", "st"),
      ask("slave.ini", "restore", "--target-"),
      ask(""),
    ]);
    for (const r of [commands, st, options, none]) assert.equal(r.status, 0, r.stderr);
    const listed = commands.stdout.split("\n");
    for (const [name, doc] of Object.entries(COMMAND_DOCS)) {
      assert.equal(listed.includes(name), doc.internal !== true, `${name} offered: ${listed.includes(name)}`);
    }
    assert.equal(st.stdout, "stop\nstatus\n");
    assert.deepEqual(options.stdout.split("\n").filter(Boolean).sort(), [
      "--target-action",
      "--target-exclusive",
      "--target-lsn",
      "--target-name",
      "--target-time",
      "--target-xid",
    ]);
    assert.equal(none.stdout, "", "CONFIG: the shell completes file names");
  });
});

describe("README", () => {
  test("its list of commands is the one wal-ctl --help gives", async () => {
    const readme = readFileSync(join(REPO_ROOT, "README.md"), "utf8");
    const section = /^## Command-line interface\n([\s\S]*?)(?=^## )/m.exec(readme)?.[1] ?? "";
    const list = /^### Commands\n([\s\S]*?)(?=^### |$(?![\s\S]))/m.exec(section)?.[1] ?? "";
    const documented = [...list.matchAll(/^- `([a-z]+)[^`]*`/gm)].map((m) => m[1]);
    assert.ok(documented.length > 0, "README.md has no '### Commands' list under '## Command-line interface'");

    const help = await runAsync("wal-ctl", ["--help"]);
    assert.equal(help.status, 0, help.stderr);
    // The overview's command sections: "MASTER COMMANDS", …, "INTERNAL COMMANDS (…)".
    const listed: string[] = [];
    let inCommands = false;
    for (const line of help.stdout.split("\n")) {
      if (/^[A-Z]/.test(line)) inCommands = / COMMANDS\b/.test(line);
      else if (inCommands) {
        const m = /^ {4}([a-z]+)\b/.exec(line);
        if (m?.[1] !== undefined) listed.push(m[1]);
      }
    }
    assert.deepEqual([...documented].sort(), [...listed].sort());
    assert.deepEqual([...listed].sort(), Object.keys(COMMAND_DOCS).sort());
  });
});

describe("the entry point", () => {
  test("a command that stops waiting before it finishes (an empty event loop) exits 70, never 0", () => {
    // Node exits 0 when nothing is left to wait on, even with the command's promise pending: for
    // archive_command that would be "durable" for a file that is not.
    const dir = mkdtempSync(join(tmpdir(), "walmgr-entry-"));
    try {
      const ini = join(dir, "m.ini");
      writeFileSync(ini, "[wal-master]\nslave = /nonexistent\n");
      const entry = join(REPO_ROOT, "dist", "src", "cli", "entry.js");
      const program = `{ name: "wal-archive", help: "walArchive", positionals: { min: 0, max: 0, usage: "" }, run: () => new Promise(() => {}) }`;
      const script = `require(${JSON.stringify(entry)}).main(${program}, [${JSON.stringify(ini)}]);`;
      const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
      assert.equal(r.status, ExitCode.INTERNAL, `exit ${String(r.status)}: ${r.stderr}`);
      assert.match(r.stderr, /stopped waiting before it finished/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
