/** postmaster.pid is believed only when its pid is a postgres for that data directory (pids are reused). */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ExitCode, WalmgrError } from "../../src/errors";
import { isPostmasterOf, readPostmaster, waitStopped } from "../../src/pg/server";

function pidFile(dir: string, pid: number): void {
  writeFileSync(
    join(dir, "postmaster.pid"),
    `${pid}\n${dir}\n1700000000\n5432\n/tmp\nlocalhost\n  1234  5678\nready   \n`,
  );
}

test("a postmaster.pid naming a live process that is not a postgres is not a running server", async () => {
  const dir = mkdtempSync(join(tmpdir(), "walmgr-unit-pm-"));
  const sleeper = spawn("sleep", ["30"], { cwd: dir, stdio: "ignore" });
  try {
    assert.ok(sleeper.pid);
    pidFile(dir, sleeper.pid);
    assert.equal(isPostmasterOf(sleeper.pid, dir), false, "sleep, even with the data directory as its cwd");
    assert.equal(readPostmaster(dir), undefined);
    pidFile(dir, process.pid);
    assert.equal(readPostmaster(dir), undefined, "node is not a postgres either");
    assert.equal(await waitStopped(dir, 1000), undefined);
    pidFile(dir, 999_999_999);
    assert.equal(readPostmaster(dir), undefined, "a pid that does not exist");
  } finally {
    sleeper.kill();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a postmaster.pid that cannot be read is an I/O error naming it, not a crash", () => {
  const dir = mkdtempSync(join(tmpdir(), "walmgr-unit-pm-"));
  try {
    mkdirSync(join(dir, "postmaster.pid")); // EISDIR, for root too
    assert.throws(
      () => readPostmaster(dir),
      (err: unknown) =>
        err instanceof WalmgrError && err.exitCode === ExitCode.IO && err.message.includes("postmaster.pid"),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
