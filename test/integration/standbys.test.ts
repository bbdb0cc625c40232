/**
 * Several standbys from one archive, on real PostgreSQL 15: two standbys ("alpha" and "beta",
 * each with its own slave config, data directory and port) restored from one slave directory;
 * beta is stopped so that it lags. A backup's purge keeps the WAL from beta's restart point on
 * and removes what is older than both; `status --json` lists both with their lag. Once beta's
 * record is older than standby_expire, the next purge removes its WAL, with a warning naming it.
 * Booting alpha removes its record (not beta's).
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Cluster, freePort } from "../helpers/cluster";
import { removeTempDir, runBin, waitFor, ok } from "../helpers/env";
import { createPair, slaveIniText, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
let beta: Cluster;
let betaData: string;
let betaIni: string;

interface StandbyJson {
  name: string;
  restartPoint: string | null;
  state: string;
  ageSeconds: number | null;
  behindSegments: number | null;
  behindBytes: number | null;
  host?: string;
  slaveData?: string;
}

const completed = (): string => join(p.slaveDir, "logs.complete");
const segments = (): string[] =>
  readdirSync(completed())
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort();
const pos = (name: string): string => name.slice(8, 24);

function restartPoint(name: string): string {
  try {
    const rec = JSON.parse(readFileSync(join(completed(), `.walmgr-standby.${name}`), "utf8")) as {
      restartpoint: string;
    };
    return rec.restartpoint;
  } catch {
    return "";
  }
}

async function count(c: Cluster, tag: string): Promise<number> {
  return Number(await c.value<string>("SELECT count(*) FROM t WHERE tag = $1", [tag]));
}

let round = 0;
/** WAL, a checkpoint and a segment switch on the master; waits for `standbys` to replay it. */
async function switchAndReplay(standbys: Cluster[]): Promise<void> {
  const tag = `r${++round}`;
  await p.master.query("INSERT INTO t (tag) SELECT $1 FROM generate_series(1, 10)", [tag]);
  await p.master.query("CHECKPOINT");
  await p.master.query("SELECT pg_switch_wal()");
  for (const s of standbys) {
    await waitFor(`${s.dataDir} to replay ${tag}`, async () => (await count(s, tag)) === 10, 30_000, 100);
  }
}

/** Moves the recorded restart points of `standbys` (name, cluster) past `past`. */
async function advancePast(past: string, standbys: [string, Cluster][]): Promise<void> {
  await waitFor(
    `the restart points of ${standbys.map(([n]) => n).join(", ")} to pass ${past}`,
    async () => {
      await switchAndReplay(standbys.map(([, c]) => c));
      for (const [, c] of standbys) await c.query("CHECKPOINT"); // a restartpoint
      // One more segment, so that wal-restore runs with the new %r.
      await switchAndReplay(standbys.map(([, c]) => c));
      return standbys.every(([n]) => restartPoint(n) !== "" && pos(restartPoint(n)) > pos(past));
    },
    40_000,
    10,
  );
}

function status(ini: string): { standbys: StandbyJson[]; newestSegment?: string } {
  return JSON.parse(ok(runBin("wal-ctl", [ini, "status", "--json"]), "status --json").stdout) as {
    standbys: StandbyJson[];
    newestSegment?: string;
  };
}

before(async () => {
  p = await createPair("standbys", {
    master: "keep_backups = 1\nstandby_expire = 600",
    // keep_backups = 1 on the standbys too: wal-restore leaves purging to the backups here.
    slave: "standby_name = alpha\nstandby_expire = 600\nkeep_backups = 1",
  });
  betaData = join(p.base, "beta-data");
  beta = new Cluster(betaData, await freePort(), p.base, join(p.base, "beta-data.log"));
  betaIni = join(p.base, "beta.ini");
  writeFileAs(
    betaIni,
    slaveIniText(beta, betaData, p.slaveDir, "standby_name = beta\nstandby_expire = 600\nkeep_backups = 1"),
  );
  // Restored standbys ask for the next segment every 200 ms rather than every 5 s.
  appendFileSync(join(p.master.dataDir, "postgresql.conf"), "wal_retrieve_retry_interval = 200ms\n");
});

