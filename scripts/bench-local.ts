/**
 * `npm run bench` (fourth part): the local hot paths against pgBackRest, side by side in one run.
 *
 * 1. Archive drain: a real PostgreSQL 15 piles up 16 ready segments (16 MiB) with an empty
 *    archive_command, then gets one contender's command by reload; the time until its archiver
 *    has no `.ready` left. Contenders: wal-archive as `setup` configures it (batch archiving on),
 *    the same with its slave directory in S3, `pgbackrest archive-push` sync and async
 *    (process-max=2), compress none, and the serial `cp` + fsync + rename floor. Twice: segments
 *    switched after a little WAL (the rest zeros, as archive_timeout and pg_switch_wal leave them;
 *    walmgr-ts's local repository stores the zeros as holes), and segments full of WAL
 *    (`drain-full`, a busy master's, where there are no zeros to leave out).
 * 2. Standby catch-up: a standby made from one base backup replays 32 archived segments full of
 *    WAL (row inserts); the time from its start until it has replayed them. Contenders: wal-restore (prefetch and the
 *    sh front on), the same from S3, `pgbackrest archive-get` sync and async (process-max=2), and `cp`.
 * 3. Base backup of a pgbench scale-30 database, a full copy each time (targets emptied, untimed):
 *    wal-backup, `pg_basebackup` (-X none, which like the others waits for the archive, and the
 *    default -X stream), `pgbackrest backup --type=full`, compress none.
 *
 * The S3 contenders (drain and catch-up) use `slave = s3://bench/site` on an OpenStack Swift
 * all-in-one with s3api on loopback (test/helpers/swift.ts: Python, single process per server,
 * one replica), so they time walmgr-ts's S3 driver plus that server, not a cloud. pgBackRest has
 * no S3 contender: 2.45 speaks only https to an S3 endpoint (repo1-storage-verify-tls=n turns
 * off the certificate check, not TLS; pointed at Swift's plain http port, `repo-ls` sat in the
 * TLS handshake with no answer for 60 s), so S3 is compared with its local repository instead.
 * Swift is stopped before the base backups. Skipped with --no-s3 or when python3-swift is missing.
 *
 * Contenders rotate within each round; medians and ratios (against walmgr-ts local, and for
 * the others against walmgr-ts S3 too). A measurement, not a test: exits 0 whatever the ratios.
 * Usage: node dist/scripts/bench-local.js [--runs N] (default 3)
 * [--only drain,drain-full,catchup,backup] (default all four) [--no-s3] [--compare-build DIR];
 * BENCH_KEEP=1 keeps the temp folder (the server log shows each wal-archive run).
 * --compare-build DIR adds another build of walmgr-ts (a checkout with `npm run build` done, e.g.
 * a `git worktree` of an older commit) to the drain and the catch-up as one more contender, with
 * the same config: how a change moves them, measured in the same rounds.
 */
import { chmodSync, readFileSync, rmSync } from "node:fs";
import { cpus } from "node:os";
import { Client } from "pg";
import { join, resolve } from "node:path";
import { Cluster, freePort } from "../test/helpers/cluster";
import { binPath, makeTempDir, mkdirAs, pgBin, removeTempDir, run, sleep, type RunResult } from "../test/helpers/env";
import { killPrefetcher } from "../test/helpers/prefetch";
import { swiftAvailable, TestSwift } from "../test/helpers/swift";
import { masterIniText, writeFileAs } from "../test/helpers/walmgr";
import { literal, median, ready, setArchiveCommand, sh } from "./bench-util";

const DRAIN_SEGMENTS = 16;
const CATCHUP_SEGMENTS = 32;
const PGBENCH_SCALE = 30;
const S3_BUCKET = "bench";
const S3_SLAVE = `s3://${S3_BUCKET}/site`;

interface Contender {
  label: string;
  command: string;
  samples: number[];
  after?: (dataDir: string) => void;
}

interface BackupContender {
  label: string;
  samples: number[];
  /** Untimed: clears what the previous run left, so every run is a full copy. */
  before?: () => void;
  run: () => RunResult;
  after?: () => void;
}

