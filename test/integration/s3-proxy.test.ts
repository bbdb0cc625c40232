/**
 * The S3 transport behind a misbehaving proxy (test/helpers/s3-proxy.ts) in front of a real
 * Swift s3api engine, with a real PostgreSQL 15 master archiving into the bucket and one real
 * backup set there (issue 22, items 2 and 7):
 *  - a listing answered with HTTP 200 and an HTML page (a captive portal) is an error, never
 *    "no backup set": wal-restore's %r cleanup with keep_backups = 0 deletes nothing the set needs;
 *  - a peer that trickles a byte a second cannot hold wal-restore past restore_timeout,
 *    wal-archive past s3_timeout × (s3_retries + 1), nor `check` past --timeout; nor can a black
 *    hole (a port that accepts and never answers) hold `check`.
 * The master archives straight into Swift; only the commands under test go through the proxy,
 * and they are spawned (the proxy runs in this process).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { mkdirAs, ok, removeTempDir, runBin, spawnBin, waitFor } from "../helpers/env";
import { blackHole, S3Proxy } from "../helpers/s3-proxy";
import { TestSwift } from "../helpers/swift";
import { createPair, masterIniText, slaveIniText, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

const BUCKET = "walmgr-proxy";
let swift: TestSwift;
let proxy: S3Proxy;
let p: Pair;
/** Where the commands under test put %p (owned by the server user). */
let out: string;

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** The S3 lines of a config: `endpoint` (Swift itself or the proxy) and `extra` settings. */
function s3(endpoint: string, extra: Record<string, string> = {}): string {
  const lines: Record<string, string> = {
    s3_endpoint: endpoint,
    s3_region: swift.region,
    s3_access_key: swift.accessKey,
    s3_secret_key: swift.secretKey,
    ...extra,
  };
  return Object.entries(lines)
    .map(([k, v]) => `${k} = ${v}`)
    .join("\n");
}

/** Writes a private config file (it holds the secret) beside the pair's. */
function ini(name: string, text: string): string {
  const path = join(p.base, `${name}.ini`);
  writeFileAs(
    path,
    text.replace(/^job_name = .*$/m, `job_name = ${name}`).replace(/^logfile = .*$/m, `logfile = ${name}.log`),
  );
  chmodSync(path, 0o600);
  return path;
}

const slaveIni = (name: string, endpoint: string, extra: Record<string, string> = {}): string =>
  ini(
    name,
    slaveIniText(p.slave, p.slaveData, `s3://${BUCKET}/site`, s3(endpoint, { restore_prefetch: "0", ...extra })),
  );
const masterIni = (name: string, endpoint: string, extra: Record<string, string> = {}): string =>
  ini(name, masterIniText(p.master, `s3://${BUCKET}/site`, s3(endpoint, extra)));

/** Keys under `prefix` in the bucket, straight from Swift (more than 1,000 never happen here). */
async function keys(prefix: string): Promise<string[]> {
  const res = await swift.request("GET", `/${BUCKET}?list-type=2&prefix=${encodeURIComponent(prefix)}`);
  assert.equal(res.status, 200);
  return [...res.body.toString("utf8").matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1] ?? "");
}

/** Names of the WAL segments archived in the bucket, sorted. */
async function archivedSegments(): Promise<string[]> {
  return (await keys("site/logs.complete/"))
    .map((k) => k.slice("site/logs.complete/".length))
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort();
}

/** Switches the master to a new segment (after some rows) and waits until it is archived. */
async function switchAndArchive(n: number): Promise<string> {
  const switched: string[] = [];
  for (let i = 0; i < n; i++) {
    await p.master.query("INSERT INTO shipped (tag) SELECT 'x' FROM generate_series(1, 1000)");
    switched.push(await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())"));
    await p.master.query("SELECT pg_switch_wal()");
  }
  // Every one, not only the last: a batch run stores ready segments side by side, so the last
  // can be listed before the ones ahead of it (seen on a busy machine).
  await waitFor(
    `${switched.join(", ")} archived`,
    async () => {
      const have = await archivedSegments();
      return switched.every((s) => have.includes(s));
    },
    60_000,
  );
  return switched[switched.length - 1] ?? "";
}

/** A run still going after this is killed (and fails its test): never a hung suite. */
const KILL_AFTER_MS = 60_000;

