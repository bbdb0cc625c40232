/** The shared test fixtures that decide pass or fail by themselves (test/helpers/env.ts, fs.ts). */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { howEnded, ok } from "../helpers/env";
import { readPrefix, snapshot } from "../helpers/fs";

const dir = mkdtempSync(join(tmpdir(), "walmgr-helpers-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("ok() passes exit 0 through and names how a failed child ended: its exit code, or the signal that killed it", () => {
  const good = { status: 0, signal: null, stdout: "out", stderr: "" };
  assert.equal(ok(good, "setup"), good);
  assert.throws(
    () => ok({ status: 3, signal: null, stdout: "", stderr: "bad key" }, "setup"),
    /setup failed \(exit 3\):\n\nbad key/,
  );
  // A child killed by a signal has no exit status: the message says which signal, not "exit null".
  assert.throws(
    () => ok({ status: null, signal: "SIGKILL", stdout: "half", stderr: "" }, "wal-backup"),
    (err: Error) =>
      /wal-backup failed \(killed by SIGKILL\):\nhalf/.test(err.message) && !/exit null/.test(err.message),
  );
  assert.equal(howEnded({ status: null, signal: "SIGTERM" }), "killed by SIGTERM");
  assert.equal(howEnded({ status: 1, signal: null }), "exit 1");
});

test("snapshot() changes when a file's content, mode or presence changes, and not otherwise", () => {
  const tree = join(dir, "tree");
  mkdirSync(join(tree, "sub"), { recursive: true });
  writeFileSync(join(tree, "sub", "f"), "one");
  const first = snapshot(tree);
  assert.deepEqual(snapshot(tree), first, "reading changes nothing");
  assert.deepEqual(
    first.map((l) => l.split(" ")[0]),
    [join(tree, "sub"), join(tree, "sub", "f")],
  );
  writeFileSync(join(tree, "sub", "f"), "two!");
  assert.notDeepEqual(snapshot(tree), first, "a rewritten file shows");
  writeFileSync(join(tree, "g"), "");
  assert.ok(
    snapshot(tree).some((l) => l.startsWith(`${join(tree, "g")} 0 `)),
    "a new file shows",
  );
});

test("readPrefix() reads the first bytes asked for, or the whole file when it is shorter", () => {
  const f = join(dir, "bytes");
  writeFileSync(f, Buffer.from("0123456789"));
  assert.equal(readPrefix(f, 4).toString(), "0123");
  assert.equal(readPrefix(f, 100).toString(), "0123456789");
  assert.equal(readPrefix(f, 0).length, 0);
});
