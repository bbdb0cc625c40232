/** postgresql.conf editing (setup/stop) and shell quoting. */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { describe, test } from "node:test";
import {
  commentOutSettings,
  getConfValue,
  parseConfValue,
  pgCommandLine,
  quoteConfValue,
  setConfValues,
} from "../../src/pg/postgresql-conf";
import { shellQuote } from "../../src/shell";

const MARKER = "walmgr-ts setup";

const CONF = [
  "# -----------------------------",
  "# PostgreSQL configuration file",
  "# -----------------------------",
  "",
  "listen_addresses = 'localhost'\t\t# what IP address(es) to listen on;",
  "max_connections = 100\t\t\t# (change requires restart)",
  "",
  "wal_level = minimal\t\t\t# minimal, replica, or logical",
  "",
  "#archive_mode = off\t\t# enables archiving; off, on, or always",
  "\t\t\t\t# (change requires restart)",
  "#archive_command = ''\t\t# command to use to archive a logfile segment",
  "",
  "#   a trailing comment block",
  "wal_level = logical   # overrides the one above",
  "shared_buffers = 128MB",
  "",
].join("\n");

describe("setConfValues", () => {
  const values = { archive_mode: "on", archive_command: "/usr/bin/wal-archive /etc/m.ini %p %f", wal_level: "replica" };

  test("replaces the last active line, inserts after commented defaults, keeps the rest byte-for-byte", () => {
    const { text, changed } = setConfValues(CONF, values, MARKER);
    const lines = text.split("\n");
    const orig = CONF.split("\n");
    assert.deepEqual(lines, [
      ...orig.slice(0, 10),
      `archive_mode = 'on'\t\t# ${MARKER}`,
      ...orig.slice(10, 12),
      `archive_command = '/usr/bin/wal-archive /etc/m.ini %p %f'\t\t# ${MARKER}`,
      ...orig.slice(12, 14),
      `wal_level = 'replica'\t\t# ${MARKER}`,
      ...orig.slice(15),
    ]);
    // The first (overridden) wal_level line is untouched.
    assert.equal(lines[7], "wal_level = minimal\t\t\t# minimal, replica, or logical");
    assert.ok(text.endsWith("shared_buffers = 128MB\n"));
    assert.deepEqual(changed, [
      { key: "archive_mode", from: undefined, to: "on" },
      { key: "archive_command", from: undefined, to: "/usr/bin/wal-archive /etc/m.ini %p %f" },
      { key: "wal_level", from: "logical", to: "replica" },
    ]);
    assert.equal(getConfValue(text, "archive_mode"), "on");
    assert.equal(getConfValue(text, "archive_command"), values.archive_command);
    assert.equal(getConfValue(text, "wal_level"), "replica");
  });

  test("a second application changes nothing", () => {
    const first = setConfValues(CONF, values, MARKER);
    const second = setConfValues(first.text, values, MARKER);
    assert.equal(second.text, first.text);
    assert.deepEqual(second.changed, []);
  });

  test("a value already set (even unquoted or differently quoted) is left alone", () => {
    const text = "archive_mode = on\nwal_level='replica'  # set by hand\n";
    const res = setConfValues(text, { archive_mode: "on", wal_level: "replica" }, MARKER);
    assert.equal(res.text, text);
    assert.deepEqual(res.changed, []);
  });

  test("appends at the end when the key is absent, before the final newline", () => {
    const text = "max_connections = 100\n# nothing about archiving\n";
    const res = setConfValues(text, { archive_mode: "on" }, MARKER);
    assert.equal(res.text, `max_connections = 100\n# nothing about archiving\narchive_mode = 'on'\t\t# ${MARKER}\n`);
    assert.deepEqual(res.changed, [{ key: "archive_mode", from: undefined, to: "on" }]);
  });

  test("appends to a file without a final newline", () => {
    const res = setConfValues("max_connections = 100", { archive_mode: "on" }, MARKER);
    assert.equal(res.text, `max_connections = 100\narchive_mode = 'on'\t\t# ${MARKER}`);
  });

  test("handles `key value` without '=' and leading whitespace, case-insensitively", () => {
    const text = "  ARCHIVE_MODE off\n";
    assert.equal(getConfValue(text, "archive_mode"), "off");
    const res = setConfValues(text, { archive_mode: "on" }, MARKER);
    assert.equal(res.text, `archive_mode = 'on'\t\t# ${MARKER}\n`);
    assert.deepEqual(res.changed, [{ key: "archive_mode", from: "off", to: "on" }]);
  });

  test("a key that is a prefix of another key is not confused with it", () => {
    const text = "archive_mode_extra = 1\n";
    assert.equal(getConfValue(text, "archive_mode"), undefined);
    const res = setConfValues(text, { archive_mode: "on" }, MARKER);
    assert.equal(res.text, `archive_mode_extra = 1\narchive_mode = 'on'\t\t# ${MARKER}\n`);
  });

  test("an empty text gets the setting", () => {
    const res = setConfValues("", { archive_mode: "on" }, MARKER);
    assert.equal(getConfValue(res.text, "archive_mode"), "on");
    assert.equal(res.changed.length, 1);
  });
});

