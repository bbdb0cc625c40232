/**
 * The pieces restore is built from: moving a tree across file systems (the EXDEV fallback),
 * removing a tree so a crash never leaves a part under its name, the destination check, the
 * journal and the restore lock.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { unfitDestination } from "../../src/command/restore/local-fs";
import { processStart } from "../../src/proc";
import {
  lockRestore,
  readJournal,
  removeJournal,
  restorePaths,
  writeJournal,
  type RestoreJournal,
} from "../../src/command/restore/journal";
import { CLAIM_MARKER, claimDir, dirIdentity, dropClaimMarker, ownsDir } from "../../src/command/restore/claim";
import { ExitCode, WalmgrError } from "../../src/errors";
import {
  emptyDir,
  goneName,
  refuseUnplainTree,
  removeTreeDurable,
  renameOrCopyTree,
} from "../../src/storage/local/driver";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "walmgr-unit-tree-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** A small tree: a/1 (1 KiB), a/sub/2, a/empty/. */
function makeTree(root: string): void {
  mkdirSync(join(root, "sub"), { recursive: true });
  mkdirSync(join(root, "empty"));
  writeFileSync(join(root, "1"), Buffer.alloc(1024, 1));
  writeFileSync(join(root, "sub", "2"), "two");
}

function listTree(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const n of readdirSync(join(root, rel)).sort()) {
    const r = rel === "" ? n : `${rel}/${n}`;
    const st = statSync(join(root, r));
    out.push(st.isDirectory() ? `${r}/` : `${r} ${readFileSync(join(root, r)).toString("hex").slice(0, 8)}`);
    if (st.isDirectory()) out.push(...listTree(root, r));
  }
  return out;
}

const exdev = (): void => {
  throw Object.assign(new Error("EXDEV: cross-device link not permitted"), { code: "EXDEV" });
};

describe("renameOrCopyTree", () => {
  test("renames on one file system", async () => {
    makeTree(join(dir, "a"));
    const want = listTree(join(dir, "a"));
    assert.equal(await renameOrCopyTree(join(dir, "a"), join(dir, "b")), "renamed");
    assert.ok(!existsSync(join(dir, "a")));
    assert.deepEqual(listTree(join(dir, "b")), want);
  });

  test("EXDEV: copies the whole tree and leaves the source for the caller to remove", async () => {
    makeTree(join(dir, "a"));
    const want = listTree(join(dir, "a"));
    assert.equal(await renameOrCopyTree(join(dir, "a"), join(dir, "b"), exdev), "copied");
    assert.deepEqual(listTree(join(dir, "b")), want);
    assert.deepEqual(listTree(join(dir, "a")), want, "the source stays until the caller has recorded the copy");
    assert.equal(statSync(join(dir, "b")).mode & 0o777, 0o700);
  });

  test("EXDEV onto an existing empty directory (a mount point): the directory itself is kept and filled", async () => {
    makeTree(join(dir, "a"));
    mkdirSync(join(dir, "mnt"), { mode: 0o755 });
    const ino = statSync(join(dir, "mnt")).ino;
    assert.equal(await renameOrCopyTree(join(dir, "a"), join(dir, "mnt"), exdev), "copied");
    assert.equal(statSync(join(dir, "mnt")).ino, ino, "the mount point is the same directory");
    assert.deepEqual(listTree(join(dir, "mnt")), listTree(join(dir, "a")));
  });

  test("EBUSY (renaming onto a mount point) falls back to a copy too", async () => {
    makeTree(join(dir, "a"));
    mkdirSync(join(dir, "mnt"));
    const ebusy = (): void => {
      throw Object.assign(new Error("EBUSY"), { code: "EBUSY" });
    };
    assert.equal(await renameOrCopyTree(join(dir, "a"), join(dir, "mnt"), ebusy), "copied");
    assert.deepEqual(listTree(join(dir, "mnt")), listTree(join(dir, "a")));
  });

  test("any other error is an I/O error (exit 9) naming both paths", async () => {
    makeTree(join(dir, "a"));
    const eacces = (): void => {
      throw Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    };
    await assert.rejects(renameOrCopyTree(join(dir, "a"), join(dir, "b"), eacces), (err: unknown) => {
      assert.ok(err instanceof WalmgrError);
      assert.equal(err.exitCode, ExitCode.IO);
      assert.match(err.message, new RegExp(`${join(dir, "a")}.*${join(dir, "b")}`));
      return true;
    });
  });
});