/** Runs a bin/ executable through the proxy (spawned: the proxy answers from this process). */
async function spawned(
  name: string,
  args: string[],
): Promise<{ status: number | null; output: string; seconds: number }> {
  const t0 = Date.now();
  const run = spawnBin(name, args, { cwd: p.base });
  const killer = setTimeout(() => run.child.kill("SIGKILL"), KILL_AFTER_MS);
  const end = await run.exited;
  clearTimeout(killer);
  const seconds = (Date.now() - t0) / 1000;
  const killed = end.signal === "SIGKILL" ? `\n(killed: still running after ${KILL_AFTER_MS / 1000} s)` : "";
  return { status: end.status, output: run.output() + killed, seconds };
}

let setStart: string;
let segments: string[];

before(async () => {
  swift = await TestSwift.shared();
  await swift.createBucket(BUCKET);
  proxy = await S3Proxy.start(swift.port);
  p = await createPair("s3-proxy");
  writeFileAs(p.masterIni, masterIniText(p.master, `s3://${BUCKET}/site`, s3(swift.endpoint)));
  chmodSync(p.masterIni, 0o600);
  out = join(p.base, "out");
  mkdirAs(out);
  // A master archiving into the bucket, a few segments, one backup set, more segments after it.
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
  await p.master.query("CREATE TABLE shipped (id serial PRIMARY KEY, tag text NOT NULL)");
  await switchAndArchive(3);
  ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
  const info = await swift.request("GET", `/${BUCKET}/site/data.master/.walmgr-backup.json`);
  assert.equal(info.status, 200, "the set's metadata is in the bucket");
  setStart = (JSON.parse(info.body.toString("utf8")) as { startWal: string }).startWal;
  await switchAndArchive(4);
  segments = await archivedSegments();
  assert.ok(segments.filter((s) => s < setStart).length >= 2, `segments before the set's start: ${segments.join(" ")}`);
  assert.ok(segments.filter((s) => s > setStart).length >= 4, `segments after the set's start: ${segments.join(" ")}`);
});

after(async () => {
  await proxy?.stop();
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
  await swift?.stop();
});

test("a listing answered with 200 and an HTML page is an error: the %r cleanup deletes nothing", async () => {
  const cfg = slaveIni("slave-portal", proxy.endpoint, { keep_backups: "0", restore_timeout: "30" });
  const seg = segments[segments.length - 1] as string;
  const prev = segments[segments.length - 2] as string;
  const dest = join(out, "portal");
  // The slave root's listing (where the backup sets are found) comes back as a portal's page.
  proxy.htmlForListings = /^site\/$/;
  let r;
  try {
    r = await spawned("wal-restore", [cfg, seg, dest, prev]);
  } finally {
    proxy.behave();
  }
  assert.ok(proxy.portalServed.length > 0, "the proxy answered the slave root's listing with its page");
  assert.deepEqual(await archivedSegments(), segments, `no WAL may be removed on an HTML listing:\n${r.output}`);
  // The segment itself is served (its own requests are fine); the cleanup is refused, saying why.
  assert.equal(r.status, 0, r.output);
  assert.equal(sha(readFileSync(dest)), sha((await swift.request("GET", `/${BUCKET}/site/logs.complete/${seg}`)).body));
  assert.match(
    r.output,
    /WAL cleanup .* failed: S3 GET s3:\/\/walmgr-proxy\/ at http:\/\/127\.0\.0\.1:\d+ \(a listing of "site\/"\): HTTP 200, but the answer is not an XML document: \d+ byte\(s\) of text\/html/,
  );

  // The same call with honest answers does clean up, down to the set's start and no further:
  // the scenario above could delete, and the set keeps what it needs.
  const again = await spawned("wal-restore", [cfg, seg, join(out, "honest"), prev]);
  assert.equal(again.status, 0, again.output);
  const left = await archivedSegments();
  assert.deepEqual(
    left,
    segments.filter((s) => s >= setStart),
    `the honest cleanup removes only what precedes the set's start ${setStart}`,
  );
  segments = left;
});

test("a backup listing that is an HTML page fails listbackups and verify instead of showing no set", async () => {
  const cfg = slaveIni("slave-portal-list", proxy.endpoint);
  proxy.htmlForListings = /^site\/$/;
  try {
    for (const cmd of ["listbackups", "verify"]) {
      const r = await spawned("wal-ctl", [cfg, cmd]);
      assert.equal(r.status, 6, `${cmd}: ${r.output}`);
      assert.match(
        r.output,
        /not an XML document: \d+ byte\(s\) of text\/html[^:]*: "<!DOCTYPE html> <html><head><title>Network login/,
      );
    }
  } finally {
    proxy.behave();
  }
});

