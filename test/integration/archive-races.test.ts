/**
 * wal-archive and wal-restore attacked the way a split brain, a kill -9 or a planted file would:
 * the real executables against a local slave directory, spawned as the server user. No
 * PostgreSQL server is needed, so the races repeat cheaply.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, lstatSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { removeTempDir, runBin, spawnBin } from "../helpers/env";
import { serverlessSlave, writeFileAs } from "../helpers/walmgr";

let base: string;
let completed: string;
let ini: string;
let slaveIni: string;

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** A WAL-like source file owned by the server user, mode 0644 (as a test writes it). */
function source(label: string, data: Buffer): string {
  const path = join(base, `src-${label}`);
  writeFileAs(path, "");
  writeFileSync(path, data);
  return path;
}

function temps(): string[] {
  return readdirSync(completed).filter((n) => n.startsWith(".walmgr-tmp."));
}

/** Segment name number `i` (timeline 1, log 0x1A). */
function segName(i: number): string {
  return `000000010000001A${i.toString(16).toUpperCase().padStart(8, "0")}`;
}

before(() => {
  ({ base, completed, ini, slaveIni } = serverlessSlave("archrace"));
});

after(() => removeTempDir(base));

describe("two masters archive other content under one name at once", () => {
  test("exactly one wins (0), the other exits 8, and the winner's bytes are served verified (30 tries)", async () => {
    const a = randomBytes(4 << 20);
    const b = randomBytes(4 << 20);
    const srcA = source("race-a", a);
    const srcB = source("race-b", b);
    const failures: string[] = [];
    for (let i = 0; i < 30; i++) {
      const name = segName(i);
      const runs = [spawnBin("wal-archive", [ini, srcA, name]), spawnBin("wal-archive", [ini, srcB, name])];
      const ends = await Promise.all(runs.map((r) => r.exited));
      const codes = ends.map((e) => e.status);
      assert.deepEqual(
        [...codes].sort(),
        [0, 8],
        `try ${i}: exit codes ${JSON.stringify(codes)}\n${runs.map((r) => r.output()).join("\n")}`,
      );
      const winner = codes[0] === 0 ? a : b;
      const loser = runs[codes[0] === 0 ? 1 : 0];
      assert.match(loser?.output() ?? "", /already archived with other content/);
      const out = join(base, `restored-${i}`);
      const res = runBin("wal-restore", [slaveIni, name, out]);
      if (res.status !== 0) {
        failures.push(`try ${i}: wal-restore exit ${String(res.status)}: ${res.stderr.trim()}`);
        continue;
      }
      assert.match(res.stderr, /^((?!unverified).)*$/s, "the winner's file must carry its checksum");
      assert.equal(sha(readFileSync(out)), sha(winner), `try ${i}: served bytes are not the winner's`);
      const sum = readFileSync(join(completed, `.${name}.sha256`), "utf8");
      assert.equal(sum, `${sha(winner)}  ${name}\n`, `try ${i}: the checksum is not the winner's`);
    }
    assert.equal(
      failures.length,
      0,
      `the winner's segment was unrestorable in ${failures.length} of 30 tries:\n${failures.slice(0, 3).join("\n")}`,
    );
    assert.deepEqual(temps(), []);
  });
});

describe("kill -9 of wal-archive mid-copy", () => {
  test("the temp file is 0600 from its creation, and the next wal-archive removes it", async () => {
    const name = segName(0x100);
    // 192 MiB (mode 0644, as the tests write WAL): the copy must run long enough to be caught.
    const chunk = randomBytes(8 << 20);
    const src = source("big", Buffer.concat(Array.from({ length: 24 }, () => chunk)));
    const run = spawnBin("wal-archive", [ini, src, name]);
    const modes = new Map<string, number>();
    const deadline = Date.now() + 30_000;
    // Polls without yielding: the window the old code left (created with the source's mode,
    // chmod only after copy and fsync) lasts milliseconds.
    while (modes.size === 0 && Date.now() < deadline && !existsSync(join(completed, name))) {
      for (const t of temps()) {
        try {
          modes.set(t, lstatSync(join(completed, t)).mode & 0o777);
        } catch {
          // gone between readdir and lstat
        }
      }
    }
    run.child.kill("SIGKILL");
    await run.exited;
    assert.ok(modes.size > 0, `no temp file was seen while wal-archive ran: ${run.output()}`);
    for (const [t, mode] of modes) assert.equal(mode & 0o077, 0, `${t} was mode ${mode.toString(8)}`);
    const leaked = temps();
    assert.ok(leaked.length > 0, "the kill should have left the temp file behind (else the test proves nothing)");
    assert.ok(!existsSync(join(completed, name)), "a killed copy must not appear under its final name");
    // The next wal-archive (of another segment: the dead writer's temp is litter whatever its name).
    const next = source("next", randomBytes(64 << 10));
    const res = runBin("wal-archive", [ini, next, segName(0x101)]);
    assert.equal(res.status, 0, res.stderr);
    assert.deepEqual(temps(), [], "the dead writer's temp file must be removed on the way in");
  });
});

describe("planted symbolic links", () => {
  test("wal-restore refuses a symlink in completed_wals (exit 9, nothing at %p)", () => {
    const name = segName(0x200);
    const elsewhere = source("elsewhere", randomBytes(8192));
    symlinkSync(elsewhere, join(completed, name));
    // Even with a matching checksum beside it: only regular files are archived WAL.
    writeFileAs(join(completed, `.${name}.sha256`), `${sha(readFileSync(elsewhere))}  ${name}\n`);
    const out = join(base, "restored-symlink");
    const res = runBin("wal-restore", [slaveIni, name, out]);
    assert.equal(res.status, 9, `exit ${String(res.status)}: ${res.stderr}`);
    assert.match(res.stderr, /symbolic link/);
    assert.ok(res.stderr.includes(join(completed, name)), res.stderr);
    assert.ok(!existsSync(out), "nothing may be written at %p");
  });

  test("a dangling symlink as the archive target: exit 9 naming it, no checksum, no temp", () => {
    const name = segName(0x201);
    symlinkSync(join(base, "nowhere"), join(completed, name));
    const res = runBin("wal-archive", [ini, source("dangling", randomBytes(8192)), name]);
    assert.equal(res.status, 9, res.stderr);
    assert.match(res.stderr, /symbolic link/);
    assert.ok(res.stderr.includes(join(completed, name)), res.stderr);
    assert.match(res.stderr, /HINT: .*remove/);
    assert.doesNotMatch(res.stderr, /vanished/);
    assert.ok(!existsSync(join(completed, `.${name}.sha256`)), "no orphan checksum may be left");
    assert.ok(lstatSync(join(completed, name)).isSymbolicLink(), "the planted link is left for the operator");
    assert.ok(!existsSync(join(base, "nowhere")), "nothing may be written through the link");
    assert.deepEqual(temps(), []);
  });
});
