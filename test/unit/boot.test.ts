/** boot's decision: is the server in recovery (and so to be promoted), and has promotion finished? */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { bootDecision, promotionDone, recoveryFiles, type RecoveryFiles } from "../../src/command/replay/run";

const none: RecoveryFiles = { standbySignal: false, recoverySignal: false, recoveryConf: false };

describe("bootDecision", () => {
  test("PostgreSQL 12+: a running server with standby.signal or recovery.signal is promoted", () => {
    assert.equal(bootDecision(true, { ...none, standbySignal: true }), "promote");
    assert.equal(bootDecision(true, { ...none, recoverySignal: true }), "promote");
  });

  test("PostgreSQL 11 and older: a running server with recovery.conf is in recovery, not booted", () => {
    assert.equal(bootDecision(true, { ...none, recoveryConf: true }), "promote");
  });

  test("a running server with none of them has booted; a stopped one is waited for", () => {
    assert.equal(bootDecision(true, none), "booted");
    assert.equal(bootDecision(false, { ...none, recoveryConf: true }), "not-running");
    assert.equal(bootDecision(false, none), "not-running");
  });

  test("recoveryFiles reads a data directory (recovery.done does not count)", () => {
    const dir = mkdtempSync(join(tmpdir(), "walmgr-unit-boot-"));
    try {
      assert.deepEqual(recoveryFiles(dir), none);
      writeFileSync(join(dir, "recovery.conf"), "standby_mode = 'on'\n");
      assert.deepEqual(recoveryFiles(dir), { ...none, recoveryConf: true });
      rmSync(join(dir, "recovery.conf"));
      writeFileSync(join(dir, "recovery.done"), "");
      writeFileSync(join(dir, "standby.signal"), "");
      assert.deepEqual(recoveryFiles(dir), { ...none, standbySignal: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("promotionDone", () => {
  test("12+: signal file gone, status ready, pg_control in production", () => {
    assert.equal(promotionDone(none, "ready", true), true);
    assert.equal(promotionDone({ ...none, standbySignal: true }, "ready", true), false);
    assert.equal(promotionDone(none, "ready", false), false, "the end-of-recovery record is not written yet");
    assert.equal(promotionDone(none, "standby", true), false);
  });

  test("11 and older: recovery.conf renamed to recovery.done; 9.x writes no status line", () => {
    assert.equal(promotionDone({ ...none, recoveryConf: true }, "ready", true), false);
    assert.equal(promotionDone(none, "ready", true), true);
    assert.equal(promotionDone(none, "", true), true);
  });
});
