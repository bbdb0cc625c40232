/**
 * Bad input gets a clear error, the right exit code, and loses nothing. These spawn the real
 * executables as the server user, as PostgreSQL would; no server is needed for them.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import {
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  writeSync,
  closeSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { binPath, IS_ROOT, mkdirAs, removeTempDir, run, runBin, RUN_AS, waitFor } from "../helpers/env";
import { serverlessSlave, writeFileAs } from "../helpers/walmgr";

let base: string;
let completed: string;
let ini: string;
let slaveIni: string;
const SEG = "000000010000000000000001";

function sha(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

function segment(name: string, size = 16 * 1024 * 1024): string {
  const path = join(base, `src-${name}-${Math.random().toString(36).slice(2)}`);
  writeFileAs(path, "");
  writeFileSync(path, randomBytes(size));
  return path;
}

before(() => {
  ({ base, completed, ini, slaveIni } = serverlessSlave("badinput"));
});

after(() => removeTempDir(base));

describe("bad config", () => {
  test("a missing config file exits 3 and names the file", () => {
    const res = runBin("wal-archive", [join(base, "nope.ini"), segment("a"), SEG]);
    assert.equal(res.status, 3);
    assert.match(res.stderr, /nope\.ini/);
  });

  test("a number that is not one exits 3 naming file, section and key", () => {
    const bad = join(base, "badnum.ini");
    writeFileAs(bad, `[wal-slave]\nslave = ${base}/slave\nkeep_backups = lots\n`);
    const res = runBin("wal-restore", [bad, SEG, join(base, "out")]);
    assert.equal(res.status, 3);
    assert.match(res.stderr, /badnum\.ini.*\[wal-slave\] keep_backups/);
  });

  test("a missing required key exits 3 naming it", () => {
    const bad = join(base, "nokey.ini");
    writeFileAs(bad, "[wal-master]\nmaster_db = dbname=postgres\n");
    const res = runBin("wal-archive", [bad, segment("b"), SEG]);
    assert.equal(res.status, 3);
    assert.match(res.stderr, /nokey\.ini \[wal-master\] completed_wals is missing/);
  });

  test("an interpolation cycle exits 3 naming both keys", () => {
    const bad = join(base, "cycle.ini");
    writeFileAs(bad, "[wal-master]\nslave = %(completed_wals)s/x\ncompleted_wals = %(slave)s/logs.complete\n");
    const res = runBin("wal-archive", [bad, segment("c"), SEG]);
    assert.equal(res.status, 3);
    assert.match(res.stderr, /slave/);
    assert.match(res.stderr, /completed_wals/);
  });

  test("no walmgr section exits 3", () => {
    const bad = join(base, "nosection.ini");
    writeFileAs(bad, "[other]\na = 1\n");
    assert.equal(runBin("wal-ctl", [bad, "pause"]).status, 3);
  });

  test("an unknown key is a warning that names it, not a failure", () => {
    const warn = join(base, "typo.ini");
    writeFileAs(warn, `[wal-slave]\nslave = ${base}/slave\nkeep_bakups = 2\n`);
    const res = runBin("wal-restore", [warn, "00000009.history", join(base, "out")]);
    assert.equal(res.status, 1);
    assert.match(res.stderr, /WARNING.*keep_bakups/);
  });
});

describe("bad WAL names are refused before any path is built", () => {
  for (const name of [
    "../x",
    "",
    "00000001000000000000000",
    "000000010000000000000001/../../etc",
    "00000001000000000000000g",
  ]) {
    test(`wal-archive and wal-restore refuse ${JSON.stringify(name)} with exit 2`, () => {
      const a = runBin("wal-archive", [ini, segment("n", 1024), name]);
      assert.equal(a.status, 2, a.stderr);
      assert.match(a.stderr, /WAL file name/);
      const r = runBin("wal-restore", [slaveIni, name, join(base, "restored")]);
      assert.equal(r.status, 2, r.stderr);
      assert.ok(!existsSync(join(base, "restored")));
    });
  }
  test("nothing was written for them", () => {
    assert.deepEqual(
      readdirSync(completed).filter((n) => !n.startsWith(".") && n !== SEG && !/^[0-9A-F]{24}$/.test(n)),
      [],
    );
  });
});

describe("archive conflicts and missing WAL", () => {
  test("re-archiving identical content succeeds; other content exits 8 and leaves the copy unchanged", () => {
    const name = "000000010000000000000010";
    const first = segment("first");
    assert.equal(runBin("wal-archive", [ini, first, name]).status, 0);
    const before = sha(join(completed, name));
    assert.equal(before, sha(first));
    assert.equal(runBin("wal-archive", [ini, first, name]).status, 0);
    const res = runBin("wal-archive", [ini, segment("other"), name]);
    assert.equal(res.status, 8, res.stderr);
    assert.match(res.stderr, /already archived with other content/);
    assert.equal(sha(join(completed, name)), before);
    assert.ok(existsSync(join(completed, `.${name}.sha256`)));
  });

  test(".history files are never overwritten", () => {
    const h = join(base, "hist");
    writeFileAs(h, "1\t0/3000000\tno recovery target specified\n");
    assert.equal(runBin("wal-archive", [ini, h, "00000002.history"]).status, 0);
    const h2 = join(base, "hist2");
    writeFileAs(h2, "1\t0/4000000\tother\n");
    assert.equal(runBin("wal-archive", [ini, h2, "00000002.history"]).status, 8);
    assert.equal(readFileSync(join(completed, "00000002.history"), "utf8"), readFileSync(h, "utf8"));
  });

  test("a missing segment exits 1 and writes nothing", () => {
    const out = join(base, "missing-out");
    const res = runBin("wal-restore", [slaveIni, "0000000100000000000000FF", out]);
    assert.equal(res.status, 1);
    assert.ok(!existsSync(out));
  });

  test("a corrupted archived segment is never served (exit 9)", () => {
    const name = "000000010000000000000011";
    assert.equal(runBin("wal-archive", [ini, segment("corrupt", 8192), name]).status, 0);
    const fd = openSync(join(completed, name), "r+");
    writeSync(fd, Buffer.from("garbage"), 0, 7, 100);
    closeSync(fd);
    const out = join(base, "corrupt-out");
    const res = runBin("wal-restore", [slaveIni, name, out]);
    assert.equal(res.status, 9, res.stderr);
    assert.match(res.stderr, /fails its checksum/);
    assert.ok(!existsSync(out));
  });

  test("a missing completed_wals answers 'not available' (1) to restore and 9 to archive", () => {
    const gone = join(base, "gone.ini");
    writeFileAs(gone, `[wal-master]\nslave = ${base}/does-not-exist\n`);
    const r = runBin("wal-restore", [gone, SEG, join(base, "x")]);
    assert.equal(r.status, 1);
    const a = runBin("wal-archive", [gone, segment("g", 1024), SEG]);
    assert.equal(a.status, 9);
    assert.match(a.stderr, /setup/);
  });
});

describe("BACKUPLOCK", () => {
  test("a second backup while the lock is held is refused with exit 4 and names the holder", () => {
    // The holder is this test process: alive, on this host.
    const lock = join(completed, "BACKUPLOCK");
    const holder = {
      pid: process.pid,
      host: hostname(),
      started: new Date().toISOString(),
      command: "wal-backup other.ini",
    };
    writeFileAs(lock, JSON.stringify(holder));
    const res = runBin("wal-backup", [ini]);
    assert.equal(res.status, 4, res.stderr);
    assert.match(res.stderr, new RegExp(`pid ${process.pid}`));
    assert.match(res.stderr, /wal-backup other\.ini/);
    assert.deepEqual(JSON.parse(readFileSync(lock, "utf8")), holder, "the holder's lock must be left alone");
  });

  test("a stale lock is reported as stale and cleared only with --clear-stale-lock", () => {
    const lock = join(completed, "BACKUPLOCK");
    writeFileAs(
      lock,
      JSON.stringify({ pid: 999_999_9, host: hostname(), started: "2026-01-01", command: "wal-backup" }),
    );
    const res = runBin("wal-backup", [ini]);
    assert.equal(res.status, 4);
    assert.match(res.stderr, /stale/);
    // With the option the lock is cleared; the backup then fails on the (absent) database, exit 7,
    // and releases the lock it took.
    const res2 = runBin("wal-backup", [ini, "--clear-stale-lock"]);
    assert.equal(res2.status, 7, res2.stderr);
    assert.ok(!existsSync(lock), "the backup must release its lock on failure");
  });
});

describe("kill -9 of wal-archive mid-copy", () => {
  test("leaves no file under the final name, and the next run succeeds", async () => {
    const name = "000000010000000000000020";
    const fifo = join(base, "fifo");
    assert.equal(run("mkfifo", [fifo]).status, 0);
    const child = spawn(binPath("wal-archive"), [ini, fifo, name], {
      stdio: "ignore",
      ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
    });
    const exited = new Promise<void>((r) => child.on("exit", () => r()));
    const fd = openSync(fifo, "w"); // blocks until wal-archive opens it
    const chunk = randomBytes(4 * 1024 * 1024);
    writeSync(fd, chunk);
    const tmpName = await waitFor("a temporary file with data", () =>
      readdirSync(completed).find(
        (n) => n.startsWith(".walmgr-tmp.") && n.includes(name) && statSync(join(completed, n)).size > 0,
      ),
    );
    assert.ok(tmpName);
    child.kill("SIGKILL");
    await exited;
    closeSync(fd);
    assert.ok(!existsSync(join(completed, name)), "a killed copy must not appear under the final name");
    assert.ok(!existsSync(join(completed, `.${name}.sha256`)), "no checksum for a file never archived");
    const src = segment("after-kill");
    const res = runBin("wal-archive", [ini, src, name]);
    assert.equal(res.status, 0, res.stderr);
    assert.equal(sha(join(completed, name)), sha(src));
  });
});

describe("usage", () => {
  test("missing arguments exit 2; --help and --version exit 0", () => {
    assert.equal(runBin("wal-archive", []).status, 2);
    assert.equal(runBin("wal-archive", [ini]).status, 2);
    assert.equal(runBin("wal-ctl", [ini, "no-such-command"]).status, 2);
    const help = runBin("wal-ctl", ["--help"]);
    assert.equal(help.status, 0);
    assert.match(help.stdout, /SYNOPSIS/);
    assert.match(runBin("wal-archive", ["--version"]).stdout, /wal-archive \(walmgr-ts\) \d+\.\d+\.\d+/);
  });
});

describe("disk full", () => {
  test("a write that hits the file size limit exits 9, names the file, and leaves nothing behind", () => {
    const name = "000000010000000000000030";
    const src = segment("efbig");
    // SIGXFSZ ignored (inherited across exec), so the write fails with EFBIG instead of killing.
    const res = run("/bin/sh", [
      "-c",
      `trap '' XFSZ; ulimit -f 2048; exec "$0" "$@"`,
      binPath("wal-archive"),
      ini,
      src,
      name,
    ]);
    assert.equal(res.status, 9, res.stderr);
    assert.match(res.stderr, new RegExp(name));
    assert.ok(!existsSync(join(completed, name)));
    assert.deepEqual(
      readdirSync(completed).filter((n) => n.includes(name)),
      [],
      "no temp file or checksum may be left",
    );
  });

  if (IS_ROOT) {
    test("ENOSPC on a full file system exits 9 with a hint, and the next run on free space succeeds", () => {
      const small = join(base, "small");
      mkdirAs(small);
      assert.equal(
        run("mount", ["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", small], { uid: 0, gid: 0 }).status,
        0,
      );
      try {
        mkdirAs(join(small, "logs.complete"));
        const fullIni = join(base, "full.ini");
        writeFileAs(fullIni, `[wal-master]\nslave = ${small}\n`);
        const name = "000000010000000000000031";
        const res = runBin("wal-archive", [fullIni, segment("enospc"), name]);
        assert.equal(res.status, 9, res.stderr);
        assert.match(res.stderr, /disk is full/);
        assert.deepEqual(readdirSync(join(small, "logs.complete")), [], "nothing may be left on the full disk");
        const fits = segment("fits", 1024 * 1024);
        assert.equal(runBin("wal-archive", [fullIni, fits, name]).status, 0);
        assert.equal(sha(join(small, "logs.complete", name)), sha(fits));
      } finally {
        run("umount", [small], { uid: 0, gid: 0 });
      }
    });
  }
});