describe("removeTreeDurable and emptyDir", () => {
  test("removes a tree and a leftover of an interrupted removal; false when nothing was there", () => {
    makeTree(join(dir, "a"));
    makeTree(goneName(join(dir, "a")));
    assert.equal(removeTreeDurable(join(dir, "a")), true);
    assert.deepEqual(readdirSync(dir), []);
    makeTree(goneName(join(dir, "b")));
    assert.equal(removeTreeDurable(join(dir, "b")), false);
    assert.deepEqual(readdirSync(dir), [], "the leftover goes even when the tree itself is gone");
  });

  test("the name it removes under is hidden", () => {
    assert.match(goneName(join(dir, "16384")), /\/\.walmgr-gone\.16384$/);
  });

  test("emptyDir keeps the directory and removes everything in it", () => {
    makeTree(join(dir, "m"));
    const ino = statSync(join(dir, "m")).ino;
    emptyDir(join(dir, "m"));
    assert.deepEqual(readdirSync(join(dir, "m")), []);
    assert.equal(statSync(join(dir, "m")).ino, ino);
  });
});

describe("unfitDestination", () => {
  test("missing, empty or a PostgreSQL data directory are fit", () => {
    assert.equal(unfitDestination(join(dir, "missing"), []), undefined);
    mkdirSync(join(dir, "empty"));
    assert.equal(unfitDestination(join(dir, "empty"), []), undefined);
    mkdirSync(join(dir, "pg"));
    writeFileSync(join(dir, "pg", "PG_VERSION"), "15\n");
    writeFileSync(join(dir, "pg", "postgresql.conf"), "");
    assert.equal(unfitDestination(join(dir, "pg"), []), undefined);
    symlinkSync(join(dir, "pg"), join(dir, "pg-link"));
    assert.equal(unfitDestination(join(dir, "pg-link"), []), undefined, "a link to a data directory");
  });

  test("anything else is refused with a reason naming it", () => {
    mkdirSync(join(dir, "home"));
    writeFileSync(join(dir, "home", "thesis.tex"), "years of work");
    assert.match(
      unfitDestination(join(dir, "home"), []) ?? "",
      /home is neither empty nor a PostgreSQL data directory/,
    );
    writeFileSync(join(dir, "file"), "x");
    assert.match(unfitDestination(join(dir, "file"), []) ?? "", /not a directory/);
    symlinkSync(join(dir, "home"), join(dir, "link"));
    assert.match(unfitDestination(join(dir, "link"), []) ?? "", /neither empty nor a PostgreSQL data directory/);
    mkdirSync(join(dir, "data.master"));
    writeFileSync(join(dir, "data.master", "PG_VERSION"), "15\n");
    assert.match(unfitDestination(join(dir, "data.master"), [join(dir, "data.master")]) ?? "", /is a backup set/);
  });
});

