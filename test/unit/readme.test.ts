/**
 * README.md's generated parts (scripts/readme.ts: the list of wal-ctl commands, the settings
 * table) are what the code declares: a command or setting added, renamed or re-described without
 * `npm run readme` fails here.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { README, renderReadme } from "../../scripts/readme";

describe("README.md's generated parts", () => {
  test("are up to date (else: npm run readme)", async () => {
    const text = readFileSync(README, "utf8");
    assert.equal(await renderReadme(text, README), text, "README.md is stale: run npm run readme");
  });

  test("a stale part is told apart: a command's line edited by hand, or missing", async () => {
    const text = readFileSync(README, "utf8");
    const edited = text.replace(/^- `status`: .*$/m, "- `status`: something else");
    assert.notEqual(edited, text);
    assert.notEqual(await renderReadme(edited, README), edited);
    const dropped = text.replace(/^- `verify \[SET\]`: .*\n/m, "");
    assert.notEqual(dropped, text);
    assert.notEqual(await renderReadme(dropped, README), dropped);
  });

  test("a settings row edited by hand is stale too", async () => {
    const text = readFileSync(README, "utf8");
    const edited = text.replace(/^\| `restore_prefetch` .*$/m, "| `restore_prefetch` | slave | 9 | edited |");
    assert.notEqual(edited, text);
    assert.notEqual(await renderReadme(edited, README), edited);
  });

  test("missing markers are an error, not a silent pass", async () => {
    const text = readFileSync(README, "utf8").replace(/^<!-- end generated:commands -->$/m, "");
    await assert.rejects(renderReadme(text, README), /generated:commands/);
  });
});
