/**
 * Several repositories on real PostgreSQL: the master archives to its local slave directory and,
 * through also_archive_to, to an S3 bucket (Swift's s3api). With the bucket's endpoint down,
 * archiving fails (PostgreSQL retries) while the local repository keeps what it got; status
 * names the repository that is behind; once the endpoint is back, archiving catches up and both
 * repositories hold the same segments with the same content. Backups purge the also_archive_to
 * repositories with the main repository's cut-off, keeping what their own standbys still need;
 * one that cannot be read is skipped with a warning, the backup succeeds.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, readFileSync, readdirSync } from "node:fs";
import { join, posix } from "node:path";
import { after, before, test } from "node:test";
import { makeTempDir, ok, removeTempDir, runBin, waitFor } from "../helpers/env";
import { TestSwift } from "../helpers/swift";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

const BUCKET = "walmgr-second";
let p: Pair;
let swift: TestSwift;

/** The names under `site`/logs.complete/ in the bucket (segments only, unless `all`). */
async function bucketNames(site: string, all = false): Promise<string[]> {
  const prefix = `${site}/logs.complete/`;
  const res = await swift.request("GET", `/${BUCKET}?list-type=2&prefix=${encodeURIComponent(prefix)}`);
  const names = [...res.body.toString("utf8").matchAll(/<Key>([^<]+)<\/Key>/g)].map((m) =>
    (m[1] ?? "").slice(prefix.length),
  );
  return names.filter((n) => all || /^[0-9A-F]{24}$/.test(n)).sort();
}

async function bucketSegments(): Promise<string[]> {
  return bucketNames("site2");
}

function localSegments(): string[] {
  return readdirSync(join(p.slaveDir, "logs.complete"))
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort();
}

/** PostgreSQL (or a batch run for it) marked `seg` archived: every repository holds it whole. */
function archived(pair: Pair, seg: string): boolean {
  return existsSync(join(pair.master.dataDir, "pg_wal", "archive_status", `${seg}.done`));
}

async function archiver(): Promise<{ last: string | null; failed: number; lastFailed: string | null }> {
  const r = await p.master.query<{ last: string | null; failed: string; last_failed: string | null }>(
    "SELECT last_archived_wal AS last, failed_count::text AS failed, last_failed_wal AS last_failed FROM pg_stat_archiver",
  );
  return { last: r[0]?.last ?? null, failed: Number(r[0]?.failed ?? 0), lastFailed: r[0]?.last_failed ?? null };
}

before(async () => {
  swift = await TestSwift.shared();
  await swift.createBucket(BUCKET);
  p = await createPair("repositories", {
    master: `also_archive_to = s3://${BUCKET}/site2
s3_endpoint = ${swift.endpoint}
s3_access_key = ${swift.accessKey}
s3_secret_key = ${swift.secretKey}
s3_timeout = 2
s3_retries = 1`,
  });
  chmodSync(p.masterIni, 0o600);
});

after(async () => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
  await swift?.stop();
});

