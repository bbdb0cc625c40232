/**
 * backup_format = repo on real PostgreSQL 15 (issue 25, first steps): wal-backup stores the
 * data directory into the block repository; a second backup after a few changes stores a
 * fraction of the first; each set, materialized (src/repo/materialize.ts: what restore will
 * call) and started with the archive, recovers to exactly what the master had when its backup
 * ended. Restore, listbackups and verify of repo sets come next (docs/block-repository.md).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Cluster, freePort } from "../helpers/cluster";
import Ajv2020 from "ajv/dist/2020";
import { ok, REPO_ROOT, removeTempDir, RUN_AS, runBin, waitFor } from "../helpers/env";
import { createPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";
import { RepoLayout } from "../../src/repo/layout";
import { openManifest, readSetInfo } from "../../src/repo/manifest";
import { materializeSet } from "../../src/repo/materialize";
import { LocalDriver } from "../../src/storage/local/driver";

let p: Pair;
const restored: Cluster[] = [];
const validList = new Ajv2020({ allErrors: true }).compile(
  JSON.parse(readFileSync(join(REPO_ROOT, "schemas", "listbackups.schema.json"), "utf8")) as object,
);

before(async () => {
  p = await createPair("repobackup", {
    // compress_type: zstd, the default.
    master: "backup_format = repo\nbackup_parallel = 2\nkeep_backups = 9",
    slave: "backup_format = repo",
  });
  ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
});

after(() => {
  for (const c of restored) c.stop("immediate");
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

function sets(): string[] {
  return readdirSync(join(p.slaveDir, "repo", "sets"))
    .filter((n) => n.endsWith(".manifest"))
    .map((n) => n.slice(0, -".manifest".length))
    .sort();
}

/** Bytes wal-backup says it wrote into packs: its log line "… MiB written in N pack(s)". */
function written(out: string): number {
  const m = /stored \d+ files .*: ([\d.]+) MiB new, .* ([\d.]+) MiB written in \d+ pack\(s\)/.exec(out);
  assert.ok(m, `no "stored" line in:\n${out}`);
  return Number(m[2]);
}

/** Materializes `set`, starts it with the archive to `stopLsn` (or its end), and returns the cluster. */
async function startSet(set: string, stopLsn?: string): Promise<Cluster> {
  const dest = join(p.base, `restored-${set}`);
  rmSync(dest, { recursive: true, force: true });
  const got = await materializeSet(new LocalDriver(), new RepoLayout(join(p.slaveDir, "repo")), set, dest);
  assert.ok(got !== undefined);
  assert.match(String(got.info.labelfile), /START WAL LOCATION/);
  // Materialized by this (root) process, as restore will: the server's user owns it.
  if (RUN_AS) spawnSync("chown", ["-R", `${RUN_AS.uid}:${RUN_AS.gid}`, dest]);
  writeFileAs(join(dest, "recovery.signal"), "");
  writeFileAs(
    join(dest, "postgresql.auto.conf"),
    `restore_command = 'cp ${join(p.slaveDir, "logs.complete")}/%f %p'\narchive_mode = off\n${
      stopLsn === undefined ? "" : `recovery_target_lsn = '${stopLsn}'\nrecovery_target_action = promote\n`
    }`,
  );
  const c = new Cluster(dest, await freePort(), p.base, join(p.base, `restored-${set}.log`));
  c.start();
  restored.push(c);
  return c;
}

