import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { commandMatches } from "../../src/command/check/items";
import { exitCodeOf, formatNagios, formatText, type CheckItem, type CheckReport } from "../../src/command/check/report";
import { loadConfig } from "../../src/config/load";
import { binPath } from "../../src/paths";
import { pgCommandLine } from "../../src/pg/postgresql-conf";

const dir = mkdtempSync(join(tmpdir(), "walmgr-check-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("check: which archive_command/restore_command runs this config", () => {
  const odd = join(dir, "a%p b's");
  const file = join(dir, "master.ini");
  writeFileSync(file, "[wal-master]\nmaster_data = /x\nslave = /y\n");
  const config = loadConfig(file);
  symlinkSync(file, join(dir, "link.ini"));

  test("setup's own line, wrappers, walmgr.py's xarchive form, a link to the config", () => {
    assert.ok(commandMatches(pgCommandLine([binPath("wal-archive"), file], "%p %f"), "wal-archive", config, "%p %f"));
    assert.ok(commandMatches(`nice -n 5 /usr/local/bin/wal-archive ${file} %p %f`, "wal-archive", config, "%p %f"));
    assert.ok(commandMatches(`/opt/w/bin/wal-ctl '${file}' xarchive %p %f`, "wal-archive", config, "%p %f"));
    assert.ok(commandMatches(`wal-archive ${join(dir, "link.ini")} %p %f`, "wal-archive", config, "%p %f"));
    assert.ok(
      commandMatches(pgCommandLine([binPath("wal-restore"), file], "%f %p %r"), "wal-restore", config, "%f %p"),
    );
  });

  test("another config, another tool, a missing placeholder, an empty command: no", () => {
    assert.ok(!commandMatches(`wal-archive ${join(dir, "other.ini")} %p %f`, "wal-archive", config, "%p %f"));
    assert.ok(!commandMatches(`cp %p /archive/%f`, "wal-archive", config, "%p %f"));
    assert.ok(!commandMatches(`walmgr.py ${file} xarchive %p %f`, "wal-archive", config, "%p %f"));
    assert.ok(!commandMatches(`wal-archive ${file} %p`, "wal-archive", config, "%p %f"));
    assert.ok(!commandMatches(`wal-restore ${file} %f %p`, "wal-archive", config, "%p %f"));
    assert.ok(!commandMatches("", "wal-archive", config, "%p %f"));
  });

  test("a config path with % and a quote, as setup quotes it", () => {
    writeFileSync(odd, "[wal-master]\nmaster_data = /x\nslave = /y\n");
    const c2 = loadConfig(odd);
    const line = pgCommandLine([binPath("wal-archive"), odd], "%p %f");
    assert.match(line, /%%p/);
    assert.ok(commandMatches(line, "wal-archive", c2, "%p %f"));
    assert.ok(!commandMatches(line, "wal-archive", config, "%p %f"));
  });
});

describe("check: report formats and exit codes", () => {
  const items = (...c: CheckItem[]): CheckReport => ({ ok: false, role: "master", config: "/etc/m.ini", checks: c });
  const ok: CheckItem = { name: "config", status: "OK", detail: "fine" };
  const skip: CheckItem = { name: "switch", status: "SKIP", detail: "n/a" };
  const warn: CheckItem = { name: "standby replay", status: "WARN", detail: "paused", fix: "continue", code: 1 };
  const fail: CheckItem = {
    name: "archive_command",
    status: "FAIL",
    detail: "points elsewhere | a pipe\nand a newline",
    fix: "setup",
    code: 3,
    metrics: { ready: 4, "odd name": 2 },
  };

  test("exit code: 0 with only OK and SKIP; else the first FAIL's kind, else the first WARN's", () => {
    assert.equal(exitCodeOf([ok, skip]), 0);
    assert.equal(exitCodeOf([ok, warn]), 1);
    assert.equal(exitCodeOf([warn, fail]), 3);
    assert.equal(exitCodeOf([{ ...fail, code: undefined }]), 9);
  });

  test("--nagios: one line, state by the worst item, perfdata after |, Nagios exit codes", () => {
    assert.deepEqual(formatNagios(items(ok, skip)), {
      line: "WALMGR OK - 1 checks passed (master) | checks=2;;;0 failed=0;;1;0 warnings=0;1;;0",
      code: 0,
    });
    const w = formatNagios(items(ok, warn));
    assert.equal(w.code, 1);
    assert.match(w.line, /^WALMGR WARNING - standby replay: paused \| /);
    const c = formatNagios(items(ok, warn, fail));
    assert.equal(c.code, 2);
    assert.ok(!c.line.includes("\n"));
    // The | of the detail must not start the perfdata early.
    assert.equal(c.line.split("|").length, 2, c.line);
    assert.match(
      c.line,
      /^WALMGR CRITICAL - archive_command: points elsewhere a pipe and a newline; standby replay: paused \| /,
    );
    assert.match(c.line, / ready=4 'odd name'=2$/);
  });

  test("text: one item a line, the fix beneath WARN and FAIL, a summary, no colour off a terminal", () => {
    const text = formatText(items(ok, warn, fail));
    const lines = text.split("\n");
    assert.match(lines[0] ?? "", /^OK {3}config: +fine$/);
    assert.match(lines[1] ?? "", /^WARN standby replay: +paused$/);
    assert.match(lines[2] ?? "", /^ +fix: continue$/);
    assert.match(text, /1 check\(s\) failed, 1 warning\(s\) \(master, \/etc\/m\.ini\)$/);
    assert.ok(!text.includes("\u001b"));
  });
});

describe("check --nagios when the check cannot run", () => {
  const walCtl = join(__dirname, "..", "..", "..", "bin", "wal-ctl");
  for (const [what, args] of [
    ["a config that cannot be read", [join(dir, "missing.ini"), "check", "--nagios"]],
    ["an unknown option", [join(dir, "missing.ini"), "check", "--nagios", "--bogus"]],
  ] as const) {
    test(`${what}: UNKNOWN (3), one line on stdout naming why`, () => {
      const r = spawnSync(process.execPath, [walCtl, ...args], { encoding: "utf8" });
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stdout, /^WALMGR UNKNOWN - \S.*\n$/);
      assert.equal(r.stdout.split("\n").length, 2);
    });
  }
});