test("two repositories, one down: archiving fails until it is back, then catches up; nothing lost", async (t) => {
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id int)");
  await p.master.query("INSERT INTO t SELECT generate_series(1, 1000)");
  const first = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.master.query("SELECT pg_switch_wal()");
  // archive_status's .done says the call ended well: the segment's object shows in a listing
  // before the call has written its checksum and ended, and stopping the endpoint in between
  // leaves PostgreSQL retrying `first`, never trying down[0] (failed so in CI).
  await waitFor(
    `${first} archived to both`,
    async () => archived(p, first) && (await bucketSegments()).includes(first),
    30_000,
  );
  assert.ok(localSegments().includes(first));

  await swift.stopProxy();
  // Whatever fails below, the next test finds the endpoint up.
  t.after(() => swift.ensureProxyUp());
  const down: string[] = [];
  for (let i = 0; i < 3; i++) {
    await p.master.query("INSERT INTO t SELECT generate_series(1, 1000)");
    down.push(await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())"));
    await p.master.query("SELECT pg_switch_wal()");
  }
  // A failure of down[0] itself (failures counted before, say while setup made the folders, do
  // not show that PostgreSQL has tried it yet).
  await waitFor(
    "the archiver to fail against the stopped endpoint",
    async () => (await archiver()).lastFailed === down[0],
    60_000,
  );
  const st = await archiver();
  assert.ok(st.last === null || st.last < (down[0] ?? ""), `nothing past ${first} may count as archived: ${st.last}`);
  // The repository that is up holds the segment PostgreSQL keeps retrying.
  assert.ok(localSegments().includes(down[0] ?? ""), "the local repository holds what it got");
  const log = readFileSync(join(p.base, "master.log"), "utf8");
  assert.match(
    log,
    new RegExp(`${down[0]} not archived to also_archive_to\\[1\\] \\(s3://${BUCKET}/site2/logs.complete\\)`),
  );

  const status = ok(runBin("wal-ctl", [p.masterIni, "status", "--json"]), "status");
  const repos = (JSON.parse(status.stdout) as { repositories: { name: string; error?: string }[] }).repositories;
  assert.equal(repos.length, 2);
  assert.ok(repos[1]?.error !== undefined, "status names the repository that is down");

  await swift.startProxy();
  const last = down[down.length - 1] ?? "";
  // PostgreSQL's retry archives the failed segment; the batch of that run (archive_batch) the
  // ones after it, marking them done (so pg_stat_archiver counts only the first).
  await waitFor(
    `archiving to catch up to ${last}`,
    async () => {
      const inBucket = await bucketSegments();
      return down.every((s) => inBucket.includes(s) && localSegments().includes(s));
    },
    90_000,
  );
  await waitFor(
    "no segment left .ready",
    () =>
      Promise.resolve(
        !readdirSync(join(p.master.dataDir, "pg_wal", "archive_status")).some((n) => n.endsWith(".ready")),
      ),
    30_000,
  );
  const inBucket = await bucketSegments();
  for (const seg of [first, ...down]) {
    assert.ok(inBucket.includes(seg), `${seg} in the bucket`);
    assert.ok(localSegments().includes(seg), `${seg} in the local repository`);
    const sum = await swift.request("GET", `/${BUCKET}/site2/logs.complete/.${seg}.sha256`);
    assert.equal(
      sum.body.toString("utf8"),
      readFileSync(join(p.slaveDir, "logs.complete", `.${seg}.sha256`), "utf8"),
      `${seg}: same content in both`,
    );
  }
  const after = ok(runBin("wal-ctl", [p.masterIni, "status", "--json"]), "status");
  const r2 = (JSON.parse(after.stdout) as { repositories: { behindSegments: number | null }[] }).repositories;
  assert.deepEqual(
    r2.map((r) => r.behindSegments),
    [0, 0],
  );
  assert.ok(existsSync(join(p.slaveDir, "logs.complete")));
});

