/**
 * The settings table (src/config/settings.ts) is the one declaration of every setting: the loader
 * holds values to its ranges (exit 3 naming file, line, section and key), raises the two settings
 * whose low values were always raised, suggests the nearest key for an unknown one, and Config's
 * typed accessors refuse a key it lacks at compile time.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { loadConfig, type Config } from "../../src/config/load";
import { SETTINGS, settingSpec } from "../../src/config/settings";
import { ConfigError, ExitCode } from "../../src/errors";
import { binPath } from "../helpers/env";

const dir = mkdtempSync(join(tmpdir(), "walmgr-settings-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

function ini(text: string): string {
  const file = join(dir, `c${n++}.ini`);
  writeFileSync(file, text);
  return file;
}

const load = (text: string): Config => loadConfig(ini(text));

/** Loading `text` fails with a ConfigError (exit 3) whose message holds every one of `parts`. */
function refused(text: string, parts: string[]): void {
  const file = ini(text);
  assert.throws(
    () => loadConfig(file),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.exitCode, ExitCode.CONFIG);
      for (const p of [file, ...parts]) assert.ok(err.message.includes(p), `${JSON.stringify(p)} in ${err.message}`);
      return true;
    },
  );
}

describe("ranges, held when the file is loaded", () => {
  test("a number out of its range exits 3 naming file, line, section and key", () => {
    refused("[wal-master]\nslave = /s\ns3_retries = 21\n", [":3", "[wal-master]", "s3_retries", "0 to 20"]);
    refused("[wal-slave]\nslave = /s\ns3_part_size = 1048576\n", ["[wal-slave]", "s3_part_size", "5 MiB"]);
    refused("[wal-slave]\nslave = /s\ns3_part_size = 1073741825\n", ["s3_part_size", "1 GiB"]);
    refused("[wal-master]\nslave = /s\nbackup_archive_timeout = 0\n", ["backup_archive_timeout", "above zero"]);
    // From [DEFAULT] too, named as written there.
    refused("[DEFAULT]\ns3_retries = 99\n[wal-slave]\nslave = /s\n", ["[DEFAULT]", "s3_retries"]);
  });

  test("a word setting takes only its words (exit 3 naming them); unset is its default", () => {
    refused("[wal-master]\nslave = /s\nbackup_format = blocks\n", ["backup_format", "plain, repo"]);
    refused("[wal-master]\nslave = /s\ncompress_type = zip\n", ["compress_type", "none, lz4, zstd, gzip"]);
    refused("[wal-master]\nslave = /s\nbackup_parallel = 0\n", ["backup_parallel", "1 to 64"]);
    assert.equal(load("[wal-master]\nslave = /s\n").choice("backup_format"), "plain");
    assert.equal(load("[wal-master]\nslave = /s\nbackup_format = repo\n").choice("backup_format"), "repo");
    assert.equal(load("[wal-master]\nslave = /s\n").get("backup_repo"), "/s/repo");
  });

  test("the bounds themselves are in the range", () => {
    assert.equal(load("[wal-slave]\nslave = /s\ns3_retries = 20\n").int("s3_retries"), 20);
    assert.equal(load("[wal-slave]\nslave = /s\ns3_retries = 0\n").int("s3_retries"), 0);
    assert.equal(load("[wal-slave]\nslave = /s\ns3_part_size = 5242880\n").int("s3_part_size"), 5 << 20);
    assert.equal(load("[wal-slave]\nslave = /s\ns3_part_size = 1073741824\n").int("s3_part_size"), 1 << 30);
    assert.equal(load("[wal-master]\nslave = /s\nbackup_archive_timeout = 0.5\n").float("backup_archive_timeout"), 0.5);
  });

  test("loop_delay below 0.1 is raised to 0.1 with a warning; archive_parallel 0 is taken as 1 quietly", () => {
    const fast = load("[wal-master]\nslave = /s\nloop_delay = 0.01\n");
    assert.equal(fast.float("loop_delay"), 0.1);
    assert.equal(fast.warnings.length, 1);
    assert.match(fast.warnings[0] ?? "", /\[wal-master\] loop_delay = 0\.01 is too small; using 0\.1/);
    const zero = load("[wal-master]\nslave = /s\narchive_parallel = 0\n");
    assert.equal(zero.int("archive_parallel"), 1);
    assert.deepEqual(zero.warnings, []);
  });

  test("every default is of its kind and in its range (a default the loader would refuse is a bug here)", () => {
    for (const [key, spec] of Object.entries(SETTINGS)) {
      const value = "default" in spec ? spec.default : undefined;
      if (value === undefined) continue;
      const cfg = load(`[${spec.role === "slave" ? "wal-slave" : "wal-master"}]\nslave = /s\n${key} = ${value}\n`);
      assert.equal(cfg.get(key), value, key);
      assert.deepEqual(cfg.warnings, [], key);
    }
  });

  test("wal-ctl exits 3 for an out-of-range setting before doing anything", () => {
    const file = ini("[wal-master]\nslave = /s\ns3_retries = 100\n");
    const r = spawnSync(process.execPath, [binPath("wal-ctl"), file, "status"], { encoding: "utf8" });
    assert.equal(r.status, ExitCode.CONFIG, r.stderr);
    assert.match(r.stderr, /\[wal-master\] s3_retries/);
  });
});

describe("unknown keys", () => {
  test("draw a warning with the nearest setting when one is close", () => {
    const cfg = load("[wal-slave]\nslave = /s\nrestore_prefech = 4\nzzzzzz = 1\n");
    assert.match(
      cfg.warnings[0] ?? "",
      /unknown setting 'restore_prefech' is ignored \(did you mean 'restore_prefetch'\?\)/,
    );
    assert.match(cfg.warnings[1] ?? "", /unknown setting 'zzzzzz' is ignored \(check the spelling\)/);
  });
});

describe("typed accessors", () => {
  test("take only settings of their kind (checked by the compiler; the lines below must not compile)", () => {
    const cfg = load("[wal-slave]\nslave = /s\n");
    // @ts-expect-error: a misspelled key
    const where: string = cfg.where("restore_prefech");
    assert.match(where, /\[wal-slave\] restore_prefech$/);
    // @ts-expect-error: restore_prefetch is an int, not a float
    const depth: number = cfg.float("restore_prefetch");
    assert.equal(depth, 8);
    assert.equal(settingSpec("constructor"), undefined);
  });
});
