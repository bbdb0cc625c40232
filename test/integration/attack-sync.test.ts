/**
 * The sync daemon (record mode: it writes each new piece of the partial segment in place) meets
 * a symbolic link planted in partial_wals under the segment's name, on real PostgreSQL.
 */
import assert from "node:assert/strict";
import { existsSync, lstatSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { syncState } from "../helpers/daemon";
import { ok, removeTempDir, runBin, spawnBin, waitFor, type Spawned } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair | undefined;
let daemon: Spawned | undefined;

after(async () => {
  daemon?.child.kill("SIGKILL");
  await daemon?.exited;
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("a symlink planted as the partial segment is replaced, never written through", async () => {
  p = await createPair("attacksync", { master: "loop_delay = 0.2\nuse_xlog_functions = 1" });
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t AS SELECT 1 AS a");
  daemon = spawnBin("wal-sync", [p.masterIni, "--daemon"]);
  const pair = p;
  const first = await waitFor("the daemon to ship a partial segment", () => {
    const st = syncState(pair);
    return st && st.offset > 0 && existsSync(join(pair.slaveDir, "logs.partial", st.name)) ? st : undefined;
  });
  assert.ok(first);
  // A file of segment size the daemon's user may write (it could be any: a WAL segment of the
  // master, a table file), and the partial segment replaced by a link to it.
  const victim = join(p.base, "victim");
  writeFileAs(victim, "");
  writeFileAs(victim, "\0".repeat(16 << 20));
  const partial = join(p.slaveDir, "logs.partial", first.name);
  rmSync(partial);
  symlinkSync(victim, partial);
  await p.master.query("INSERT INTO t SELECT g FROM generate_series(1, 2000) g");
  await waitFor(
    "the daemon to ship past the link",
    () => {
      const st = syncState(pair);
      return st && st.offset > first.offset ? st : undefined;
    },
    20_000,
  ).catch((err: Error) => assert.fail(`${err.message}\n${daemon?.output() ?? ""}`));
  assert.ok(
    readFileSync(victim).every((b) => b === 0),
    "the link's target must not be written",
  );
  assert.ok(lstatSync(partial).isFile(), "the partial segment must be a regular file again");
});
