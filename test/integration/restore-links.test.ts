/**
 * A restore from a local backup set never follows what was planted in the set (issue 23 item 3,
 * local transport), on real PostgreSQL 15 sets: a symbolic link in the set (to a root-only file
 * outside) is refused before the set is taken, never copied as its target's bytes nor chowned
 * through (as root, on behalf of the postgres user); a manifest naming `../outside/x` is refused
 * before the set is taken; a link planted after the set was checked is found where nobody else
 * writes (the stage), and the restore stays pending until it is removed. Nothing is written
 * outside DST, and the set restores once it is clean.
 */
import assert from "node:assert/strict";
import {
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { IS_ROOT, ok, removeTempDir, run, runBin, waitFor, type RunResult } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
let outside: string;
let secret: string;
const SECRET = "TOPSECRET-7f3a\n";
const asRoot = IS_ROOT ? { uid: 0, gid: 0 } : {};
const set = (): string => join(p.slaveDir, "data.master");

/** Files under `dir` (not following links) whose content holds the secret: only the secret itself may. */
function secretCopies(dir: string): string[] {
  const res = run("grep", ["-rl", "-D", "skip", "--no-messages", "TOPSECRET-7f3a", dir], { uid: 0, gid: 0 });
  return res.stdout.split("\n").filter((l) => l !== "" && l !== secret);
}

function restoreLeftovers(): string[] {
  return [p.base, p.slaveDir].flatMap((d) =>
    readdirSync(d)
      .filter((n) => n.startsWith(".walmgr-restore."))
      .map((n) => join(d, n)),
  );
}

function refusedUntouched(res: RunResult, link: string): void {
  // What matters most first: the secret was neither copied nor given away.
  assert.deepEqual(secretCopies(p.base), [], "the secret was copied nowhere");
  assert.equal(statSync(secret).uid, 0, "the secret still belongs to root");
  assert.equal(statSync(secret).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(outside), ["secret"], "nothing was written outside");
  assert.equal(res.status, 9, res.stderr);
  assert.match(res.stderr, new RegExp(`${link.replace(/[.]/g, "\\.")} is a symbolic link \\(to ${secret}\\)`));
  assert.ok(existsSync(join(set(), "backup_label")), "the set is not taken");
  assert.deepEqual(restoreLeftovers(), [], "no journal, stage or claim");
}

before(async () => {
  p = await createPair("links");
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id serial, tag text)");
  await p.master.query("INSERT INTO t (tag) SELECT 'first' FROM generate_series(1, 10)");
  ok(runBin("wal-backup", [p.masterIni]), "backup");
  outside = join(p.base, "outside");
  mkdirSync(outside, { mode: 0o700 });
  secret = join(outside, "secret");
  writeFileSync(secret, SECRET, { mode: 0o600 });
  if (IS_ROOT) chownSync(secret, 0, 0);
});

after(() => {
  if (p) stopPair(p);
  if (p) removeTempDir(p.base);
});

test(
  "a named set holding a link to a root-only file: the restore (as root) is refused, the file is never copied",
  { skip: IS_ROOT ? false : "needs root: the restore must be able to read the target" },
  () => {
    const link = join(set(), "base", "evil");
    const dst = join(p.base, "pitr");
    symlinkSync(secret, link);
    try {
      const res = runBin("wal-ctl", [p.slaveIni, "restore", "data.master", dst], asRoot);
      refusedUntouched(res, link);
      assert.ok(!existsSync(dst), "DST was not made");
    } finally {
      rmSync(link, { force: true });
      rmSync(dst, { recursive: true, force: true }); // what an earlier version restored
    }
  },
);

test(
  "the newest set holding a link: the standby restore (as root) refuses before taking it, and chown never follows the link",
  { skip: IS_ROOT ? false : "needs root: restore chowns the tree only as root" },
  () => {
    const link = join(set(), "evil");
    symlinkSync(secret, link);
    try {
      refusedUntouched(runBin("wal-ctl", [p.slaveIni, "restore"], asRoot), link);
      assert.ok(!existsSync(p.slaveData), "slave_data was not made");
    } finally {
      rmSync(link, { force: true });
    }
  },
);

test("a manifest naming ../outside/x: refused before the set is taken", () => {
  const file = join(set(), ".walmgr-manifest.json");
  const good = readFileSync(file, "utf8");
  const m = JSON.parse(good) as { files: Record<string, unknown> };
  m.files["../outside/x"] = { size: 1, sha256: "0".repeat(64) };
  writeFileAs(file, JSON.stringify(m));
  try {
    const res = runBin("wal-ctl", [p.slaveIni, "restore"]);
    assert.equal(res.status, 9, res.stderr);
    assert.match(res.stderr, /file name "\.\.\/outside\/x" leaves the set/);
    assert.ok(existsSync(join(set(), "backup_label")), "the set is not taken");
    assert.deepEqual(restoreLeftovers(), [], "nothing pending");
    assert.deepEqual(readdirSync(outside), ["secret"]);
  } finally {
    if (existsSync(set())) writeFileAs(file, good);
  }
});

test("a link planted after the set was checked is found in the stage: the restore stays pending until it goes, then finishes", async () => {
  const killed = runBin("wal-ctl", [p.slaveIni, "restore"], { env: { WALMGR_TEST_CRASH_AT: "journal" } });
  assert.equal(killed.signal, "SIGKILL", killed.stderr);
  symlinkSync(secret, join(set(), "late"));
  const res = runBin("wal-ctl", [p.slaveIni, "restore"], asRoot);
  assert.deepEqual(secretCopies(p.base), []);
  assert.equal(statSync(secret).uid, 0, "the secret still belongs to root");
  assert.equal(res.status, 9, res.stderr);
  const stage = join(p.base, ".walmgr-restore.slave-data.new");
  assert.match(res.stderr, new RegExp(`${stage.replace(/[.]/g, "\\.")}/late is a symbolic link`));
  assert.ok(existsSync(join(p.base, ".walmgr-restore.slave-data.json")), "the restore is pending");
  assert.ok(!existsSync(p.slaveData), "slave_data was not made");
  // As the message says: remove it, and restore again.
  rmSync(join(stage, "late"));
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "the rerun");
  assert.deepEqual(restoreLeftovers(), []);
  const want = JSON.stringify(await p.master.query("SELECT count(*)::text AS n FROM t"));
  await waitFor(
    "the restored standby to answer",
    async () => {
      try {
        return JSON.stringify(await p.slave.query("SELECT count(*)::text AS n FROM t")) === want;
      } catch {
        return false;
      }
    },
    90_000,
  );
});
