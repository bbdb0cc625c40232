/** The version constant and the exit-code table. */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { ConfigError, ExitCode, ioError, IoError, UsageError, WalmgrError } from "../../src/errors";
import { VERSION } from "../../src/version";

/** package.json of this project, found upward from this file (works from test/ and from dist/test/). */
function packageJson(): { name: string; version: string } {
  let d = __dirname;
  for (;;) {
    const candidate = join(d, "package.json");
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, "utf8")) as { name: string; version: string };
      if (pkg.name === "walmgr-ts") return pkg;
    }
    const up = dirname(d);
    if (up === d) throw new Error("package.json of walmgr-ts not found");
    d = up;
  }
}

describe("version", () => {
  test("VERSION equals package.json's version", () => {
    assert.equal(VERSION, packageJson().version);
  });

  test("VERSION is a semantic version", () => {
    assert.match(VERSION, /^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/);
  });
});

describe("exit codes", () => {
  test("the table matches the contract", () => {
    assert.deepEqual(
      { ...ExitCode },
      {
        OK: 0,
        NOT_AVAILABLE: 1,
        USAGE: 2,
        CONFIG: 3,
        LOCK_HELD: 4,
        TRANSPORT: 6,
        DATABASE: 7,
        ARCHIVE_CONFLICT: 8,
        IO: 9,
        INTERNAL: 70,
      },
    );
  });

  test("every code is at most 125", () => {
    for (const code of Object.values(ExitCode)) assert.ok(code >= 0 && code <= 125, String(code));
  });

  test("errors carry their code, name and hint", () => {
    const u = new UsageError("bad");
    assert.equal(u.exitCode, 2);
    assert.equal(u.name, "UsageError");
    assert.ok(u instanceof WalmgrError);
    const c = new ConfigError("bad", "fix it");
    assert.equal(c.exitCode, 3);
    assert.equal(c.hint, "fix it");
  });

  test("ioError names action and path, and keeps WalmgrErrors as they are", () => {
    const enospc = Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
    const e = ioError("cannot write", "/ship/x", enospc);
    assert.ok(e instanceof IoError);
    assert.equal(e.exitCode, 9);
    assert.ok(e.message.includes("cannot write /ship/x"), e.message);
    assert.match(e.hint ?? "", /disk is full/);
    const u = new UsageError("bad");
    assert.equal(ioError("x", "y", u), u);
  });
});
