import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { cacheFile, writeCodeCache } from "../../src/cli/code-cache";

const dir = mkdtempSync(join(tmpdir(), "walmgr-cache-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const loader = join(__dirname, "..", "..", "src", "cli", "code-cache.js");

/** Runs `bundle` through the loader (argv as under `node BUNDLE ARGS`); returns its stdout lines and whether the cache was used. */
function run(bundle: string, ...args: string[]): string[] {
  const r = spawnSync(
    process.execPath,
    [
      "-e",
      `const used = require(${JSON.stringify(loader)}).runCached(process.argv[1]); console.log("cache " + used);`,
      bundle,
      ...args,
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split("\n");
}

test("a bundle runs as its own module, with or without its cache; a cache is used only for the file it was made from", () => {
  const bundle = join(dir, "b.js");
  // What a bundle relies on: its own exports/module, __filename, __dirname, require of built-ins and of siblings.
  writeFileSync(join(dir, "sib.js"), "module.exports = 'sibling';\n");
  writeFileSync(
    bundle,
    `"use strict";\nmodule.exports.x = 1;\nconsole.log([__filename === ${JSON.stringify(bundle)}, __dirname === ${JSON.stringify(dir)}, require("./sib"), typeof require("node:path").join, exports === module.exports, process.argv.slice(2).join(",")].join(" "));\n`,
  );
  assert.deepEqual(run(bundle, "a", "b"), ["true true sibling function true a,b", "cache false"]);
  writeCodeCache(bundle);
  assert.deepEqual(run(bundle, "a", "b"), ["true true sibling function true a,b", "cache true"]);
  // Rebuilt (same length, other content) after the cache was written: the cache is not used.
  writeFileSync(bundle, `"use strict";\nconsole.log("rebuilt bundle, same length as it happens to be not");\n`);
  utimesSync(bundle, new Date(), new Date(Date.now() + 5000));
  assert.deepEqual(run(bundle), ["rebuilt bundle, same length as it happens to be not", "cache false"]);
  // A damaged cache file is ignored too.
  writeFileSync(cacheFile(bundle), "garbage");
  assert.deepEqual(run(bundle), ["rebuilt bundle, same length as it happens to be not", "cache false"]);
});

test("the built wal-archive and wal-restore fronts run through their caches", () => {
  for (const name of ["wal-archive", "wal-restore"]) {
    const bundle = join(__dirname, "..", "..", "bin", `${name}.js`);
    // The bundle's main is async: its line comes after runCached has returned.
    const lines = run(bundle, "--version");
    assert.equal(lines[0], "cache true", `${name}: the build's cache is taken`);
    assert.match(lines[1] ?? "", new RegExp(`^${name} \\(walmgr-ts\\)`));
  }
});