after(() => {
  beta?.stop("immediate");
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("two standbys, one lagging: purge keeps its WAL, status shows both; expired, its WAL goes with a warning", async (t) => {
  let betaRp = "";
  await t.test("two standbys restored from one archive record their restart points under their names", async () => {
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
    await p.master.query("CREATE TABLE t (id serial, tag text)");
    ok(runBin("wal-backup", [p.masterIni]), "first backup");
    // Both copy the one set (a named set is copied, and it stays for the other).
    ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master"]), "restore alpha");
    ok(runBin("wal-ctl", [betaIni, "restore", "data.master"]), "restore beta");
    const start = restartPoint("beta");
    assert.match(start, /^[0-9A-F]{24}$/, "restore records the standby at the set's start WAL");
    await advancePast(start, [
      ["alpha", p.slave],
      ["beta", beta],
    ]);
    betaRp = restartPoint("beta");
    const rec = JSON.parse(readFileSync(join(completed(), ".walmgr-standby.beta"), "utf8")) as Record<string, string>;
    assert.equal(rec.slave_data, betaData);
    assert.ok(Date.now() - Date.parse(rec.updated ?? "") < 60_000);
    assert.ok(!existsSync(join(completed(), ".walmgr-standby-restartpoint")), "the old single file is not written");
  });

  await t.test("beta stopped: alpha moves on; a backup's purge keeps everything beta needs", async () => {
    beta.stop("fast");
    betaRp = restartPoint("beta");
    await advancePast(betaRp, [["alpha", p.slave]]);
    assert.equal(restartPoint("beta"), betaRp, "a stopped standby records nothing");
    const before = segments();
    assert.ok(
      before.some((s) => pos(s) < pos(betaRp)),
      `some WAL older than beta's restart point ${betaRp}: ${before.join(" ")}`,
    );
    const res = ok(runBin("wal-backup", [p.masterIni]), "second backup");
    assert.match(res.stderr, new RegExp(`standby "beta" still needs WAL from ${betaRp}`));
    const left = segments();
    for (const s of before) {
      if (pos(s) >= pos(betaRp)) assert.ok(left.includes(s), `${s} (beta needs it) must stay`);
      else assert.ok(!left.includes(s), `${s} (older than both standbys and the kept set) must go`);
    }
    assert.doesNotMatch(res.stderr, /WARNING/);
  });

  await t.test("status --json lists both standbys with their lag", () => {
    for (const ini of [p.masterIni, betaIni]) {
      const s = status(ini);
      const byName = new Map(s.standbys.map((x) => [x.name, x]));
      const a = byName.get("alpha");
      const b = byName.get("beta");
      assert.ok(a && b, JSON.stringify(s.standbys));
      assert.equal(a.state, "live");
      assert.equal(b.state, "live");
      assert.equal(b.restartPoint, betaRp);
      assert.equal(b.slaveData, betaData);
      assert.ok(s.newestSegment !== undefined);
      assert.ok((b.behindSegments ?? -1) > (a.behindSegments ?? Infinity), JSON.stringify(s.standbys));
      assert.equal(b.behindBytes, (b.behindSegments ?? 0) * 16 * 1024 * 1024);
    }
    const text = ok(runBin("wal-ctl", [p.slaveIni, "status"]), "status").stdout;
    assert.match(text, /standbys:\s+alpha .*: live, restart point [0-9A-F]{24}, \d+ segment\(s\)/);
    assert.match(text, new RegExp(`\\n\\s+beta .*: live, restart point ${betaRp}, \\d+ segment\\(s\\)`));
  });

  await t.test("beta's record older than standby_expire: the next purge removes its WAL and names it", async () => {
    // As if beta had been gone for an hour (standby_expire is 600 s).
    const file = join(completed(), ".walmgr-standby.beta");
    const rec = JSON.parse(readFileSync(file, "utf8")) as Record<string, string>;
    writeFileAs(file, `${JSON.stringify({ ...rec, updated: new Date(Date.now() - 3600_000).toISOString() })}\n`);
    await switchAndReplay([p.slave]);
    const res = ok(runBin("wal-backup", [p.masterIni]), "third backup");
    assert.match(
      res.stderr,
      new RegExp(`WARNING .*standby "beta" \\([^)]*\\) last recorded its restart point ${betaRp} 60 min ago`),
    );
    assert.ok(!segments().includes(betaRp), `beta's restart point segment ${betaRp} is purged`);
    assert.ok(segments().includes(restartPoint("alpha")), "alpha's restart point segment is kept");
    const s = status(p.slaveIni);
    assert.deepEqual(
      s.standbys.map((x) => [x.name, x.state]),
      [
        ["alpha", "live"],
        ["beta", "expired"],
      ],
    );
    // alpha still replays.
    await switchAndReplay([p.slave]);
  });

  await t.test("boot removes the booted standby's record, and only its own", async () => {
    ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot alpha");
    assert.equal(await p.slave.value("SELECT pg_is_in_recovery()"), false);
    assert.ok(!existsSync(join(completed(), ".walmgr-standby.alpha")));
    assert.ok(existsSync(join(completed(), ".walmgr-standby.beta")));
  });
});
