/** WAL file names (validated before any path is built from them) and LSN/segment arithmetic. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { ExitCode, UsageError } from "../../src/errors";
import {
  comparePosition,
  formatLsn,
  lsnToSegment,
  parseLsn,
  parseWalName,
  requireWalName,
  segmentName,
  segmentNumber,
} from "../../src/wal/names";

const SEG16 = 16 * 1024 * 1024;

describe("requireWalName accepts PostgreSQL's archive names", () => {
  test("a segment", () => {
    const w = requireWalName("000000010000000000000001");
    assert.equal(w.kind, "segment");
    assert.equal(w.timeline, 1);
    assert.equal(w.position, "0000000000000001");
    assert.equal(w.name, "000000010000000000000001");
  });

  test("a segment with high hex digits and timeline", () => {
    const w = requireWalName("0000000A00000002000000FF");
    assert.equal(w.kind, "segment");
    assert.equal(w.timeline, 10);
    assert.equal(w.position, "00000002000000FF");
  });

  test("a .history file", () => {
    const w = requireWalName("00000002.history");
    assert.equal(w.kind, "history");
    assert.equal(w.timeline, 2);
    assert.equal(w.position, undefined);
  });

  test("a .backup file", () => {
    const w = requireWalName("000000010000000000000002.00000028.backup");
    assert.equal(w.kind, "backup");
    assert.equal(w.timeline, 1);
    assert.equal(w.position, "0000000000000002");
  });

  test("a .partial file", () => {
    const w = requireWalName("000000010000000000000003.partial");
    assert.equal(w.kind, "partial");
    assert.equal(w.position, "0000000000000003");
  });
});

describe("requireWalName refuses anything else with a UsageError (exit code 2)", () => {
  const bad: [string, string | undefined][] = [
    ["undefined", undefined],
    ["empty", ""],
    ["parent path", "../x"],
    ["parent path to a segment", "../000000010000000000000001"],
    ["absolute path", "/etc/passwd"],
    ["23 hex digits", "00000001000000000000001"],
    ["25 hex digits", "0000000100000000000000011"],
    ["lower-case hex", "00000001000000000000000a"],
    ["segment then /..", "000000010000000000000001/.."],
    ["subdirectory", "pg_wal/000000010000000000000001"],
    ["NUL byte", "000000010000000000000001\0"],
    ["NUL byte inside", "00000001000000000\u00000000001"],
    ["trailing newline", "000000010000000000000001\n"],
    ["leading newline", "\n000000010000000000000001"],
    ["embedded newline", "00000001\n0000000000000001"],
    ["trailing space", "000000010000000000000001 "],
    ["dot", "."],
    ["dot dot", ".."],
    ["lower-case history", "0000000a.history"],
    ["history with 7 digits", "0000002.history"],
    ["backup without offset", "000000010000000000000002.backup"],
    ["checksum file", ".000000010000000000000001.sha256"],
    ["control file", "BACKUPLOCK"],
    ["temp file", ".walmgr-tmp.000000010000000000000001.123"],
  ];
  for (const [label, name] of bad) {
    test(label, () => {
      assert.equal(parseWalName(name ?? ""), undefined);
      assert.throws(
        () => requireWalName(name),
        (err: unknown) => err instanceof UsageError && err.exitCode === ExitCode.USAGE && err.exitCode === 2,
      );
    });
  }

  test("the message names what was refused", () => {
    assert.throws(() => requireWalName("../x", "%f"), /%f.*"\.\.\/x"/);
  });
});

describe("segment arithmetic (16 MiB segments)", () => {
  test("LSN 0/3000028 is in segment 3 at offset 40", () => {
    const lsn = parseLsn("0/3000028");
    assert.equal(lsn, 0x3000028n);
    assert.deepEqual(lsnToSegment(lsn, 1, SEG16), { name: "000000010000000000000003", offset: 40 });
  });

  test("LSN 1/0 is the first segment of log 1", () => {
    const lsn = parseLsn("1/0");
    assert.equal(lsn, 0x100000000n);
    assert.deepEqual(lsnToSegment(lsn, 1, SEG16), { name: "000000010000000100000000", offset: 0 });
  });

  test("the last byte of log 0 is in segment FF", () => {
    assert.deepEqual(lsnToSegment(parseLsn("0/FFFFFFFF"), 1, SEG16), {
      name: "0000000100000000000000FF",
      offset: SEG16 - 1,
    });
  });

  test("the timeline goes into the name", () => {
    assert.equal(lsnToSegment(parseLsn("16/B374D848"), 3, SEG16).name, "0000000300000016000000B3");
    assert.equal(lsnToSegment(parseLsn("16/B374D848"), 3, SEG16).offset, 0x74d848);
  });

  test("segmentName and segmentNumber round-trip", () => {
    for (const segno of [0n, 1n, 3n, 255n, 256n, 257n, 0x16b3n, 0xffffn, 0xffffffn * 256n + 255n]) {
      const name = segmentName(1, segno, SEG16);
      assert.equal(name.length, 24);
      assert.match(name, /^[0-9A-F]{24}$/);
      assert.equal(segmentNumber(name, SEG16), segno, name);
    }
    assert.equal(segmentName(1, 256n, SEG16), "000000010000000100000000");
    assert.equal(segmentNumber("000000010000000100000000", SEG16), 256n);
    assert.equal(segmentNumber("0000000200000000000000FF", SEG16), 255n);
  });

  test("segmentNumber ignores the timeline", () => {
    assert.equal(segmentNumber("000000010000000200000003", SEG16), segmentNumber("000000090000000200000003", SEG16));
  });

  test("other segment sizes (1 MiB and 1 GiB)", () => {
    const MB = 1024 * 1024;
    assert.equal(segmentName(1, 4096n, MB), "000000010000000100000000");
    assert.equal(segmentNumber("000000010000000100000000", MB), 4096n);
    const GB = 1024 * MB;
    assert.equal(segmentName(1, 5n, GB), "000000010000000100000001");
    assert.equal(segmentNumber("000000010000000100000001", GB), 5n);
    assert.deepEqual(lsnToSegment(parseLsn("1/40000010"), 1, GB), { name: "000000010000000100000001", offset: 16 });
  });

  test("parseLsn and formatLsn round-trip", () => {
    for (const text of ["0/0", "0/3000028", "1/0", "16/B374D848", "FFFFFFFF/FFFFFFFF"]) {
      assert.equal(formatLsn(parseLsn(text)), text);
    }
    assert.equal(formatLsn(parseLsn("16/b374d848")), "16/B374D848");
    assert.equal(formatLsn(parseLsn(" 0/0000001A ")), "0/1A");
    assert.equal(parseLsn("FFFFFFFF/FFFFFFFF"), 0xffffffffffffffffn);
  });

  test("parseLsn refuses what is not an LSN", () => {
    for (const text of ["", "0", "0/", "/0", "0/G", "123456789/0", "0/0/0", "0x1/0"]) {
      assert.throws(() => parseLsn(text), /not an LSN/, text);
    }
  });
});

describe("comparePosition", () => {
  test("orders by position", () => {
    assert.ok(comparePosition("000000010000000000000003", "000000010000000000000004") < 0);
    assert.ok(comparePosition("000000010000000100000000", "0000000100000000000000FF") > 0);
    assert.equal(comparePosition("000000010000000000000003", "000000010000000000000003"), 0);
  });

  test("ignores the timeline", () => {
    assert.equal(comparePosition("000000020000000000000003", "000000010000000000000003"), 0);
    assert.ok(comparePosition("000000020000000000000003", "000000010000000000000004") < 0);
    assert.ok(comparePosition("000000010000000000000005", "000000030000000000000004") > 0);
  });

  test("works on .backup and .partial names", () => {
    assert.ok(comparePosition("000000010000000000000002.00000028.backup", "000000010000000000000003") < 0);
    assert.equal(comparePosition("000000010000000000000003.partial", "000000020000000000000003"), 0);
  });
});