describe("restore journal and lock", () => {
  const journal = (dst: string): RestoreJournal => ({
    version: 1,
    step: "prepare",
    command: "restore",
    set: join(dir, "data.master"),
    move: true,
    claimed: join(dir, ".walmgr-restore.data.master.1"),
    dst,
    target: {},
    standbyRestore: true,
    owner: { uid: 1, gid: 1 },
    keepOld: true,
    startedAt: "2024-05-01T00:00:00.000Z",
  });

  test("the hidden names sit beside DST and name it", () => {
    const p = restorePaths(join(dir, "main"));
    for (const path of [p.lock, p.journal, p.stage, p.trash]) {
      assert.equal(join(path, ".."), dir);
      assert.match(path, /\/\.walmgr-restore\.main\./);
    }
    assert.equal(new Set([p.lock, p.journal, p.stage, p.trash]).size, 4);
  });

  test("write, read back, remove", () => {
    const p = restorePaths(join(dir, "main"));
    assert.equal(readJournal(p), undefined);
    writeJournal(p, journal(p.dst));
    assert.deepEqual(readJournal(p), journal(p.dst));
    removeJournal(p);
    assert.equal(readJournal(p), undefined);
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a corrupt journal is an I/O error naming it, not a crash", () => {
    const p = restorePaths(join(dir, "main"));
    writeFileSync(p.journal, "{ half");
    assert.throws(
      () => readJournal(p),
      (err: unknown) => err instanceof WalmgrError && err.exitCode === ExitCode.IO && err.message.includes(p.journal),
    );
  });

  test("the lock refuses a live holder (exit 4) and takes over a dead one's", () => {
    const p = restorePaths(join(dir, "main"));
    const sleeper = spawnSync("sh", ["-c", "sleep 30 >/dev/null 2>&1 & echo $!"], { encoding: "utf8" });
    const live = Number(sleeper.stdout.trim());
    try {
      writeFileSync(p.lock, `${live} ${processStart(live) ?? ""}\n`);
      assert.throws(
        () => lockRestore(p, () => assert.fail("a live holder is not stale")),
        (err: unknown) => err instanceof WalmgrError && err.exitCode === ExitCode.LOCK_HELD,
      );
      // The same pid with another start time is a recycled pid: not the holder.
      writeFileSync(p.lock, `${live} 1\n`);
      const stale: string[] = [];
      const release = lockRestore(p, (m) => stale.push(m));
      assert.equal(stale.length, 1);
      assert.match(readFileSync(p.lock, "utf8"), new RegExp(`^${process.pid} `));
      release();
      assert.ok(!existsSync(p.lock));
    } finally {
      process.kill(live);
    }
    // A pid that is gone.
    const gone = spawnSync("true").pid;
    writeFileSync(p.lock, `${gone} 5\n`);
    const release = lockRestore(p, () => undefined);
    release();
    assert.deepEqual(readdirSync(dir), []);
  });
});

