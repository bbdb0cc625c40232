/**
 * Several repositories on real PostgreSQL: the master archives to its local slave directory and,
 * through also_archive_to, to an S3 bucket (Swift's s3api). With the bucket's endpoint down,
 * archiving fails (PostgreSQL retries) while the local repository keeps what it got; status
 * names the repository that is behind; once the endpoint is back, archiving catches up and both
 * repositories hold the same segments with the same content.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ok, removeTempDir, runBin, waitFor } from "../helpers/env";
import { TestSwift } from "../helpers/swift";
import { createPair, stopPair, type Pair } from "../helpers/walmgr";

const BUCKET = "walmgr-second";
let p: Pair;
let swift: TestSwift;

async function bucketSegments(): Promise<string[]> {
  const res = await swift.request("GET", `/${BUCKET}?list-type=2&prefix=${encodeURIComponent("site2/logs.complete/")}`);
  return [...res.body.toString("utf8").matchAll(/<Key>site2\/logs\.complete\/([0-9A-F]{24})<\/Key>/g)].map(
    (m) => m[1] ?? "",
  );
}

function localSegments(): string[] {
  return readdirSync(join(p.slaveDir, "logs.complete"))
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort();
}

async function archiver(): Promise<{ last: string | null; failed: number }> {
  const r = await p.master.query<{ last: string | null; failed: string }>(
    "SELECT last_archived_wal AS last, failed_count::text AS failed FROM pg_stat_archiver",
  );
  return { last: r[0]?.last ?? null, failed: Number(r[0]?.failed ?? 0) };
}

before(async () => {
  swift = await TestSwift.start();
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

test("two repositories, one down: archiving fails until it is back, then catches up; nothing lost", async () => {
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE t (id int)");
  await p.master.query("INSERT INTO t SELECT generate_series(1, 1000)");
  const first = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor(`${first} archived to both`, async () => (await bucketSegments()).includes(first), 30_000);
  assert.ok(localSegments().includes(first));

  await swift.stopProxy();
  const down: string[] = [];
  for (let i = 0; i < 3; i++) {
    await p.master.query("INSERT INTO t SELECT generate_series(1, 1000)");
    down.push(await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())"));
    await p.master.query("SELECT pg_switch_wal()");
  }
  await waitFor(
    "the archiver to fail against the stopped endpoint",
    async () => (await archiver()).failed >= 2,
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