async function switches(c: Cluster, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await c.query("INSERT INTO t SELECT generate_series(1, 20000)");
    await c.query("SELECT pg_switch_wal()");
  }
}

/** Makes `n` more segments ready, each full of WAL: rows until n - 1 are complete, then a switch. */
async function fullSegments(c: Cluster, n: number): Promise<void> {
  const before = ready(c);
  // 100,000 rows are under 16 MiB of WAL: at most one segment completes per INSERT.
  while (ready(c) < before + n - 1) await c.query("INSERT INTO t SELECT generate_series(1, 100000)");
  await c.query("SELECT pg_switch_wal()");
}

/**
 * Writes `n` segments full of WAL (row inserts, as a busy master writes them), not `n` switches:
 * a switched segment holds little WAL, so replaying it costs next to nothing and the benchmark
 * would time the restore commands alone, not a standby catching up.
 */
async function fill(c: Cluster, n: number): Promise<void> {
  const start = await c.value<string>("SELECT pg_current_wal_lsn()::text");
  const bytes = async (): Promise<number> =>
    Number(await c.value<string>(`SELECT (pg_current_wal_lsn() - ${literal(start)}::pg_lsn)::text`));
  while ((await bytes()) < n * 16 * 1024 * 1024) await c.query("INSERT INTO t SELECT generate_series(1, 100000)");
}

/**
 * Waits until standby `s` has replayed up to `target`, asking over one connection every 20 ms
 * (a new connection per question would fork a backend each time, and compete with replay).
 */
async function replayed(s: Cluster, target: string, what: string, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  const client = new Client({ host: s.socketDir, port: s.port, user: "postgres", database: "postgres" });
  await client.connect();
  try {
    for (;;) {
      const r = await client.query<{ done: boolean }>(`SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done`, [
        target,
      ]);
      if (r.rows[0]?.done === true) return;
      if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
      await sleep(20);
    }
  } finally {
    await client.end();
  }
}