test("two repo backups: the second stores a fraction; each set recovers to its own end", async () => {
  await p.master.query("CREATE TABLE t (id int primary key, v text)");
  await p.master.query("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g");
  const first = ok(runBin("wal-backup", [p.masterIni]), "backup 1");
  assert.ok(sets().length === 1, `one set after backup 1:\n${first.stdout}${first.stderr}`);
  const firstOut = `${first.stdout}${first.stderr}`;
  const rows1 = await p.master.value<string>("SELECT count(*)::text || ':' || sum(length(v))::text FROM t");
  const [set1] = sets();
  assert.ok(set1 !== undefined);

  await p.master.query("UPDATE t SET v = repeat('y', 200) WHERE id % 1000 = 0");
  await p.master.query("INSERT INTO t SELECT g, 'new' FROM generate_series(200001, 200100) g");
  await p.master.query("CHECKPOINT");
  const second = ok(runBin("wal-backup", [p.masterIni]), "backup 2");
  const secondOut = `${second.stdout}${second.stderr}`;
  const rows2 = await p.master.value<string>("SELECT count(*)::text || ':' || sum(length(v))::text FROM t");
  assert.equal(sets().length, 2);
  const set2 = sets()[1] ?? "";
  process.stdout.write(`# ${/stored .*/.exec(firstOut)?.[0] ?? ""}\n# ${/stored .*/.exec(secondOut)?.[0] ?? ""}\n`);
  assert.ok(
    written(secondOut) < written(firstOut) / 2,
    `the second backup wrote ${written(secondOut)} MiB, the first ${written(firstOut)} MiB`,
  );
  // listbackups: both sets, newest first, with what each stored; --json valid against its schema.
  const table = ok(runBin("wal-ctl", [p.masterIni, "listbackups"]), "listbackups").stdout;
  assert.match(table, /NAME\s+START TIME\s+LABEL\s+START WAL\s+SIZE\s+STORED\s+FORMAT/);
  const lines = table.split("\n").filter((l) => /^\d{8}T\d{6}Z/.test(l));
  assert.deepEqual(
    lines.map((l) => l.split(/\s+/)[0]),
    [set2, set1],
  );
  assert.ok(
    lines.every((l) => /MiB \([\d.]+×\)\s+repo$/.test(l)),
    table,
  );
  const rowsJson = JSON.parse(ok(runBin("wal-ctl", [p.masterIni, "listbackups", "--json"]), "--json").stdout) as {
    name: string;
    format: string;
    storedBytes: number;
    bytes: number;
    startWal: string;
    stopWal: string;
  }[];
  assert.ok(validList(rowsJson), `listbackups --json against its schema: ${JSON.stringify(validList.errors)}`);
  assert.deepEqual(
    rowsJson.map((r) => [r.name, r.format]),
    [
      [set2, "repo"],
      [set1, "repo"],
    ],
  );
  assert.ok((rowsJson[0]?.storedBytes ?? 0) < (rowsJson[1]?.storedBytes ?? 0) / 2);
  assert.match(rowsJson[0]?.stopWal ?? "", /^[0-9A-F]{24}$/);

  // Nothing after backup 2 is in the archive but the switch that ended it.
  await p.master.query("SELECT pg_switch_wal()");

  const c2 = await startSet(set2);
  await waitPromoted(c2);
  assert.equal(await c2.value<string>("SELECT count(*)::text || ':' || sum(length(v))::text FROM t"), rows2);

  // Set 1, recovered only to its own end, is the table as backup 1 saw it.
  const i1 = await readSetInfo(new LocalDriver(), new RepoLayout(join(p.slaveDir, "repo")).manifestPath(set1));
  const c1 = await startSet(set1, String(i1?.info.stopLsn));
  await waitPromoted(c1);
  assert.equal(await c1.value<string>("SELECT count(*)::text || ':' || sum(length(v))::text FROM t"), rows1);
});

