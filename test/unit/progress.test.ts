/** The progress reporter (src/progress.ts) and the colour rules (src/colour.ts). */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { colour, colourEnabled } from "../../src/colour";
import { Logger, type StderrOverlay } from "../../src/log";
import { etaSeconds, formatBytes, formatClock, formatSummary, startProgress } from "../../src/progress";

const MiB = 1024 * 1024;

/** A terminal (or not) that records what is written to it. */
function fakeStream(isTTY: boolean, columns = 120): { stream: NodeJS.WriteStream; writes: string[] } {
  const writes: string[] = [];
  const stream = {
    isTTY,
    columns,
    write: (s: string) => {
      writes.push(s);
      return true;
    },
  } as unknown as NodeJS.WriteStream;
  return { stream, writes };
}

/**
 * A logger that records its lines; like the real one, a line shown (info) first hides the
 * overlay. `fileOnly` lines are recorded apart.
 */
function fakeLog(verbosity = 2): {
  log: Logger;
  lines: string[];
  fileLines: string[];
  overlay: () => StderrOverlay | undefined;
} {
  const lines: string[] = [];
  const fileLines: string[] = [];
  let overlay: StderrOverlay | undefined;
  const log = {
    verbosity,
    info: (m: string) => {
      overlay?.hide();
      lines.push(m);
    },
    fileOnly: (_level: string, m: string) => fileLines.push(m),
    setOverlay: (o: StderrOverlay | undefined) => (overlay = o),
  } as unknown as Logger;
  return { log, lines, fileLines, overlay: () => overlay };
}

/**
 * Counts the interval timers started and not cleared while `fn` runs (unref'd timers do not
 * show in process.getActiveResourcesInfo(), so the calls are watched instead).
 */
function watchIntervals(): { running: () => number; stop: () => void } {
  const live = new Set<unknown>();
  const realSet = globalThis.setInterval;
  const realClear = globalThis.clearInterval;
  globalThis.setInterval = (...args: Parameters<typeof setInterval>) => {
    const h = realSet(...args);
    live.add(h);
    return h;
  };
  globalThis.clearInterval = (h: Parameters<typeof clearInterval>[0]) => {
    live.delete(h);
    realClear(h);
  };
  return {
    running: () => live.size,
    stop: () => {
      globalThis.setInterval = realSet;
      globalThis.clearInterval = realClear;
    },
  };
}

describe("progress formatting", () => {
  test("bytes in binary units", () => {
    assert.equal(formatBytes(0), "0 B");
    assert.equal(formatBytes(1023), "1023 B");
    assert.equal(formatBytes(1536), "1.5 KiB");
    assert.equal(formatBytes(45.2 * MiB), "45.2 MiB");
    assert.equal(formatBytes(1.5 * 1024 * MiB), "1.50 GiB");
    assert.equal(formatBytes(3 * 1024 * 1024 * MiB), "3.00 TiB");
    assert.equal(formatBytes(MiB - 0.1), "1.0 MiB", "never 1024.0 KiB");
  });

  test("durations as a clock, rounded up", () => {
    assert.equal(formatClock(0), "0:00");
    assert.equal(formatClock(0.2), "0:01");
    assert.equal(formatClock(7), "0:07");
    assert.equal(formatClock(754), "12:34");
    assert.equal(formatClock(3723), "1:02:03");
  });

  test("ETA from what is left and the rate; none without a total or a rate", () => {
    assert.equal(etaSeconds(25 * MiB, 100 * MiB, 5 * MiB), 15);
    assert.equal(etaSeconds(120, 100, 10), 0, "past the total (files grew): never negative");
    assert.equal(etaSeconds(10, undefined, 10), undefined);
    assert.equal(etaSeconds(10, 100, 0), undefined);
  });

  test("the summary line: counts, time, rate, and the caller's text", () => {
    assert.equal(
      formatSummary("backup", 2000, 10 * MiB, 12, "WAL A .. B"),
      "backup done in 2.0 s: 12 files, 10.0 MiB (5.0 MiB/s); WAL A .. B",
    );
    assert.equal(formatSummary("restore", 1500, 0, 0), "restore done in 1.5 s", "no zero counts");
    assert.equal(formatSummary("verify", 125_000, 0, 3), "verify done in 2:05: 3 files");
  });
});

