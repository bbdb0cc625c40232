/**
 * wal-archive and wal-restore against a real S3 endpoint (Swift's s3api) that fails: stopped in
 * the middle of an upload (nothing visible under the final name; the retry succeeds), wrong
 * credentials (exit 6, the secret never printed), a bucket that does not exist, an endpoint
 * slower than the timeout, a secret in a file others can read. The executables are run the way
 * PostgreSQL runs them (CONFIG %p %f / CONFIG %f %p).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { makeTempDir, removeTempDir, runBin, sleep, spawnBin, waitFor } from "../helpers/env";
import { TestSwift } from "../helpers/swift";
import { writeFileAs } from "../helpers/walmgr";

const BUCKET = "walmgr-fail";
const SEG = "000000010000000000000007";
let swift: TestSwift;
let dir: string;
let segment: Buffer;

function ini(name: string, extra: Record<string, string> = {}, mode = 0o600): string {
  const settings: Record<string, string> = {
    job_name: name,
    logfile: `${name}.log`,
    slave: `s3://${BUCKET}/site`,
    completed_wals: "%(slave)s/logs.complete",
    s3_endpoint: swift.endpoint,
    s3_access_key: swift.accessKey,
    s3_secret_key: swift.secretKey,
    s3_timeout: "3",
    s3_retries: "2",
    archive_batch: "0",
    ...extra,
  };
  const path = join(dir, `${name}.ini`);
  const section = name.startsWith("slave") ? "wal-slave" : "wal-master";
  writeFileAs(
    path,
    `[${section}]\n${Object.entries(settings)
      .map(([k, v]) => `${k} = ${v}`)
      .join("\n")}\n`,
  );
  chmodSync(path, mode);
  return path;
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

async function stored(key: string): Promise<Buffer | undefined> {
  const res = await swift.request("GET", `/${BUCKET}/site/logs.complete/${key}`);
  return res.status === 200 ? res.body : undefined;
}

before(async () => {
  swift = await TestSwift.shared();
  await swift.createBucket(BUCKET);
  const res = await swift.request("PUT", `/${BUCKET}/site/logs.complete/`, { body: "" });
  assert.equal(res.status, 200);
  dir = makeTempDir("s3-failures");
  segment = randomBytes(16 << 20);
  writeFileAs(join(dir, SEG), "");
  writeFileSync(join(dir, SEG), segment);
});

after(async () => {
  await swift?.stop();
  if (dir) removeTempDir(dir);
});

test("the endpoint stopped in the middle of an upload: nothing under the final name, the retry stores it", async () => {
  const cfg = ini("master-stop", { s3_timeout: "20", s3_retries: "1" });
  // Every upload now waits 3 s in the proxy. The writer's claim (a small PUT) goes first; once
  // it is listed, the segment's PUT is on its way: the proxy goes away while it is in flight.
  swift.setSlow(3, "PUT");
  const run = spawnBin("wal-archive", [cfg, join(dir, SEG), SEG], { cwd: dir });
  try {
    await waitFor(
      "the writer's claim",
      async () =>
        (await swift.request("GET", `/${BUCKET}?list-type=2&prefix=site/logs.complete/.walmgr-claims/${SEG}/`)).body
          .toString("utf8")
          .includes("<Key>"),
      20_000,
    );
    await sleep(1000);
  } finally {
    await swift.stopProxy();
    swift.setSlow(0);
  }
  const { status } = await run.exited;
  await swift.startProxy();
  assert.equal(status, 6, `exit 6 (transport) expected: ${run.output()}`);
  assert.match(run.output(), /S3 PUT s3:\/\/walmgr-fail\/site\/logs.complete\/000000010000000000000007 /);
  assert.equal(await stored(SEG), undefined, "nothing may be visible under the final name");
  const again = runBin("wal-archive", [cfg, join(dir, SEG), SEG], { cwd: dir });
  assert.equal(again.status, 0, again.stderr);
  const got = await stored(SEG);
  assert.ok(got !== undefined && sha(got) === sha(segment), "the retry stores the whole segment");
  // A segment of exactly s3_part_size (16 MiB) is one PUT, not a one-part multipart upload.
  const head = await swift.request("HEAD", `/${BUCKET}/site/logs.complete/${SEG}`);
  assert.doesNotMatch(String(head.headers.etag), /-\d+"?$/, "a single PUT");
  const sum = await stored(`.${SEG}.sha256`);
  assert.match(sum?.toString("utf8") ?? "", new RegExp(`^${sha(segment)}  ${SEG}`));
  // Archiving it once more is identical content: success, nothing changed.
  assert.equal(runBin("wal-archive", [cfg, join(dir, SEG), SEG], { cwd: dir }).status, 0);
  // Other content under that name is refused (exit 8) and the archived copy stays.
  const other = join(dir, "other");
  writeFileAs(other, "");
  writeFileSync(other, randomBytes(16 << 20));
  const conflict = runBin("wal-archive", [cfg, other, SEG], { cwd: dir });
  assert.equal(conflict.status, 8, conflict.stderr);
  assert.equal(sha((await stored(SEG)) ?? Buffer.alloc(0)), sha(segment));
});

test("a file above s3_part_size goes up as a multipart upload and comes back whole", async () => {
  const cfg = ini("master-multipart", { s3_part_size: String(5 << 20) });
  const name = "00000001000000000000000A";
  const res = runBin("wal-archive", [cfg, join(dir, SEG), name], { cwd: dir });
  assert.equal(res.status, 0, res.stderr);
  const head = await swift.request("HEAD", `/${BUCKET}/site/logs.complete/${name}`);
  assert.match(String(head.headers.etag), /-4"?$/, "stored as 4 parts (5+5+5+1 MiB)");
  assert.equal(sha((await stored(name)) ?? Buffer.alloc(0)), sha(segment));
  const slave = ini("slave-multipart", { restore_prefetch: "0" });
  const back = runBin("wal-restore", [slave, name, join(dir, "mp")], { cwd: dir });
  assert.equal(back.status, 0, back.stderr);
  assert.equal(sha(readFileSync(join(dir, "mp"))), sha(segment));
  // Archived again: identical (read back through sha256), exit 0.
  assert.equal(runBin("wal-archive", [cfg, join(dir, SEG), name], { cwd: dir }).status, 0);
});

test("wal-restore serves the segment verified, and never leaves a file at %p when the endpoint is down", async () => {
  const cfg = ini("slave-restore", { restore_prefetch: "0", restore_timeout: "2", s3_retries: "1" });
  const ok = runBin("wal-restore", [cfg, SEG, join(dir, "got")], { cwd: dir });
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(sha(readFileSync(join(dir, "got"))), sha(segment));
  const missing = runBin("wal-restore", [cfg, "000000010000000000000009", join(dir, "none")], { cwd: dir });
  assert.equal(missing.status, 1, "a segment not archived is 'not available'");
  await swift.stopProxy();
  try {
    const t0 = Date.now();
    const down = runBin("wal-restore", [cfg, SEG, join(dir, "down")], { cwd: dir });
    assert.notEqual(down.status, 0);
    assert.ok(down.status !== null && down.status <= 125, "never fatal to recovery");
    assert.ok(Date.now() - t0 < 30_000, "answers within a bounded time");
    assert.ok(!existsSync(join(dir, "down")), "nothing at %p");
  } finally {
    await swift.startProxy();
  }
});

test("two archivers of one name at once, 20 times: the stored object always matches its checksum", async () => {
  const cfg = ini("master-race");
  const other = join(dir, "race-other");
  writeFileAs(other, "");
  const otherBytes = randomBytes(16 << 20);
  writeFileSync(other, otherBytes);
  let conflicts = 0;
  for (let i = 0; i < 20; i++) {
    const name = `0000000100000001000000${i.toString(16).toUpperCase().padStart(2, "0")}`;
    // Same content twice on even rounds, different content on odd ones.
    const a = spawnBin("wal-archive", [cfg, join(dir, SEG), name], { cwd: dir });
    const b = spawnBin("wal-archive", [cfg, i % 2 === 0 ? join(dir, SEG) : other, name], { cwd: dir });
    const [ra, rb] = await Promise.all([a.exited, b.exited]);
    const got = await stored(name);
    const sum = (await stored(`.${name}.sha256`))?.toString("utf8") ?? "";
    assert.ok(got !== undefined, `${name} stored (exits ${ra.status}, ${rb.status}):\n${a.output()}\n${b.output()}`);
    assert.ok(sum.startsWith(sha(got)), `${name}: the checksum belongs to the stored content`);
    if (i % 2 === 0) {
      assert.deepEqual([ra.status, rb.status], [0, 0], `${name}: identical content: both succeed`);
    } else {
      for (const r of [ra, rb]) assert.ok(r.status === 0 || r.status === 8, `exit 0 or 8, not ${r.status}`);
      // Claims make the create exclusive: exactly one wins, and its content is what is stored.
      if (ra.status === 0 && rb.status === 0) conflicts++;
      else if (ra.status === 0) assert.equal(sha(got), sha(segment));
      else if (rb.status === 0) assert.equal(sha(got), sha(otherBytes));
      else assert.fail(`${name}: neither writer succeeded (${ra.status}, ${rb.status})`);
    }
    const claims = (
      await swift.request("GET", `/${BUCKET}?list-type=2&prefix=site/logs.complete/.walmgr-claims/`)
    ).body.toString("utf8");
    assert.ok(!claims.includes("<Key>"), `no claim left behind: ${claims}`);
  }
  assert.equal(conflicts, 0, `both writers of different content succeeded ${conflicts} times in 10`);
});

test("a claim left by a writer killed on this host does not block the name", async () => {
  const cfg = ini("master-deadclaim");
  const name = "000000010000000200000001";
  const dead = { pid: 2 ** 22 + 12345, host: hostname(), started: new Date().toISOString(), command: "claim" };
  const put = await swift.request("PUT", `/${BUCKET}/site/logs.complete/.walmgr-claims/${name}/deadbeef`, {
    body: `${JSON.stringify(dead)}\n`,
  });
  assert.equal(put.status, 200);
  const t0 = Date.now();
  const res = runBin("wal-archive", [cfg, join(dir, SEG), name], { cwd: dir });
  assert.equal(res.status, 0, res.stderr);
  assert.ok(Date.now() - t0 < 10_000, "not held up by the dead writer's claim");
  const left = await swift.request("GET", `/${BUCKET}?list-type=2&prefix=site/logs.complete/.walmgr-claims/${name}/`);
  assert.ok(!left.body.toString("utf8").includes("<Key>"), "the dead writer's claim was cleared");
  assert.equal(sha((await stored(name)) ?? Buffer.alloc(0)), sha(segment));
});

test("wrong credentials: exit 6 with a clear message, the secret never printed", () => {
  const secret = "Wr0ngS3cretNeverPrinted";
  const cfg = ini("master-badkey", { s3_secret_key: secret });
  const res = runBin("wal-archive", [cfg, join(dir, SEG), SEG], { cwd: dir });
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /access denied/i);
  assert.match(res.stderr, /test:tester/);
  assert.ok(!res.stderr.includes(secret) && !res.stdout.includes(secret), "the secret was printed");
  assert.ok(!readFileSync(join(dir, "master-badkey.log"), "utf8").includes(secret), "the secret is in the log");
});

test("a bucket that does not exist: exit 6 naming it", () => {
  const cfg = ini("master-nobucket", { slave: "s3://no-such-bucket/site" });
  const res = runBin("wal-archive", [cfg, join(dir, SEG), SEG], { cwd: dir });
  assert.equal(res.status, 6, res.stderr);
  assert.match(res.stderr, /no-such-bucket/);
});

test("an endpoint slower than s3_timeout: exit 6 after the retries, not a hang", async () => {
  const cfg = ini("master-slow", { s3_timeout: "1", s3_retries: "1" });
  swift.setSlow(4);
  try {
    const t0 = Date.now();
    const res = runBin("wal-archive", [cfg, join(dir, SEG), "000000010000000000000008"], { cwd: dir });
    const took = Date.now() - t0;
    assert.equal(res.status, 6, res.stderr);
    assert.match(res.stderr, /no complete answer within /);
    assert.ok(took < 15_000, `took ${took} ms`);
  } finally {
    swift.setSlow(0);
  }
  await sleep(4500); // let the proxy finish the requests it slept on
  assert.equal(await stored("000000010000000000000008"), undefined, "nothing stored by the timed-out run");
});

test("a secret in a config file others can read is refused (exit 3), naming the file", () => {
  const cfg = ini("master-open", {}, 0o644);
  const res = runBin("wal-archive", [cfg, join(dir, SEG), SEG], { cwd: dir });
  assert.equal(res.status, 3, res.stderr);
  assert.match(res.stderr, /chmod 600/);
  assert.ok(!res.stderr.includes(swift.secretKey + "\n"));
});
