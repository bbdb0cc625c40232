import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { archiveGaps, reach, type Histories } from "../../src/monitor/chain";
import { parseHistory } from "../../src/wal/history";
import { segmentName } from "../../src/wal/names";

const SEG = 16 * 1024 * 1024;
const seg = (tli: number, n: number): string => segmentName(tli, BigInt(n), SEG);
const range = (tli: number, from: number, to: number): string[] =>
  Array.from({ length: to - from + 1 }, (_, i) => seg(tli, from + i));

describe("WAL chain", () => {
  test("parseHistory reads PostgreSQL's format and refuses a damaged line", () => {
    const h = parseHistory(
      "1\t0/5000028\tno recovery target specified\n\n2\t0/9000000\tat restore point\n",
      "3.history",
    );
    assert.deepEqual(
      h.map((x) => [x.parent, x.switchpoint]),
      [
        [1, 0x5000028n],
        [2, 0x9000000n],
      ],
    );
    assert.throws(() => parseHistory("1\tnot-an-lsn\n", "2.history"), /2\.history line 1/);
    assert.throws(() => parseHistory("2\t0/1\tx\n1\t0/2\ty\n", "3.history"), /out of order/);
  });

  test("an unbroken chain reaches the end of the newest segment", () => {
    const names = [...range(1, 3, 9), "00000001.history", "junk"];
    const r = reach({ timeline: 1, startWal: seg(1, 3), stopWal: seg(1, 4) }, names, new Map(), SEG);
    assert.equal(r.consistent, true);
    assert.equal(r.firstMissing, undefined);
    assert.equal(r.lastSegment, seg(1, 9));
    assert.equal(r.reachableLsn, "0/A000000");
    assert.deepEqual(r.gaps, []);
    assert.deepEqual(archiveGaps(names, SEG), []);
  });

  test("a segment missing from the middle: the set reaches the end of the one before, every gap named", () => {
    const names = range(1, 3, 12).filter((n) => n !== seg(1, 6) && n !== seg(1, 9) && n !== seg(1, 10));
    const r = reach({ timeline: 1, startWal: seg(1, 3), stopWal: seg(1, 3) }, names, new Map(), SEG);
    assert.equal(r.consistent, true);
    assert.equal(r.firstMissing, seg(1, 6));
    assert.equal(r.lastSegment, seg(1, 5));
    assert.equal(r.reachableLsn, "0/6000000");
    assert.deepEqual(
      r.gaps.map((g) => [g.from, g.to, g.count]),
      [
        [seg(1, 6), seg(1, 6), 1],
        [seg(1, 9), seg(1, 10), 2],
      ],
    );
    assert.deepEqual(
      archiveGaps(names, SEG).map((g) => [g.from, g.count]),
      [
        [seg(1, 6), 1],
        [seg(1, 9), 2],
      ],
    );
  });

  test("a gap before the backup's stop segment: not consistent, cannot be restored", () => {
    const names = [seg(1, 3), seg(1, 5), seg(1, 6)];
    const r = reach({ timeline: 1, startWal: seg(1, 3), stopWal: seg(1, 4) }, names, new Map(), SEG);
    assert.equal(r.consistent, false);
    assert.equal(r.firstMissing, seg(1, 4));
  });

  test("the start segment itself missing", () => {
    const r = reach({ timeline: 1, startWal: seg(1, 3) }, [seg(1, 1), seg(1, 2)], new Map(), SEG);
    assert.equal(r.consistent, false);
    assert.equal(r.firstMissing, seg(1, 3));
    assert.equal(r.lastSegment, undefined);
  });

  test("follows the newest timeline that branched after the start, across the switch segment", () => {
    // Timeline 2 branched off 1 inside segment 7; 3 off 2 inside segment 10.
    const histories: Histories = new Map([
      [2, parseHistory("1\t0/7000100\tx\n", "00000002.history")],
      [3, parseHistory("1\t0/7000100\tx\n2\t0/A000200\ty\n", "00000003.history")],
    ]);
    // Timeline 1 went on past the switch (the old master): not on the route.
    const names = [...range(1, 4, 9), ...range(2, 7, 10), ...range(3, 10, 12)];
    const r = reach({ timeline: 1, startWal: seg(1, 4), stopWal: seg(1, 5) }, names, histories, SEG);
    assert.equal(r.timeline, 3);
    assert.deepEqual(
      r.path.map((p) => [p.timeline, p.first, p.last]),
      [
        [1, seg(1, 4), seg(1, 6)],
        [2, seg(2, 7), seg(2, 9)],
        [3, seg(3, 10), seg(3, 12)],
      ],
    );
    assert.equal(r.lastSegment, seg(3, 12));
    assert.equal(r.firstMissing, undefined);
    // Timeline 2's first segment missing: recovery stops at the end of timeline 1's part.
    const r2 = reach(
      { timeline: 1, startWal: seg(1, 4) },
      names.filter((n) => n !== seg(2, 7)),
      histories,
      SEG,
    );
    assert.equal(r2.firstMissing, seg(2, 7));
    assert.equal(r2.lastSegment, seg(1, 6));
    assert.equal(r2.reachableLsn, "0/7000000");
  });

  test("a timeline that branched before the backup started is not followed", () => {
    const histories: Histories = new Map([[2, parseHistory("1\t0/3000000\tx\n", "00000002.history")]]);
    const names = [...range(1, 2, 8), ...range(2, 3, 5)];
    const r = reach({ timeline: 1, startWal: seg(1, 5) }, names, histories, SEG);
    assert.equal(r.timeline, 1);
    assert.equal(r.lastSegment, seg(1, 8));
  });
});