describe("quoting and reading values", () => {
  test("single quotes in values are doubled and read back", () => {
    assert.equal(quoteConfValue("it's"), "'it''s'");
    assert.equal(quoteConfValue(""), "''");
    const value = "cp %p '/mnt/o''brien dir/%f'";
    const res = setConfValues("", { archive_command: value }, MARKER);
    assert.ok(res.text.startsWith("archive_command = 'cp %p ''/mnt/o''''brien dir/%f'''"), res.text);
    assert.equal(getConfValue(res.text, "archive_command"), value);
    assert.deepEqual(setConfValues(res.text, { archive_command: value }, MARKER).changed, []);
  });

  test("values with backslashes round-trip (PostgreSQL reads \\ as an escape in quoted values)", () => {
    const value = String.raw`sed 's/\.gz$//' %p > /arch\ive/%f`;
    const res = setConfValues("", { archive_command: value }, MARKER);
    assert.equal(getConfValue(res.text, "archive_command"), value);
    assert.deepEqual(setConfValues(res.text, { archive_command: value }, MARKER).changed, []);
  });

  test("getConfValue returns the last active value, or undefined", () => {
    assert.equal(getConfValue(CONF, "wal_level"), "logical");
    assert.equal(getConfValue(CONF, "listen_addresses"), "localhost");
    assert.equal(getConfValue(CONF, "max_connections"), "100");
    assert.equal(getConfValue(CONF, "archive_mode"), undefined);
    assert.equal(getConfValue(CONF, "archive_command"), undefined);
    assert.equal(getConfValue(CONF, "no_such_setting"), undefined);
  });

  test("parseConfValue strips comments, quotes and escapes", () => {
    assert.equal(parseConfValue(" on  # comment"), "on");
    assert.equal(parseConfValue("'a # not a comment'  # comment"), "a # not a comment");
    assert.equal(parseConfValue("'it''s'"), "it's");
    assert.equal(parseConfValue(String.raw`'it\'s'`), "it's");
    assert.equal(parseConfValue("128MB"), "128MB");
    assert.equal(parseConfValue("''"), "");
  });
});

describe("shellQuote", () => {
  const words = [
    "simple",
    "/usr/lib/postgresql/15/bin/pg_ctl",
    "with space",
    "it's",
    "'",
    "''",
    "",
    "$HOME",
    "`id`",
    "$(id)",
    "a;b",
    "a && b",
    "a|b",
    "*",
    "~",
    "~/x",
    "tab\there",
    "new\nline",
    'double"quote',
    "back\\slash",
    "%p %f",
    "-n",
    "a=b",
    "ünïcödé",
    "#comment",
    "!bang",
    "{a,b}",
  ];
  for (const word of words) {
    test(`round-trips through /bin/sh: ${JSON.stringify(word)}`, () => {
      const quoted = shellQuote(word);
      const out = execFileSync("/bin/sh", ["-c", "printf %s " + quoted], { encoding: "utf8" });
      assert.equal(out, word);
    });
  }

  test("safe words are left as they are", () => {
    assert.equal(shellQuote("/usr/bin/wal-archive"), "/usr/bin/wal-archive");
    assert.equal(shellQuote("a.ini"), "a.ini");
    assert.equal(shellQuote("%p"), "%p");
  });

  test("several words keep their boundaries", () => {
    const words3 = ["one two", "it's", ""];
    const out = execFileSync("/bin/sh", ["-c", `printf '[%s]' ${words3.map(shellQuote).join(" ")}`], {
      encoding: "utf8",
    });
    assert.equal(out, "[one two][it's][]");
  });
});

describe("pgCommandLine", () => {
  test("doubles every % in the words (PostgreSQL reads %p/%f/%r anywhere), keeps the placeholders", () => {
    assert.equal(
      pgCommandLine(["/opt/bin/wal-archive", "/etc/a%pb/m.ini"], "%p %f"),
      "/opt/bin/wal-archive /etc/a%%pb/m.ini %p %f",
    );
    assert.equal(
      pgCommandLine(["/opt/bin/wal-restore", "/srv/cfg a%f%r/s.ini"], "%f %p %r"),
      "/opt/bin/wal-restore '/srv/cfg a%%f%%r/s.ini' %f %p %r",
    );
  });

  test("after PostgreSQL's %-substitution the shell sees the path as it is", () => {
    const path = "/tmp/it's a%p%%b/m.ini";
    const cmd = pgCommandLine(["printf", "%s|", path], "%p");
    // What PostgreSQL does with archive_command: %p → the WAL path, %% → %.
    const substituted = cmd.replace(/%(.)/g, (_m: string, c: string) =>
      c === "%" ? "%" : c === "p" ? "pg_wal/X" : `%${c}`,
    );
    assert.equal(execFileSync("/bin/sh", ["-c", substituted], { encoding: "utf8" }), `${path}|pg_wal/X|`);
  });
});

describe("commentOutSettings", () => {
  test("comments out every active assignment of the keys, nothing else", () => {
    const auto = [
      "# Do not edit this file manually!",
      "restore_command = '/bin/wal-restore /s.ini %f %p %r'",
      "archive_mode = 'off'",
      "ARCHIVE_MODE off",
      "#archive_mode = on",
      "archive_mode_x = 1",
      "",
    ].join("\n");
    const out = commentOutSettings(auto, ["archive_mode", "wal_level"], "walmgr-ts");
    assert.deepEqual(out.keys, ["archive_mode"]);
    assert.equal(getConfValue(out.text, "archive_mode"), undefined);
    assert.equal(getConfValue(out.text, "restore_command"), "/bin/wal-restore /s.ini %f %p %r");
    assert.equal(getConfValue(out.text, "archive_mode_x"), "1");
    assert.match(out.text, /^# archive_mode = 'off'\t# walmgr-ts$/m);
    assert.equal(commentOutSettings(out.text, ["archive_mode"], "x").keys.length, 0);
  });
});