// Item 7: a peer that trickles one byte a second.
const TRICKLE = { restore_timeout: "5", s3_timeout: "2", s3_retries: "1" };

test("a trickling endpoint: wal-restore gives up within restore_timeout and leaves nothing at %p", async (t) => {
  const cfg = slaveIni("slave-trickle", proxy.endpoint, TRICKLE);
  const seg = segments[segments.length - 1] as string;
  // Everything trickled (status line and headers too); then only the segment's body, after
  // its headers came at once (a download is bounded as a whole too, not only while idle).
  const modes: NonNullable<S3Proxy["trickle"]>[] = [
    { everyMs: 1000 },
    { everyMs: 1000, bodyOnly: true, match: (m, url) => m === "GET" && url.endsWith(`/logs.complete/${seg}`) },
  ];
  for (const [i, mode] of modes.entries()) {
    const destDir = join(out, `trickle-${i}`);
    mkdirAs(destDir);
    proxy.trickle = mode;
    let r;
    try {
      r = await spawned("wal-restore", [cfg, seg, join(destDir, "RECOVERYXLOG")]);
    } finally {
      proxy.behave();
    }
    t.diagnostic(`wal-restore, trickle mode ${i}: exit ${r.status} after ${r.seconds} s`);
    assert.ok(r.status !== null && r.status !== 0 && r.status <= 125, `mode ${i}: exit ${r.status}: ${r.output}`);
    assert.equal(r.status, 1, `mode ${i}: 'not available', PostgreSQL retries: ${r.output}`);
    assert.ok(r.seconds < 15, `mode ${i}: took ${r.seconds} s with restore_timeout = 5`);
    assert.deepEqual(readdirSync(destDir), [], `mode ${i}: nothing at %p, no temp file beside it`);
    assert.match(r.output, /restore_timeout = 5 s|s3_timeout/, r.output);
  }
});

test("a download slower than s3_timeout is not cut while it keeps s3_timeout per s3_part_size", async (t) => {
  const seg = segments[segments.length - 1] as string;
  const stored = (await swift.request("GET", `/${BUCKET}/site/logs.complete/${seg}`)).body;
  // The segment's 16 MiB at about 4 MB/s: 4 s, twice s3_timeout.
  const slow = {
    everyMs: 50,
    bytes: 200 << 10,
    bodyOnly: true,
    match: (m: string, url: string) => m === "GET" && url.endsWith(`/logs.complete/${seg}`),
  };
  const cases = [
    // 5 MiB parts: 4 parts, 4 × 2 s allowed: served.
    { partSize: String(5 << 20), status: 0 },
    // 16 MiB parts: one part, 2 s allowed: cut, 'not available'.
    { partSize: String(16 << 20), status: 1 },
  ];
  for (const c of cases) {
    const cfg = slaveIni(`slave-pace-${c.partSize}`, proxy.endpoint, {
      restore_timeout: "30",
      s3_timeout: "2",
      s3_retries: "0",
      s3_part_size: c.partSize,
    });
    const dest = join(out, `pace-${c.partSize}`);
    proxy.trickle = slow;
    let r;
    try {
      r = await spawned("wal-restore", [cfg, seg, dest]);
    } finally {
      proxy.behave();
    }
    t.diagnostic(`s3_part_size ${c.partSize}: exit ${r.status} after ${r.seconds} s`);
    assert.equal(r.status, c.status, r.output);
    if (c.status === 0) assert.equal(sha(readFileSync(dest)), sha(stored));
    else assert.match(r.output, /not all of the 16777216-byte object within 2 s \(s3_timeout\)/);
  }
});

test("a trickling endpoint: wal-archive exits 6 within s3_timeout × (s3_retries + 1)", async (t) => {
  const cfg = masterIni("master-trickle", proxy.endpoint, TRICKLE);
  const src = join(out, "0000000100000000000000F0");
  writeFileAs(src, "");
  writeFileSync(src, randomBytes(16 << 20));
  proxy.trickle = { everyMs: 1000 };
  let r;
  try {
    r = await spawned("wal-archive", [cfg, src, "0000000100000000000000F0"]);
  } finally {
    proxy.behave();
  }
  t.diagnostic(`wal-archive: exit ${r.status} after ${r.seconds} s`);
  assert.equal(r.status, 6, r.output);
  assert.ok(r.seconds < 12, `took ${r.seconds} s; the call's limit is 2 s × 2 = 4 s`);
  assert.match(r.output, /no complete answer within/);
});