async function waitUntil(what: string, check: () => boolean | Promise<boolean>, ms = 300_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`);
    await sleep(10);
  }
}

function pgbackrestConf(dir: string, name: string, c: Cluster, async: boolean): string {
  const file = join(dir, `${name}.conf`);
  writeFileAs(
    file,
    [
      "[global]",
      `repo1-path=${join(dir, "repo")}`,
      `log-path=${join(dir, "log")}`,
      `lock-path=${join(dir, "lock")}`,
      `spool-path=${join(dir, `spool-${name}`)}`,
      "log-level-console=off",
      "log-level-file=off",
      "compress-type=none",
      "start-fast=y",
      ...(async ? ["archive-async=y", "process-max=2"] : []),
      "",
      "[bench]",
      `pg1-path=${c.dataDir}`,
      `pg1-port=${c.port}`,
      `pg1-socket-path=${c.socketDir}`,
      `pg1-user=postgres`,
      "",
    ].join("\n"),
  );
  return file;
}

/** A config file holding the S3 secret: mode 0600 (walmgr-ts refuses it readable by others). */
function writeS3Ini(file: string, text: string, swift: TestSwift): void {
  writeFileAs(
    file,
    `${text}slave = ${S3_SLAVE}\ns3_endpoint = ${swift.endpoint}\ns3_region = ${swift.region}\ns3_access_key = ${swift.accessKey}\ns3_secret_key = ${swift.secretKey}\n`,
  );
  chmodSync(file, 0o600);
}

/**
 * Medians, and each one's ratio to walmgr-ts's (the first contender): walmgr-ts time / its
 * time, below 1 where walmgr-ts is faster. `s3` (walmgr-ts with an S3 slave directory) gets
 * the same ratio column of its own for the others.
 */
function report(
  title: string,
  contenders: { label: string; samples: number[] }[],
  unit: number,
  what: string,
  s3?: { label: string; samples: number[] },
): void {
  process.stdout.write(`\n${title}\n`);
  if (s3)
    process.stdout.write("  (ratios: walmgr-ts local's or S3's median / that line's; below 1: walmgr-ts is faster)\n");
  const ours = median(contenders[0]?.samples ?? []);
  const theirs = s3 ? median(s3.samples) : NaN;
  for (const x of contenders) {
    const m = median(x.samples);
    process.stdout.write(
      `  ${x.label.padEnd(52)} median ${m.toFixed(0).padStart(6)} ms  (${(m / unit).toFixed(1)} ms/${what})${x === contenders[0] ? "" : `   walmgr-ts: ${(ours / m).toFixed(2)}×`}${!s3 || x === s3 || x === contenders[0] ? "" : `   S3: ${(theirs / m).toFixed(2)}×`}\n`,
    );
  }
}

async function main(): Promise<void> {
  const runsArg = process.argv.indexOf("--runs");
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 3;
  const onlyArg = process.argv.indexOf("--only");
  const only =
    onlyArg > 0 ? (process.argv[onlyArg + 1] ?? "").split(",") : ["drain", "drain-full", "catchup", "backup"];
  const want = (part: string): boolean => only.includes(part);
  const compareArg = process.argv.indexOf("--compare-build");
  const compareBuild = compareArg > 0 ? resolve(process.argv[compareArg + 1] ?? ".") : undefined;
  const base = makeTempDir("bench-local");
  const stopAll: Cluster[] = [];
  let swift: TestSwift | undefined;
  try {
    if ((want("drain") || want("drain-full") || want("catchup")) && !process.argv.includes("--no-s3")) {
      if (swiftAvailable()) {
        swift = await TestSwift.start();
        await swift.createBucket(S3_BUCKET);
        // What `setup` leaves: the folders' marker objects (wal-archive wants logs.complete to exist).
        for (const d of ["logs.complete", "logs.partial"]) {
          const res = await swift.request("PUT", `/${S3_BUCKET}/site/${d}/`, { body: "" });
          if (res.status !== 200) throw new Error(`PUT ${d}/: HTTP ${res.status}`);
        }
        process.stdout.write(`S3: ${S3_SLAVE} on Swift (s3api) at ${swift.endpoint}\n`);
      } else process.stdout.write("S3 contenders skipped: python3-swift is not installed\n");
    }
    for (const d of ["repo", "log", "lock", "spool-sync", "spool-async", "plain", "cp-restore"]) mkdirAs(join(base, d));
    const slave = join(base, "walshipping");
    mkdirAs(join(slave, "logs.complete"));
    mkdirAs(join(slave, "logs.partial"));
    const c = await Cluster.create(base, "master");
    stopAll.push(c);
    writeFileAs(
      join(c.dataDir, "postgresql.conf"),
      `${readFileSync(join(c.dataDir, "postgresql.conf"), "utf8")}\narchive_mode = on\narchive_command = ''\nwal_level = replica\nmax_wal_size = 2GB\n`,
    );
    c.start();
    await c.query("CREATE TABLE t (v int)");
    const ini = join(base, "master.ini");
    writeFileAs(ini, `[wal-master]\njob_name = bench\nmaster_data = ${c.dataDir}\nslave = ${slave}\n`);
    const s3Ini = join(base, "master-s3.ini");
    if (swift) writeS3Ini(s3Ini, `[wal-master]\njob_name = bench-s3\nmaster_data = ${c.dataDir}\n`, swift);
    const syncConf = pgbackrestConf(base, "sync", c, false);
    const asyncConf = pgbackrestConf(base, "async", c, true);
    const create = run("pgbackrest", [`--config=${syncConf}`, "--stanza=bench", "stanza-create"]);
    if (create.status !== 0) throw new Error(`pgbackrest stanza-create: ${create.stdout}${create.stderr}`);
    const plain = join(base, "plain");

    // Every contender's archive gets every segment from here on (catch-up and backups need them):
    // one command for each segment, so wal-archive must not batch here (a batched segment's
    // .done would keep it from the commands after wal-archive's).
    const chainIni = join(base, "chain.ini");
    writeFileAs(chainIni, `${readFileSync(ini, "utf8")}archive_batch = 0\n`);
    const s3ChainIni = join(base, "chain-s3.ini");
    if (swift)
      writeS3Ini(
        s3ChainIni,
        `[wal-master]\njob_name = bench-s3\nmaster_data = ${c.dataDir}\narchive_batch = 0\n`,
        swift,
      );
    const archiveToAll = (s3: boolean): Promise<void> =>
      setArchiveCommand(
        c,
        `${sh(binPath("wal-archive"))} ${sh(chainIni)} %p %f && pgbackrest --config=${sh(syncConf)} --stanza=bench archive-push %p && cp %p ${join(base, "cp-restore")}/%f${s3 ? ` && ${sh(binPath("wal-archive"))} ${sh(s3ChainIni)} %p %f` : ""}`,
      );
    // 1. Archive drain: of switched segments (WAL, then zeros: what archive_timeout and
    // pg_switch_wal leave, and what a quiet master archives), and of segments full of WAL (a busy
    // master's). Only the first kind has zeros for a local repository to leave as holes.
    const drainKinds = [
      { part: "drain", what: "switched (WAL, then zeros)", make: (c: Cluster) => switches(c, DRAIN_SEGMENTS) },
      { part: "drain-full", what: "full of WAL", make: (c: Cluster) => fullSegments(c, DRAIN_SEGMENTS) },
    ].filter((k) => want(k.part));
    for (const kind of drainKinds) {
      const drainers: Contender[] = [
        {
          label: "wal-archive CONFIG %p %f (batch, as setup sets it)",
          command: `${sh(binPath("wal-archive"))} ${sh(ini)} %p %f`,
          samples: [],
        },
        ...(swift
          ? [
              {
                label: "wal-archive S3-CONFIG %p %f (bucket on local Swift)",
                command: `${sh(binPath("wal-archive"))} ${sh(s3Ini)} %p %f`,
                samples: [],
              },
            ]
          : []),
        ...(compareBuild !== undefined
          ? [
              {
                label: `wal-archive of ${compareBuild}`.slice(0, 52),
                command: `${sh(join(compareBuild, "bin", "wal-archive"))} ${sh(ini)} %p %f`,
                samples: [],
              },
            ]
          : []),
        {
          label: "pgbackrest archive-push (sync)",
          command: `pgbackrest --config=${sh(syncConf)} --stanza=bench archive-push %p`,
          samples: [],
        },
        {
          label: "pgbackrest archive-push (async, process-max=2)",
          command: `pgbackrest --config=${sh(asyncConf)} --stanza=bench archive-push %p`,
          samples: [],
        },
        {
          label: "cp + fsync + rename (serial floor)",
          command: `cp %p ${plain}/.t.%f && sync ${plain}/.t.%f && mv ${plain}/.t.%f ${plain}/%f && sync ${plain}`,
          samples: [],
        },
      ];
      for (let i = 0; i < runs + 1; i++) {
        for (let k = 0; k < drainers.length; k++) {
          const x = drainers[(i + k) % drainers.length];
          if (!x) continue;
          await setArchiveCommand(c, "");
          await sleep(200);
          await kind.make(c);
          await waitUntil("segments ready", () => ready(c) >= DRAIN_SEGMENTS, 60_000);
          // Each contender starts with no dirty pages left by the one before it.
          run("sync", []);
          const t0 = process.hrtime.bigint();
          await setArchiveCommand(c, x.command);
          await waitUntil(`${x.label} to drain`, () => ready(c) === 0);
          x.samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
        }
        if (i === 0) for (const x of drainers) x.samples = [];
      }
      report(
        `archive drain: PostgreSQL's archiver, ${DRAIN_SEGMENTS} ready segments of 16 MiB ${kind.what}, ${runs} runs each; ${cpus().length} × ${cpus()[0]?.model ?? "?"}`,
        drainers,
        DRAIN_SEGMENTS,
        "segment",
        swift ? drainers[1] : undefined,
      );
    }
    if (want("catchup")) {
      // 2. Standby catch-up: every contender's archive gets the same segments.
      await archiveToAll(swift !== undefined);
      await sleep(300);
      const pristine = join(base, "pristine");
      const bb = run(pgBin("pg_basebackup"), [
        "-D",
        pristine,
        "-h",
        c.socketDir,
        "-p",
        String(c.port),
        "-U",
        "postgres",
        "-X",
        "none",
        "-c",
        "fast",
      ]);
      if (bb.status !== 0) throw new Error(`pg_basebackup: ${bb.stderr}`);
      await fill(c, CATCHUP_SEGMENTS);
      const target = await c.value<string>("SELECT pg_current_wal_lsn()::text");
      await c.query("SELECT pg_switch_wal()");
      await waitUntil("the catch-up segments archived", () => ready(c) === 0);
      const slaveIni = join(base, "slave.ini");
      writeFileAs(slaveIni, `[wal-slave]\njob_name = bench-slave\nslave_data = ${base}/standby\nslave = ${slave}\n`);
      const s3SlaveIni = join(base, "slave-s3.ini");
      if (swift) {
        // PAUSE and STOP of an S3 slave directory are local: its control_dir (made by setup).
        mkdirAs(join(base, "slave-s3.control"));
        writeS3Ini(
          s3SlaveIni,
          `[wal-slave]\njob_name = bench-slave-s3\nslave_data = ${base}/standby\ncontrol_dir = ${base}/slave-s3.control\n`,
          swift,
        );
      }
      const catchers: Contender[] = [
        {
          label: "wal-restore CONFIG %f %p %r (prefetch, sh front)",
          command: `${sh(binPath("wal-restore"))} ${sh(slaveIni)} %f %p %r`,
          samples: [],
          after: killPrefetcher,
        },
        ...(swift
          ? [
              {
                label: "wal-restore S3-CONFIG %f %p %r (prefetch, sh front)",
                command: `${sh(binPath("wal-restore"))} ${sh(s3SlaveIni)} %f %p %r`,
                samples: [],
                after: killPrefetcher,
              },
            ]
          : []),
        {
          label: "pgbackrest archive-get (sync)",
          command: `pgbackrest --config=${sh(syncConf)} --stanza=bench --pg1-path=${sh(join(base, "standby"))} archive-get %f %p`,
          samples: [],
        },
        {
          label: "pgbackrest archive-get (async, process-max=2)",
          command: `pgbackrest --config=${sh(asyncConf)} --stanza=bench --pg1-path=${sh(join(base, "standby"))} archive-get %f %p`,
          samples: [],
        },
        ...(compareBuild !== undefined
          ? [
              {
                label: `wal-restore of ${compareBuild}`.slice(0, 52),
                command: `${sh(join(compareBuild, "bin", "wal-restore"))} ${sh(slaveIni)} %f %p %r`,
                samples: [],
                after: killPrefetcher,
              },
            ]
          : []),
        { label: "cp dir/%f %p", command: `cp ${join(base, "cp-restore")}/%f %p`, samples: [] },
      ];
      const port = await freePort();
      for (let i = 0; i < runs + 1; i++) {
        for (let k = 0; k < catchers.length; k++) {
          const x = catchers[(i + k) % catchers.length];
          if (!x) continue;
          const dataDir = join(base, "standby");
          rmSync(dataDir, { recursive: true, force: true });
          // Copied as the server user, so the standby's files are its own.
          const cp = run("cp", ["-a", pristine, dataDir]);
          if (cp.status !== 0) throw new Error(`cp: ${cp.stderr}`);
          writeFileAs(join(dataDir, "standby.signal"), "");
          writeFileAs(
            join(dataDir, "postgresql.auto.conf"),
            `restore_command = ${literal(x.command)}\narchive_mode = off\nhot_standby = on\nport = ${port}\n`,
          );
          const s = new Cluster(dataDir, port, c.socketDir, join(base, "standby.log"));
          run("sync", []);
          const t0 = process.hrtime.bigint();
          s.start();
          try {
            await replayed(s, target, `${x.label} to replay`);
          } catch (err) {
            const log = readFileSync(join(base, "standby.log"), "utf8").split("\n").slice(-15).join("\n");
            throw new Error(`${(err as Error).message}; the standby's log ends:\n${log}`);
          }
          x.samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
          s.stop("immediate");
          x.after?.(dataDir);
        }
        if (i === 0) for (const x of catchers) x.samples = [];
      }
      report(
        `standby catch-up: ${CATCHUP_SEGMENTS} archived segments full of WAL replayed from one base backup (start to replayed), ${runs} runs each`,
        catchers,
        CATCHUP_SEGMENTS,
        "segment",
        swift ? catchers[1] : undefined,
      );
    }
    if (want("backup")) {
      // 3. Base backup of a pgbench scale-30 database, each a full copy into an empty target.
      // No S3 contender here: Swift's servers would only compete with the backups for the CPUs.
      await swift?.stop();
      await archiveToAll(false);
      await sleep(300);
      const pgArgs = ["-h", c.socketDir, "-p", String(c.port), "-U", "postgres"];
      // Only the pgbench database is backed up beside the catalog: the drain's and catch-up's rows go.
      await c.query("DROP TABLE IF EXISTS t");
      const init = run(pgBin("pgbench"), ["-i", "-q", "-s", String(PGBENCH_SCALE), ...pgArgs, "postgres"]);
      if (init.status !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
      await c.query("CHECKPOINT");
      const dbSize = Number(await c.value<string>("SELECT sum(pg_database_size(oid))::text FROM pg_database"));
      const backupIni = join(base, "backup.ini");
      // The slave directory the archive chain fills: wal-backup waits for its end segment there.
      writeFileAs(backupIni, masterIniText(c, slave));
      const bbDir = join(base, "bb");
      const backers: BackupContender[] = [
        {
          label: "wal-backup CONFIG (full: empty full_backup)",
          samples: [],
          before: () => rmSync(join(slave, "data.master"), { recursive: true, force: true }),
          run: () => run(binPath("wal-backup"), [backupIni]),
        },
        {
          label: "pg_basebackup -X none -c fast (waits for the archive, as the others)",
          samples: [],
          before: () => rmSync(bbDir, { recursive: true, force: true }),
          run: () => run(pgBin("pg_basebackup"), ["-D", bbDir, ...pgArgs, "-X", "none", "-c", "fast"]),
        },
        {
          label: "pg_basebackup -c fast (default -X stream)",
          samples: [],
          before: () => rmSync(bbDir, { recursive: true, force: true }),
          run: () => run(pgBin("pg_basebackup"), ["-D", bbDir, ...pgArgs, "-c", "fast"]),
        },
        {
          label: "pgbackrest backup --type=full (compress none)",
          samples: [],
          run: () => run("pgbackrest", [`--config=${syncConf}`, "--stanza=bench", "--type=full", "backup"]),
          after: () => {
            // Only the newest full backup kept, so the repository holds one copy at a time.
            run("pgbackrest", [`--config=${syncConf}`, "--stanza=bench", "--repo1-retention-full=1", "expire"]);
          },
        },
      ];
      for (let i = 0; i < runs + 1; i++) {
        for (let k = 0; k < backers.length; k++) {
          const x = backers[(i + k) % backers.length];
          if (!x) continue;
          x.before?.();
          run("sync", []);
          const t0 = process.hrtime.bigint();
          const r = x.run();
          const ms = Number(process.hrtime.bigint() - t0) / 1e6;
          if (r.status !== 0) throw new Error(`${x.label}: exit ${String(r.status)}\n${r.stdout}${r.stderr}`);
          x.samples.push(ms);
          x.after?.();
        }
        if (i === 0) for (const x of backers) x.samples = [];
      }
      rmSync(bbDir, { recursive: true, force: true });
      report(
        `base backup: pgbench scale ${PGBENCH_SCALE} (${(dbSize / 1048576).toFixed(0)} MiB of databases), a full copy each, ${runs} runs each`,
        backers,
        1,
        "backup",
      );
    }
  } finally {
    for (const c of stopAll) c.stop("immediate");
    await swift?.stop();
    if (process.env.BENCH_KEEP) console.log(`kept ${base}`);
    else removeTempDir(base);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-local: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