async function waitPromoted(c: Cluster): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      if ((await c.value<boolean>("SELECT NOT pg_is_in_recovery()")) === true) return;
    } catch {
      // still starting
    }
    if (Date.now() > deadline) throw new Error(`${c.dataDir} did not finish recovery in 120 s`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test("restore of repo sets: the newest into slave_data as a standby (not consumed), a named one with --target-lsn", async () => {
  const all = sets();
  assert.equal(all.length, 2, "the sets of the first test");
  await p.master.query("INSERT INTO t SELECT g, 'standby' FROM generate_series(300001, 300050) g");
  const rows = await p.master.value<string>("SELECT count(*)::text || ':' || sum(length(v))::text FROM t");
  ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "standby restore of the newest set");
  assert.deepEqual(sets(), all, "the set is still there (materialized, not moved)");
  await p.master.query("SELECT pg_switch_wal()");
  await waitFor(
    "the standby to replay what the master has",
    async () => {
      try {
        return (await p.slave.value<string>("SELECT count(*)::text || ':' || sum(length(v))::text FROM t")) === rows;
      } catch {
        return false;
      }
    },
    120_000,
  );
  assert.equal(await p.slave.value<boolean>("SELECT pg_is_in_recovery()"), true);

  // The first set, named, into a new directory, to its own end.
  const i1 = await readSetInfo(new LocalDriver(), new RepoLayout(join(p.slaveDir, "repo")).manifestPath(all[0] ?? ""));
  const dst = join(p.base, "pitr-first");
  const dry = ok(runBin("wal-ctl", ["-n", p.slaveIni, "restore", all[0] ?? "", dst]), "restore -n");
  assert.match(dry.stdout, /materialize the block repository's set \d{8}T\d{6}Z into/);
  assert.equal(existsSync(dst), false, "-n changes nothing");
  ok(
    runBin("wal-ctl", [
      p.slaveIni,
      "restore",
      all[0] ?? "",
      dst,
      "--target-lsn",
      String(i1?.info.stopLsn),
      "--target-action",
      "promote",
    ]),
    "named restore",
  );
  const c = new Cluster(dst, await freePort(), p.base, join(p.base, "pitr-first.log"));
  restored.push(c);
  c.start();
  await waitPromoted(c);
  assert.equal(await c.value<string>("SELECT count(*)::text FROM t"), "200000");

  const missing = runBin("wal-ctl", [p.slaveIni, "restore", "20000101T000000Z", join(p.base, "none")]);
  assert.equal(missing.status, 1, missing.stderr);
  assert.match(missing.stderr, /20000101T000000Z is not a set of the block repository/);
});

test("verify re-reads every block: a damaged one is named (set, file, offset), exit 9; restore of that set refuses it", async () => {
  const all = sets();
  const v = ok(runBin("wal-ctl", [p.slaveIni, "verify"]), "verify");
  assert.match(v.stdout + v.stderr, new RegExp(all[0] ?? "x"));
  const layout = new RepoLayout(join(p.slaveDir, "repo"));
  const newest = all[all.length - 1] ?? "";
  const m = await openManifest(new LocalDriver(), layout.manifestPath(newest));
  let hit: { path: string; offset: number; pack: string; at: number } | undefined;
  for await (const e of m?.entries ?? []) {
    if (hit !== undefined || e.d === 1 || !e.p.startsWith("base/")) continue;
    const k = e.b.findIndex((b) => b !== 0);
    const b = e.b[k];
    if (b === undefined || b === 0) continue;
    const f = e.f[b[0]];
    if (f === undefined) continue;
    hit = { path: e.p, offset: k * 65536, pack: f[0], at: f[1] + Math.floor(f[2] / 2) };
  }
  assert.ok(hit !== undefined, "a stored block of the newest set");
  const packFile = layout.packPath(hit.pack);
  const bytes = readFileSync(packFile);
  bytes.writeUInt8(bytes.readUInt8(hit.at) ^ 0xff, hit.at);
  writeFileSync(packFile, bytes);

  const bad = runBin("wal-ctl", [p.slaveIni, "verify", newest]);
  assert.equal(bad.status, 9, bad.stdout + bad.stderr);
  assert.ok((bad.stdout + bad.stderr).includes(hit.path), `verify names ${hit.path}:\n${bad.stdout}${bad.stderr}`);
  const json = runBin("wal-ctl", [p.slaveIni, "verify", newest, "--json"]);
  const report = JSON.parse(json.stdout) as {
    ok: boolean;
    sets: { name: string; restorable: boolean; problems: string[] }[];
  };
  assert.equal(report.ok, false);
  assert.equal(report.sets[0]?.name, newest);
  assert.equal(report.sets[0]?.restorable, false);
  assert.ok(
    report.sets[0]?.problems.some((x) => x.startsWith(`${hit?.path ?? ""} at offset `)),
    JSON.stringify(report.sets[0]),
  );

  const dst = join(p.base, "from-damaged");
  const r = runBin("wal-ctl", [p.slaveIni, "restore", newest, dst]);
  assert.equal(r.status, 9, r.stdout + r.stderr);
  assert.match(r.stderr, new RegExp(`set ${newest}: ${hit.path.replace(/[/.]/g, "\\$&")} at offset \\d+`));
  assert.equal(existsSync(dst), false, "nothing left at DST");
  // Put the byte back: later backups would reference the block as it was stored.
  bytes.writeUInt8(bytes.readUInt8(hit.at) ^ 0xff, hit.at);
  writeFileSync(packFile, bytes);
  ok(runBin("wal-ctl", [p.slaveIni, "verify", newest]), "verify after the repair");
});

test("retention: keep_backups = 2 drops the oldest set, its packs and the WAL only it needed; -n changes nothing", async () => {
  const before = sets();
  assert.equal(before.length, 2);
  const packsOf = (): string[] =>
    readdirSync(join(p.slaveDir, "repo", "packs")).flatMap((d) => readdirSync(join(p.slaveDir, "repo", "packs", d)));
  const keepBackups = (n: number): void =>
    writeFileAs(p.masterIni, readFileSync(p.masterIni, "utf8").replace(/^keep_backups = \d+$/m, `keep_backups = ${n}`));
  keepBackups(2);
  await p.master.query("INSERT INTO t SELECT g, 'third' FROM generate_series(400001, 400100) g");
  const third = ok(runBin("wal-backup", [p.masterIni]), "backup 3");
  const out = `${third.stdout}${third.stderr}`;
  const after = sets();
  assert.equal(after.length, 2, out);
  assert.deepEqual(after[0], before[1], "the oldest set went, the second stayed");
  assert.match(out, new RegExp(`dropping set ${before[0] ?? "x"}`));
  assert.match(out, /removed 1 set\(s\) and \d+ pack\(s\)/);
  // Every pack left is one a kept set references (verify reads them all), and both sets are whole.
  ok(runBin("wal-ctl", [p.slaveIni, "verify"]), "verify after expire");
  const layout = new RepoLayout(join(p.slaveDir, "repo"));
  const startOf = async (set: string): Promise<string> =>
    String((await readSetInfo(new LocalDriver(), layout.manifestPath(set)))?.info.startWal);
  const oldestStart = await startOf(after[0] ?? "");
  const older = readdirSync(join(p.slaveDir, "logs.complete")).filter(
    (n) => /^[0-9A-F]{24}$/.test(n) && n.slice(8) < oldestStart.slice(8),
  );
  assert.deepEqual(older, [], "WAL older than the oldest kept set is purged");

  // -n with keep_backups = 1: says what would go, changes nothing.
  const packs = packsOf().sort();
  keepBackups(1);
  const dry = ok(runBin("wal-ctl", ["-n", p.masterIni, "expire"]), "expire -n");
  assert.match(dry.stdout, new RegExp(`would drop set ${after[0] ?? "x"}`));
  assert.deepEqual(sets(), after);
  assert.deepEqual(packsOf().sort(), packs);
});