test("a trickling endpoint: check (slave and master) ends within --timeout with the reason", async (t) => {
  const cfgs = [
    slaveIni("slave-trickle-check", proxy.endpoint, TRICKLE),
    masterIni("master-trickle-check", proxy.endpoint, TRICKLE),
  ];
  proxy.trickle = { everyMs: 1000 };
  try {
    for (const cfg of cfgs) {
      const r = await spawned("wal-ctl", [cfg, "check", "--timeout", "5"]);
      t.diagnostic(`check ${cfg}: exit ${r.status} after ${r.seconds} s`);
      assert.ok(r.status !== null && r.status !== 0 && r.status <= 125, `${cfg}: exit ${r.status}: ${r.output}`);
      assert.equal(r.status, 6, `${cfg}: the first failure is the transport's: ${r.output}`);
      assert.ok(r.seconds < 15, `${cfg}: took ${r.seconds} s with --timeout 5`);
      assert.match(r.output, /^FAIL +(layout|slave directory writable): .*no complete answer within/m, r.output);
    }
  } finally {
    proxy.behave();
  }
});

test("a black hole (accepts, never answers): check ends within --timeout and says so", async (t) => {
  const hole = await blackHole();
  try {
    for (const cfg of [
      slaveIni("slave-hole", hole.endpoint, { s3_timeout: "30", s3_retries: "4" }),
      masterIni("master-hole", hole.endpoint, { s3_timeout: "30", s3_retries: "4" }),
    ]) {
      const r = await spawned("wal-ctl", [cfg, "check", "--timeout", "5"]);
      t.diagnostic(`check ${cfg}: exit ${r.status} after ${r.seconds} s`);
      assert.equal(r.status, 6, `${cfg}: ${r.output}`);
      assert.ok(r.seconds < 15, `${cfg}: took ${r.seconds} s with --timeout 5 (s3_timeout 30)`);
      assert.match(r.output, /no complete answer within [0-9.]+ s, all the time left of --timeout = 5 s/, r.output);
    }
  } finally {
    await hole.stop();
  }
});

test("restore from S3 writes nothing outside its target: a key holding '..' is refused, a key the manifest does not name is not fetched (issue 23 item 3)", async () => {
  // Straight to Swift (no proxy): S3 keys are opaque strings, and the engine stores and lists these.
  const hostile = "site/data.master/../../../../../../../../outside-walmgr/PWNED";
  const extra = "site/data.master/not-in-the-manifest";
  const encode = (k: string): string => k.split("/").map(encodeURIComponent).join("/");
  for (const k of [hostile, extra]) {
    const put = await swift.request("PUT", `/${BUCKET}/${encode(k)}`, { body: "planted\n" });
    assert.equal(put.status, 200, `PUT ${k}: ${put.body.toString("utf8")}`);
  }
  assert.ok((await keys("site/data.master/")).includes(hostile), "the engine lists the key as written");
  const cfg = slaveIni("slave-paths", swift.endpoint);
  const dst = join(p.base, "restored-paths");
  const res = runBin("wal-ctl", [cfg, "restore", "data.master", dst]);
  assert.notEqual(res.status, 0, `restore took a set holding ${hostile}:\n${res.stderr}`);
  assert.ok(res.status !== null && res.status <= 125);
  assert.match(res.stderr, /names a path outside the set/);
  // Wherever the joins could have led: nothing called PWNED was written anywhere under the
  // pair's folder or the file system root's neighbours of the stage.
  const found = spawnSync("find", [p.base, "/tmp", "-name", "PWNED", "-newer", cfg], { encoding: "utf8" }).stdout;
  assert.equal(found.trim(), "", `written outside the target: ${found}`);
  // Without the hostile key the set restores, and only what its manifest names came along.
  const del = await swift.request("DELETE", `/${BUCKET}/${encode(hostile)}`);
  assert.ok(del.status === 204 || del.status === 200, `DELETE: ${del.status}`);
  const again = runBin("wal-ctl", [cfg, "restore", "data.master", dst]);
  assert.equal(again.status, 0, again.stderr);
  assert.ok(readdirSync(dst).includes("backup_label"));
  assert.ok(!readdirSync(dst).includes("not-in-the-manifest"), "a key the manifest does not name was fetched");
  await swift.request("DELETE", `/${BUCKET}/${encode(extra)}`);
});
