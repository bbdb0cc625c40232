/**
 * `npm run demo`: the walmgr QUICK START on this machine, narrated. Creates a master and a slave
 * directory in a temporary folder, ships WAL, pauses and continues replay, ships the
 * in-progress segment, boots the standby and shows that nothing committed was lost.
 * Pass --keep to leave the folder (and the servers stopped) for a look around.
 *
 * With --s3 the slave directory is a bucket instead: an OpenStack Swift all-in-one with its
 * s3api (test/helpers/swift.ts) is started on loopback, bucket `demo` is created and both
 * configs say `slave = s3://demo/site` with the s3_* settings (so they are made mode 0600);
 * the standby's PAUSE and STOP live in its local control_dir (slave.control). Swift is
 * stopped at the end, also when the demo fails (--keep keeps the walmgr folder, not Swift's).
 */
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { removeTempDir, runBin, sleep, waitFor, type RunResult } from "../test/helpers/env";
import { TestSwift } from "../test/helpers/swift";
import { createPair, stopPair } from "../test/helpers/walmgr";

const keep = process.argv.includes("--keep");
const s3 = process.argv.includes("--s3");
const BUCKET = "demo";

function say(text: string): void {
  process.stdout.write(`\n== ${text}\n`);
}

function step(name: string, args: string[]): RunResult {
  const shown = args.map((a) => (a.endsWith(".ini") ? basename(a) : a)).join(" ");
  process.stdout.write(`$ ${name} ${shown}\n`);
  const res = runBin(name, args);
  const out = `${res.stdout}${res.stderr}`
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => `    ${l.replace(/^\S+ \S+ \d+ /, "")}`)
    .join("\n");
  if (out) process.stdout.write(`${out}\n`);
  if (res.status !== 0) throw new Error(`${name} ${shown} exited ${String(res.status)}`);
  return res;
}

/** The S3 settings both configs carry (the secret among them: the files are made private). */
function s3Settings(s: TestSwift): string {
  return `s3_endpoint = ${s.endpoint}\ns3_region = ${s.region}\ns3_access_key = ${s.accessKey}\ns3_secret_key = ${s.secretKey}\n`;
}

async function main(): Promise<void> {
  let swift: TestSwift | undefined;
  try {
    if (s3) {
      say("starting an S3 server: OpenStack Swift (all-in-one, s3api) on loopback");
      swift = await TestSwift.start();
      await swift.createBucket(BUCKET);
      process.stdout.write(
        `S3 endpoint ${swift.endpoint} (path-style, region ${swift.region}, key ${swift.accessKey}), started in ${(swift.startupMs / 1000).toFixed(1)} s\n` +
          `bucket: s3://${BUCKET}; the slave directory is s3://${BUCKET}/site (Swift's files: ${swift.dir})\n`,
      );
    }
    await quickStart(swift);
  } finally {
    if (swift) {
      await swift.stop();
      process.stdout.write("S3 server stopped\n");
    }
  }
}

async function quickStart(swift: TestSwift | undefined): Promise<void> {
  say(
    swift
      ? `creating a master cluster (initdb) in a temporary folder; the slave directory is s3://${BUCKET}/site`
      : "creating a master cluster (initdb) and a slave directory in a temporary folder",
  );
  const p = await createPair("demo", {
    master: `use_xlog_functions = 1\n${swift ? s3Settings(swift) : ""}`,
    slave: swift ? s3Settings(swift) : "",
  });
  process.stdout.write(`folder: ${p.base}\n`);
  try {
    if (swift) {
      // createPair writes `slave = <local dir>`: both configs point at the bucket instead, and
      // hold the secret key, so they must not be readable by others.
      for (const ini of [p.masterIni, p.slaveIni]) {
        writeFileSync(ini, readFileSync(ini, "utf8").replace(/^slave = .*$/m, `slave = s3://${BUCKET}/site`));
        chmodSync(ini, 0o600);
      }
      process.stdout.write(
        `master.ini and slave.ini: slave = s3://${BUCKET}/site, s3_endpoint = ${swift.endpoint}, mode 0600\n`,
      );
    }
    const rows = async (c: typeof p.master, tag: string): Promise<number> =>
      Number(await c.value<string>("SELECT count(*) FROM demo WHERE tag = $1", [tag]));

    say("3. start archiving and take a base backup");
    step("wal-ctl", [p.masterIni, "setup"]);
    if (swift) {
      process.stdout.write(`the slave's setup makes its local control_dir (${join(p.base, "slave.control")})\n`);
      step("wal-ctl", [p.slaveIni, "setup"]);
    }
    await p.master.query("CREATE TABLE demo (id serial PRIMARY KEY, tag text, at timestamptz DEFAULT now())");
    await p.master.query("INSERT INTO demo (tag) SELECT 'before backup' FROM generate_series(1, 1000)");
    step("wal-backup", [p.masterIni]);

    say("4. restore the backup on the slave and start replay (hot standby)");
    step("wal-ctl", [p.slaveIni, "restore"]);

    say("WAL shipping: 500 rows on the master, then a segment switch");
    await p.master.query("INSERT INTO demo (tag) SELECT 'shipped' FROM generate_series(1, 500)");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor("replay", async () => (await rows(p.slave, "shipped")) === 500, 90_000);
    process.stdout.write(`standby sees ${await rows(p.slave, "shipped")} 'shipped' rows\n`);

    say("check: does it all work? (the master forces a WAL switch and waits for it to arrive)");
    step("wal-ctl", [p.masterIni, "check", "--timeout", "60"]);
    step("wal-ctl", [p.slaveIni, "check"]);

    say("pause: new WAL is held back from the standby");
    step("wal-ctl", [p.slaveIni, "pause"]);
    await p.master.query("INSERT INTO demo (tag) SELECT 'while paused' FROM generate_series(1, 300)");
    await p.master.query("SELECT pg_switch_wal()");
    await sleep(7000);
    process.stdout.write(
      `after 7 s the standby sees ${await rows(p.slave, "while paused")} of 300 'while paused' rows\n`,
    );
    step("wal-ctl", [p.slaveIni, "continue"]);
    await waitFor("replay after continue", async () => (await rows(p.slave, "while paused")) === 300, 60_000);
    process.stdout.write(`after continue the standby sees ${await rows(p.slave, "while paused")} of 300\n`);

    say("5. rows only in the in-progress WAL segment, shipped with sync; then the master dies");
    await p.master.query("INSERT INTO demo (tag) SELECT 'in progress' FROM generate_series(1, 42)");
    step("wal-sync", [p.masterIni]);
    const total = Number(await p.master.value<string>("SELECT count(*) FROM demo"));
    p.master.stop("immediate");
    process.stdout.write(`master had ${total} rows; it is now stopped (immediate, as if it crashed)\n`);

    say("6. boot the slave: replay everything shipped, then open for writes");
    step("wal-ctl", [p.slaveIni, "boot"]);
    const after = Number(await p.slave.value<string>("SELECT count(*) FROM demo"));
    await p.slave.query("INSERT INTO demo (tag) VALUES ('written on the booted slave')");
    process.stdout.write(
      `booted slave has ${after} rows (master had ${total}), including ${await rows(p.slave, "in progress")} 'in progress' rows, and accepts writes\n`,
    );
    say(after === total ? "done: nothing committed on the master was lost" : "MISMATCH: rows were lost");
    process.exitCode = after === total ? 0 : 1;
  } finally {
    stopPair(p);
    if (keep) process.stdout.write(`kept ${p.base}\n`);
    else removeTempDir(p.base);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${String((err as Error).stack ?? err)}\n`);
  process.exitCode = 1;
});