test("backups purge the also_archive_to repositories with the main cut-off; their own standbys hold more; an unreadable one is skipped", async () => {
  const third = makeTempDir("repothird");
  const q = await createPair("repopurge", {
    master: `also_archive_to = s3://${BUCKET}/site3, ${third}
s3_endpoint = ${swift.endpoint}
s3_access_key = ${swift.accessKey}
s3_secret_key = ${swift.secretKey}
s3_timeout = 5
s3_retries = 1
keep_backups = 1`,
  });
  chmodSync(q.masterIni, 0o600);
  const segs = (dir: string): string[] =>
    readdirSync(dir)
      .filter((n) => /^[0-9A-F]{24}$/.test(n))
      .sort();
  const mainDir = join(q.slaveDir, "logs.complete");
  const thirdDir = join(third, "logs.complete");
  const startOf = (): string =>
    (JSON.parse(readFileSync(join(q.slaveDir, "data.master", ".walmgr-backup.json"), "utf8")) as { startWal: string })
      .startWal;
  const switches = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      await q.master.query("INSERT INTO t SELECT generate_series(1, 1000)");
      const seg = await q.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
      await q.master.query("SELECT pg_switch_wal()");
      await waitFor(
        `${seg} archived to all three`,
        async () =>
          archived(q, seg) &&
          existsSync(join(mainDir, seg)) &&
          existsSync(join(thirdDir, seg)) &&
          (await bucketNames("site3")).includes(seg),
        60_000,
      );
    }
  };
  try {
    ok(runBin("wal-ctl", [q.masterIni, "setup"]), "setup");
    await q.master.query("CREATE TABLE t (id int)");
    await switches(4);
    const before = await bucketNames("site3");
    assert.ok(before.length >= 4, before.join(","));
    // A standby restoring from the bucket (a DR site) recorded that it still needs WAL from the
    // second oldest segment there.
    const hold = before[1] ?? "";
    const record = { restartpoint: hold, host: "drhost", slave_data: "/srv/dr", updated: new Date().toISOString() };
    const put = await swift.request("PUT", `/${BUCKET}/site3/logs.complete/.walmgr-standby.drsite`, {
      body: JSON.stringify(record),
    });
    assert.equal(put.status, 200);

    ok(runBin("wal-backup", [q.masterIni]), "backup 1");
    const start1 = startOf();
    assert.ok(hold < start1, `${hold} < ${start1}`);
    assert.deepEqual(
      segs(mainDir).filter((n) => n < start1),
      [],
      "the main repository is purged",
    );
    assert.deepEqual(
      segs(thirdDir).filter((n) => n < start1),
      [],
      "also_archive_to[2] is purged with the same cut-off",
    );
    assert.ok(segs(thirdDir).includes(start1), "and keeps what the set needs");
    const inBucket = await bucketNames("site3");
    assert.deepEqual(
      inBucket.filter((n) => n < hold),
      [],
      "also_archive_to[1] is purged up to what its own standby needs",
    );
    assert.deepEqual(
      inBucket.filter((n) => n >= hold && n < start1),
      before.filter((n) => n >= hold && n < start1),
      "what its standby needs stays",
    );
    const all = await bucketNames("site3", true);
    for (const gone of before.filter((n) => n < hold)) {
      assert.ok(!all.includes(`.${gone}.sha256`), `the checksum of ${gone} goes with it`);
    }
    const log = (): string => readFileSync(join(q.base, "master.log"), "utf8");
    assert.match(log(), /standby "drsite" of also_archive_to\[1\] \(s3:\/\/[^)]*\) still needs WAL from/);

    // The standby is gone; the local third repository cannot be listed (its folder lost its read
    // bit, archiving into it still works): backup 2 purges the bucket to the main cut-off, warns
    // about the third, and succeeds.
    const del = await swift.request("DELETE", `/${BUCKET}/site3/logs.complete/.walmgr-standby.drsite`);
    assert.equal(del.status, 204);
    chmodSync(thirdDir, 0o300);
    let start2: string;
    try {
      await switches(2);
      ok(runBin("wal-backup", [q.masterIni]), "backup 2");
      start2 = startOf();
    } finally {
      chmodSync(thirdDir, 0o700);
    }
    assert.ok(start1 < start2);
    assert.deepEqual(
      (await bucketNames("site3")).filter((n) => n < start2),
      [],
      "also_archive_to[1] now purged to the main cut-off",
    );
    assert.deepEqual(
      segs(mainDir).filter((n) => n < start2),
      [],
    );
    assert.ok(
      segs(thirdDir).some((n) => n < start2),
      "the unreadable repository was left alone",
    );
    assert.match(
      log(),
      new RegExp(
        `also_archive_to\\[2\\] \\(${posix.join(third, "logs.complete").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\) could not be purged`,
      ),
    );
  } finally {
    stopPair(q);
    removeTempDir(q.base);
    removeTempDir(third);
  }
});