describe("progress without a terminal", () => {
  test("one log line per stage and a summary; no \\r, nothing per chunk, nothing on the stream", () => {
    const { stream, writes } = fakeStream(false);
    const { log, lines, fileLines } = fakeLog();
    let t = 0;
    const p = startProgress("backup", log, { stream, now: () => t });
    p.stage("starting backup (pg_backup_start)");
    p.stage("copying data directory", { bytes: 3 * MiB, files: 3 });
    for (let i = 0; i < 3000; i++) {
      t += 1;
      p.add(1024, i % 1000 === 999 ? 1 : 0);
    }
    p.stage("stopping backup, waiting for WAL");
    t += 1000;
    p.done("WAL A .. B");
    assert.deepEqual(lines, [
      "backup: starting backup (pg_backup_start)",
      "backup: copying data directory (3 files, 3.0 MiB)",
      "backup: stopping backup, waiting for WAL",
      "backup done in 4.0 s: 3 files, 2.9 MiB (750.0 KiB/s); WAL A .. B",
    ]);
    assert.deepEqual(writes, []);
    assert.deepEqual(fileLines, [], "the lines went through info, which writes the logfile too");
    assert.ok(!lines.join("").includes("\r"));
    p.done();
    assert.equal(lines.length, 4, "done twice logs once");
  });

  test("with a real logger: the logfile gets exactly the stage lines and the summary", () => {
    const dir = mkdtempSync(join(tmpdir(), "walmgr-progress-"));
    try {
      const logfile = join(dir, "log");
      // verbosity 0 (-q): nothing to stderr, the logfile gets everything.
      const log = new Logger({ verbosity: 0, jobName: "test", logfile });
      const { stream, writes } = fakeStream(true);
      const p = startProgress("restore", log, { stream });
      p.stage("stopping server");
      p.stage("copying data.master", { files: 2 });
      p.add(100, 1);
      p.add(100, 1);
      p.done();
      log.close();
      const text = readFileSync(logfile, "utf8");
      assert.ok(!text.includes("\r"));
      const got = text.trimEnd().split("\n");
      assert.equal(got.length, 3, text);
      assert.match(got[0] ?? "", / INFO test: restore: stopping server$/);
      assert.match(got[1] ?? "", / INFO test: restore: copying data\.master \(2 files\)$/);
      assert.match(got[2] ?? "", / INFO test: restore done in \d+\.\d s: 2 files, 200 B/);
      assert.deepEqual(writes, [], "-q: no progress line even at a terminal");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("--json: no progress line even at a terminal", () => {
    const { stream, writes } = fakeStream(true);
    const { log, lines } = fakeLog();
    const p = startProgress("verify", log, { stream, json: true });
    p.stage("hashing");
    p.done();
    assert.deepEqual(writes, []);
    assert.equal(lines.length, 2);
  });
});

describe("progress at a terminal", () => {
  test("redraws one line with \\r, at most 10 times a second however often add is called", () => {
    const { stream, writes } = fakeStream(true);
    const { log, lines, fileLines } = fakeLog();
    let t = 1_000_000;
    const timers = watchIntervals();
    const p = startProgress("backup", log, { stream, now: () => t });
    assert.equal(timers.running(), 1, "one (unref'd) timer while shown");
    p.stage("copying data directory", { bytes: 100 * MiB, files: 100 });
    assert.equal(writes.length, 1, "a new stage is drawn at once");
    assert.equal(writes[0], "\rbackup: copying data directory  0 B / 100.0 MiB (0%)  0/100 files  0:00\x1b[K");
    assert.deepEqual(fileLines, ["backup: copying data directory (100 files, 100.0 MiB)"], "the logfile still gets it");
    assert.deepEqual(lines, [], "no log line on stderr for a stage");
    // 2 s of chunks, one every ms: 2000 calls.
    for (let i = 0; i < 2000; i++) {
      t += 1;
      p.add(10 * 1024, i % 40 === 39 ? 1 : 0);
    }
    const redraws = writes.length - 1;
    assert.ok(redraws >= 15 && redraws <= 20, `${redraws} redraws in 2 s`);
    for (const w of writes) assert.ok(w.startsWith("\r") && w.endsWith("\x1b[K"), JSON.stringify(w));
    const last = writes[writes.length - 1] ?? "";
    // 20000 KiB in 2 s: 9.8 MiB/s over the window; 80.5 MiB left: 9 s.
    assert.match(last, /19\.5 MiB \/ 100\.0 MiB \(19%\) {2}50\/100 files {2}9\.8 MiB\/s {2}ETA 0:09/);
    try {
      p.done("WAL A .. B");
    } finally {
      timers.stop();
    }
    assert.equal(writes[writes.length - 1], "\r\x1b[K", "done clears the line");
    assert.deepEqual(lines, ["backup done in 2.0 s: 50 files, 19.5 MiB (9.8 MiB/s); WAL A .. B"]);
    assert.equal(timers.running(), 0, "no timer left after done");
    const n = writes.length;
    t += 1000;
    p.add(1, 1);
    p.stage("late");
    assert.equal(writes.length, n, "nothing drawn after done");
  });

  test("a process that never reaches done() can still exit (the timer is unref'd)", () => {
    const script = `
      const { startProgress } = require(${JSON.stringify(join(__dirname, "..", "..", "src", "progress.js"))});
      const stream = { isTTY: true, columns: 80, write: () => true };
      const log = { verbosity: 2, info() {}, fileOnly() {}, setOverlay() {} };
      startProgress("backup", log, { stream }).stage("copying");
    `;
    const res = spawnSync(process.execPath, ["-e", script], { timeout: 10_000, encoding: "utf8" });
    assert.equal(res.status, 0, res.stderr);
  });

  test("the rate is over the last few seconds, not since the start", () => {
    const { stream, writes } = fakeStream(true);
    const { log } = fakeLog();
    let t = 0;
    const p = startProgress("restore", log, { stream, now: () => t });
    p.stage("copying", { bytes: 1000 * MiB });
    // 10 s fast (10 MiB/s), then 10 s slow (1 MiB/s), in 100 ms steps.
    for (let i = 0; i < 200; i++) {
      t += 100;
      p.add(i < 100 ? MiB : MiB / 10);
    }
    const last = writes[writes.length - 1] ?? "";
    assert.match(last, / 1\.0 MiB\/s /, last);
    p.done();
  });

  test("a log line clears the progress line first; the next redraw brings it back", () => {
    const { stream, writes } = fakeStream(true);
    const { log, lines, overlay } = fakeLog();
    let t = 0;
    const p = startProgress("backup", log, { stream, now: () => t });
    assert.ok(overlay(), "registered with the logger");
    t += 500;
    p.add(1, 0);
    assert.deepEqual(writes, [], "nothing drawn before the first stage");
    p.stage("copying data directory");
    log.info("a warning meanwhile");
    assert.deepEqual(writes.slice(-1), ["\r\x1b[K"]);
    assert.deepEqual(lines, ["a warning meanwhile"]);
    const n = writes.length;
    t += 50;
    p.add(MiB, 1);
    assert.equal(writes.length, n, "not yet: at most every 100 ms");
    t += 60;
    p.add(MiB, 1);
    assert.equal(writes.length, n + 1);
    assert.match(writes[n] ?? "", /^\rbackup: copying data directory {2}2\.0 MiB {2}2 files {2}0:01/);
    p.done();
    assert.equal(overlay(), undefined, "unregistered at the end");
  });

  test("the line never reaches the terminal's last column (a wrapped line cannot be redrawn)", () => {
    const { stream, writes } = fakeStream(true, 40);
    const { log } = fakeLog();
    const p = startProgress("backup", log, { stream, now: () => 0 });
    p.stage("copying a data directory with a long name", { bytes: 10 * MiB, files: 10 });
    const text = (writes[0] ?? "").replace("\r", "").replace("\x1b[K", "");
    assert.equal(text.length, 39);
    p.done();
  });

  test("a narrow terminal loses the files count and the percentage before the rate and the time left", () => {
    const { stream, writes } = fakeStream(true, 82);
    const { log } = fakeLog();
    let t = 0;
    const p = startProgress("backup", log, { stream, now: () => t });
    p.stage("copying data directory", { bytes: 1000 * MiB, files: 900 });
    for (let i = 0; i < 30; i++) {
      t += 100;
      p.add(10 * MiB, 3);
    }
    const last = (writes[writes.length - 1] ?? "").replace("\r", "").replace("\x1b[K", "");
    assert.equal(last, "backup: copying data directory  300.0 MiB / 1000.0 MiB  100.0 MiB/s  ETA 0:07");
    p.done();
  });
});

describe("colour", () => {
  test("only at a terminal, never with NO_COLOR or TERM=dumb, and FORCE_COLOR does not force a pipe", () => {
    const tty = { isTTY: true };
    const pipe = { isTTY: false };
    assert.equal(colour("ok", "OK", pipe, {}), "OK");
    assert.equal(colour("fail", "FAIL", tty, {}), "\x1b[31mFAIL\x1b[0m");
    assert.equal(colour("warn", "WARN", tty, {}), "\x1b[33mWARN\x1b[0m");
    assert.equal(colour("ok", "OK", tty, {}), "\x1b[32mOK\x1b[0m");
    assert.equal(colour("dim", "x", tty, {}), "\x1b[2mx\x1b[0m");
    assert.equal(colour("ok", "OK", tty, { NO_COLOR: "1" }), "OK");
    assert.equal(colour("ok", "OK", tty, { NO_COLOR: "" }), "\x1b[32mOK\x1b[0m", "an empty NO_COLOR is unset");
    assert.equal(colour("ok", "OK", tty, { TERM: "dumb" }), "OK");
    assert.equal(colour("ok", "OK", pipe, { FORCE_COLOR: "1" }), "OK");
    assert.equal(colourEnabled(tty, { NO_COLOR: "1", FORCE_COLOR: "1" }), false);
  });

  test("a file descriptor that is not a terminal gets no colour", () => {
    // The test runner's stdout and stderr are pipes.
    assert.equal(colourEnabled(1, {}), false);
    assert.equal(colourEnabled(2, {}), false);
    assert.equal(colour("fail", "x"), "x");
  });

  test("the logfile never gets colour", () => {
    const dir = mkdtempSync(join(tmpdir(), "walmgr-colour-"));
    try {
      const logfile = join(dir, "log");
      const log = new Logger({ verbosity: -1, jobName: "test", logfile });
      log.warn("careful");
      log.close();
      const text = readFileSync(logfile, "utf8");
      assert.match(text, / WARNING test: careful\n$/);
      assert.ok(!text.includes("\x1b"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
