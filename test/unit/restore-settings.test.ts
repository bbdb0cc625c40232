/** Point-in-time recovery options and the recovery block restore writes into postgresql.auto.conf. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { withRecoveryBlock } from "../../src/command/restore/recovery-settings";
import { badTargetTime, recoveryTarget } from "../../src/command/restore/target";
import { ExitCode, UsageError } from "../../src/errors";
import { getConfValue } from "../../src/pg/postgresql-conf";

function opts(entries: Record<string, string>): Map<string, string> {
  return new Map(Object.entries(entries));
}

function usage(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected UsageError, got ${String(err)}`);
    assert.equal(err.exitCode, ExitCode.USAGE);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("recoveryTarget", () => {
  test("no options: replay to the end", () => {
    assert.deepEqual(recoveryTarget(new Map()), {});
  });

  test("each --target-* option maps to its recovery_target_* setting, action promote by default", () => {
    const cases: [string, string, string][] = [
      ["target-time", "2024-05-01 12:00:00+00", "recovery_target_time"],
      ["target-lsn", "0/3000028", "recovery_target_lsn"],
      ["target-xid", "1234", "recovery_target_xid"],
      ["target-name", "before_upgrade", "recovery_target_name"],
    ];
    for (const [opt, value, setting] of cases) {
      assert.deepEqual(recoveryTarget(opts({ [opt]: value })), {
        [setting]: value,
        recovery_target_action: "promote",
      });
    }
  });

  test("--target-action pause and shutdown", () => {
    assert.deepEqual(recoveryTarget(opts({ "target-lsn": "0/3000028", "target-action": "pause" })), {
      recovery_target_lsn: "0/3000028",
      recovery_target_action: "pause",
    });
    assert.deepEqual(recoveryTarget(opts({ "target-xid": "77", "target-action": "shutdown" })), {
      recovery_target_xid: "77",
      recovery_target_action: "shutdown",
    });
    assert.deepEqual(recoveryTarget(opts({ "target-xid": "77", "target-action": "promote" })), {
      recovery_target_xid: "77",
      recovery_target_action: "promote",
    });
  });

  test("--target-exclusive stops just before the target", () => {
    assert.deepEqual(recoveryTarget(opts({ "target-xid": "77", "target-exclusive": "true" })), {
      recovery_target_xid: "77",
      recovery_target_action: "promote",
      recovery_target_inclusive: "off",
    });
  });

  test("two targets are a usage error", () => {
    usage(() => recoveryTarget(opts({ "target-time": "2024-05-01", "target-lsn": "0/1" })), /at most one/);
    usage(() => recoveryTarget(opts({ "target-xid": "1", "target-name": "x" })), /at most one/);
  });

  test("a bad action is a usage error naming it", () => {
    usage(() => recoveryTarget(opts({ "target-lsn": "0/1", "target-action": "explode" })), /explode/);
    usage(() => recoveryTarget(opts({ "target-lsn": "0/1", "target-action": "" })), /target-action/);
  });

  test("an action without a target is a usage error", () => {
    usage(() => recoveryTarget(opts({ "target-action": "pause" })), /--target-/);
  });
});

describe("--target-* values are checked before anything is written", () => {
  test("times PostgreSQL reads are accepted", () => {
    for (const t of [
      "2024-05-01",
      "2024-05-01 12:00",
      "2024-05-01 12:00:00",
      "2024-05-01 12:00:00+00",
      "2024-05-01 12:00:00.123456+05:30",
      "2024-05-01T12:00:00Z",
      "2024-05-01 12:00:00 UTC",
      "2024-05-01 12:00:00 -0800",
      "2024-05-01 12:00:00 Europe/Berlin",
      "2024-02-29 23:59:59",
    ]) {
      assert.equal(badTargetTime(t), undefined, t);
      assert.equal(recoveryTarget(opts({ "target-time": t })).recovery_target_time, t);
    }
  });

  test("a time that is not one is a usage error naming --target-time", () => {
    for (const t of [
      "not a time",
      "",
      "yesterday",
      "2024-13-01",
      "2023-02-29",
      "2024-04-31 10:00:00",
      "2024-05-01 25:00:00",
      "2024-05-01 12:61:00",
      "2024-05-01 12:00:00 Mars/Olympus",
      "2024-05-01 12:00:00+99",
      "2024-05-01 12:00:00\n",
      "2024-05-01 12:00:00'; DROP",
    ]) {
      assert.notEqual(badTargetTime(t), undefined, t);
      usage(() => recoveryTarget(opts({ "target-time": t })), /--target-time/);
    }
  });

  test("LSN: X/X in hex", () => {
    assert.equal(recoveryTarget(opts({ "target-lsn": "16/B374D848" })).recovery_target_lsn, "16/B374D848");
    for (const l of ["", "0", "0/", "G/1", "0/3000028 ", "123456789/0", "0x0/1"])
      usage(() => recoveryTarget(opts({ "target-lsn": l })), /--target-lsn/);
  });

  test("xid: a positive integer (PostgreSQL would read 010 as octal)", () => {
    assert.equal(recoveryTarget(opts({ "target-xid": "4294967296" })).recovery_target_xid, "4294967296");
    for (const x of ["", "0", "-1", "010", "12a", "1.5", "18446744073709551616"])
      usage(() => recoveryTarget(opts({ "target-xid": x })), /--target-xid/);
  });

  test("name: no line breaks or control characters, 1 to 63 bytes", () => {
    assert.equal(recoveryTarget(opts({ "target-name": "before upgrade" })).recovery_target_name, "before upgrade");
    assert.equal(recoveryTarget(opts({ "target-name": "x".repeat(63) })).recovery_target_name, "x".repeat(63));
    for (const n of ["a\nb", "a\rb", "tab\there", "nul\u0000", "", "x".repeat(64), "é".repeat(32)])
      usage(() => recoveryTarget(opts({ "target-name": n })), /--target-name/);
  });
});

describe("withRecoveryBlock", () => {
  const AUTO = [
    "# Do not edit this file manually!",
    "# It will be overwritten by the ALTER SYSTEM command.",
    "work_mem = '64MB'",
    "",
  ].join("\n");
  const WHEN = "2024-05-01T12:00:00.000Z";

  test("appends a block after the existing lines", () => {
    const out = withRecoveryBlock(AUTO, { restore_command: "wal-restore '/etc/s.ini' %f %p %r" }, WHEN);
    const lines = out.split("\n");
    assert.deepEqual(lines.slice(0, 3), AUTO.split("\n").slice(0, 3));
    assert.ok(out.endsWith("\n"));
    assert.ok(!out.endsWith("\n\n"));
    assert.ok(out.includes(WHEN));
    assert.equal(getConfValue(out, "restore_command"), "wal-restore '/etc/s.ini' %f %p %r");
    assert.equal(getConfValue(out, "work_mem"), "64MB");
    assert.ok(out.includes("restore_command = 'wal-restore ''/etc/s.ini'' %f %p %r'"), out);
  });

  test("a second call replaces its own block and keeps other lines", () => {
    const first = withRecoveryBlock(
      AUTO,
      { restore_command: "first", recovery_target_lsn: "0/1", recovery_target_action: "pause" },
      WHEN,
    );
    const withMore = `${first}max_connections = '50'\n`;
    const second = withRecoveryBlock(withMore, { restore_command: "second" }, "2024-06-01T00:00:00.000Z");
    const markers = second.split("\n").filter((l) => l.startsWith("# --- walmgr-ts restore"));
    assert.equal(markers.length, 2, second);
    assert.equal(getConfValue(second, "restore_command"), "second");
    assert.equal(getConfValue(second, "recovery_target_lsn"), undefined);
    assert.equal(getConfValue(second, "recovery_target_action"), undefined);
    assert.equal(getConfValue(second, "work_mem"), "64MB");
    assert.equal(getConfValue(second, "max_connections"), "50");
    assert.ok(!second.includes(WHEN), "the old block's timestamp is gone");
    for (const line of AUTO.split("\n").slice(0, 3)) assert.ok(second.split("\n").includes(line), line);
  });

  test("applying the same settings twice gives the same text", () => {
    const s = { restore_command: "x %f %p", recovery_target_time: "2024-05-01 12:00:00+00" };
    const once = withRecoveryBlock(AUTO, s, WHEN);
    assert.equal(withRecoveryBlock(once, s, WHEN), once);
  });

  test("the block's settings come last, so they win over earlier lines", () => {
    const out = withRecoveryBlock("restore_command = 'old'\n", { restore_command: "new" }, WHEN);
    assert.equal(getConfValue(out, "restore_command"), "new");
    assert.ok(out.startsWith("restore_command = 'old'\n"));
  });

  test("an empty file gets just the block", () => {
    const out = withRecoveryBlock("", { primary_conninfo: "host=master port=5432" }, WHEN);
    assert.ok(out.startsWith("# --- walmgr-ts restore"), out);
    assert.equal(getConfValue(out, "primary_conninfo"), "host=master port=5432");
  });
});