describe("tablespace directory claims", () => {
  const about = { restore: "/x", tablespace: "16384" };
  test("a missing path is created and claimed; another restore finds it taken, the same one finds it its own", () => {
    const ts = join(dir, "deep", "ts");
    const id = claimDir(ts, "mine", about);
    assert.ok(id !== undefined);
    assert.deepEqual(readdirSync(ts), [CLAIM_MARKER]);
    assert.equal(claimDir(ts, "theirs", about), undefined, "another restore's claim is not free");
    assert.equal(claimDir(ts, "mine", about), id, "a rerun before the claim was journaled takes it again");
    assert.equal(ownsDir(ts, id, "mine", false), true);
    assert.equal(ownsDir(ts, id, "theirs", false), false);
  });
  test("an empty directory (a mount point) is claimed with a marker; one holding anything is not, and is left as it was", () => {
    const empty = join(dir, "empty");
    mkdirSync(empty);
    const id = claimDir(empty, "mine", about);
    assert.equal(id, dirIdentity(empty), "the directory itself is kept");
    const used = join(dir, "used");
    mkdirSync(used);
    writeFileSync(join(used, "theirs"), "x");
    assert.equal(claimDir(used, "mine", about), undefined);
    assert.deepEqual(readdirSync(used), ["theirs"]);
    const file = join(dir, "file");
    writeFileSync(file, "x");
    assert.equal(claimDir(file, "mine", about), undefined, "a file is not a directory to take");
  });
  test("ownsDir: a directory replaced under the same path is not ours; without the marker only when told it is gone", () => {
    const ts = join(dir, "ts");
    const id = claimDir(ts, "mine", about) ?? "";
    dropClaimMarker(ts, "theirs");
    assert.deepEqual(readdirSync(ts), [CLAIM_MARKER], "another restore's token never removes our marker");
    dropClaimMarker(ts, "mine");
    assert.deepEqual(readdirSync(ts), []);
    assert.equal(ownsDir(ts, id, "mine", false), false, "the marker is gone");
    assert.equal(ownsDir(ts, id, "mine", true), true);
    renameSync(ts, `${ts}.moved`); // still there: the new directory cannot get its inode
    mkdirSync(ts);
    assert.equal(ownsDir(ts, id, "mine", true), false, "a new directory at the path is not ours");
  });
  test("of many claimers of one empty directory at once, exactly one gets it", async () => {
    const target = join(dir, "race");
    mkdirSync(target);
    const script = `const { claimDir } = require(${JSON.stringify(require.resolve("../../src/command/restore/claim"))});
      process.stdout.write(claimDir(${JSON.stringify(target)}, process.argv[1], {}) === undefined ? "no" : "yes");`;
    const runs = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) =>
          new Promise<string>((res) => {
            const child = spawn(process.execPath, ["-e", script, `t${i}`], { stdio: ["ignore", "pipe", "inherit"] });
            let out = "";
            child.stdout.on("data", (b: Buffer) => (out += b.toString()));
            child.on("close", () => res(out));
          }),
      ),
    );
    assert.equal(runs.filter((r) => r === "yes").length, 1, runs.join(","));
    assert.deepEqual(readdirSync(target), [CLAIM_MARKER]);
  });
});

describe("a restore's tree copy follows no link", () => {
  test("EXDEV: a link to a file outside the tree is refused (exit 9, naming it), its target never copied", async () => {
    makeTree(join(dir, "a"));
    writeFileSync(join(dir, "secret"), "TOPSECRET");
    symlinkSync(join(dir, "secret"), join(dir, "a", "evil"));
    await assert.rejects(renameOrCopyTree(join(dir, "a"), join(dir, "b"), exdev), (err: unknown) => {
      assert.ok(err instanceof WalmgrError);
      assert.equal(err.exitCode, ExitCode.IO);
      assert.match(err.message, /evil is a symbolic link \(to .*secret\)/);
      return true;
    });
    assert.ok(!existsSync(join(dir, "b", "evil")), "the link's target was not copied");
  });

  test("EXDEV: a link to a folder outside is refused, nothing of the folder copied", async () => {
    makeTree(join(dir, "a"));
    mkdirSync(join(dir, "outside"));
    writeFileSync(join(dir, "outside", "f"), "x");
    symlinkSync(join(dir, "outside"), join(dir, "a", "dirlink"));
    await assert.rejects(renameOrCopyTree(join(dir, "a"), join(dir, "b"), exdev), /dirlink is a symbolic link/);
    assert.ok(!existsSync(join(dir, "b", "dirlink")));
  });

  test("refuseUnplainTree names the first link or FIFO below the root; a plain tree passes", () => {
    makeTree(join(dir, "a"));
    assert.doesNotThrow(() => refuseUnplainTree(join(dir, "a")));
    symlinkSync("/etc/passwd", join(dir, "a", "sub", "l"));
    assert.throws(() => refuseUnplainTree(join(dir, "a")), /sub\/l is a symbolic link \(to \/etc\/passwd\)/);
    rmSync(join(dir, "a", "sub", "l"));
    assert.equal(spawnSync("mkfifo", [join(dir, "a", "fifo")]).status, 0);
    assert.throws(() => refuseUnplainTree(join(dir, "a")), /fifo is a FIFO/);
  });
});
