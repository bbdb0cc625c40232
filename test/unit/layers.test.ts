/**
 * The layers of src/ (docs/architecture.md): a module imports only from its own layer or the ones
 * below it. main → cli → command → monitor → slave directory → storage → pg, config, wal →
 * utilities. A new import that points up fails here; so does an exception below that is gone
 * (then remove it from the list).
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, test } from "node:test";
import { REPO_ROOT } from "../helpers/env";

const SRC = join(REPO_ROOT, "src");

/** Layer of each top-level folder of src/, top (0) to bottom. */
const FOLDERS: Record<string, number> = {
  main: 0,
  cli: 1,
  command: 2,
  monitor: 3,
  slavedir: 4,
  // The block repository's objects (docs/block-repository.md): on storage, under the commands.
  repo: 4.5,
  storage: 5,
  pg: 6,
  config: 7,
  wal: 7,
};

/** Files at src/'s root that belong to a layer above the utilities. */
const ROOT_FILES: Record<string, number> = {
  // What a command runs with (config, log), and running configured commands with it.
  "context.ts": 6,
  "shell.ts": 6,
};

/** Every other file at src/'s root: utilities (errors, log, proc, holder, …). */
const UTILITIES = 8;

/** Upward imports not removed yet: importer → imported, relative to src/, and why. */
const KNOWN: Record<string, string> = {};

function layerOf(rel: string): number {
  const [first, ...rest] = rel.split(sep);
  if (rest.length === 0) return ROOT_FILES[first ?? ""] ?? UTILITIES;
  const layer = FOLDERS[first ?? ""];
  if (layer === undefined)
    throw new Error(`src/${first}/ has no layer: add it to FOLDERS here and to docs/architecture.md`);
  return layer;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** The relative imports of a file (static, dynamic, require and re-exports), as files under src/. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/(?:\bfrom|\bimport\(|\brequire\()\s*"(\.{1,2}\/[^"]+)"/g)].map((m) =>
    relative(SRC, resolve(dirname(file), (m[1] ?? "").replace(/\.js$/, "")) + ".ts"),
  );
}

describe("layers of src/", () => {
  test("no module imports from a layer above its own (but the known exceptions)", () => {
    const up: string[] = [];
    for (const file of sources(SRC)) {
      const from = relative(SRC, file);
      for (const to of importsOf(file)) {
        if (layerOf(to) < layerOf(from)) up.push(`${from} -> ${to}`);
      }
    }
    const unknown = up.filter((e) => !(e in KNOWN));
    assert.deepEqual(unknown, [], "imports that point up a layer (see docs/architecture.md)");
    const gone = Object.keys(KNOWN).filter((e) => !up.includes(e));
    assert.deepEqual(gone, [], "exceptions that no longer occur: remove them from KNOWN");
  });

  test("the check sees an upward import", () => {
    assert.ok(layerOf(join("monitor", "x.ts")) > layerOf(join("command", "y.ts")));
    assert.ok(layerOf("holder.ts") > layerOf(join("storage", "s3", "driver.ts")), "the lock holder is below storage");
    assert.ok(
      layerOf(join("slavedir", "lock.ts")) < layerOf(join("storage", "driver.ts")),
      "locks are of the slave directory",
    );
    assert.throws(() => layerOf(join("newfolder", "x.ts")), /has no layer/);
  });
});
