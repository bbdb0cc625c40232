/**
 * `npm run bench` (third part): PostgreSQL's archiver draining 16 ready segments to a slave on a
 * loopback sshd, side by side in one run. A real PostgreSQL 15 cluster piles up 16 segments with
 * `archive_command = ''` (the archiver leaves them `.ready`), then gets one contender's
 * `archive_command` by reload, and the time until no `.ready` is left is measured:
 *
 *   wal-archive CONFIG %p %f                                   (ssh transport, shared connection)
 *   rsync -a %p slave:dir/%f                                   (walmgr.py's way, no fsync)
 *   ssh slave 'cat > tmp && sync tmp && mv tmp final && sync -f dir' < %p   (durable floor)
 *
 * Contenders alternate within each round; medians and ratios are printed. A measurement, not a
 * test: exits 0 whatever the ratios. Usage: node dist/scripts/bench-drain.js [--runs N] (default 5)
 */
import { existsSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { Cluster } from "../test/helpers/cluster";
import { binPath, makeTempDir, removeTempDir, sleep } from "../test/helpers/env";
import { makeSlaveDir, runSlave, TestSshd } from "../test/helpers/sshd";
import { writeFileAs } from "../test/helpers/walmgr";
import { median, ready, setArchiveCommand, sh } from "./bench-util";

const SEGMENTS = 16;

interface Contender {
  label: string;
  command: string;
  samples: number[];
}

/** Piles up SEGMENTS ready segments while the archiver has no command. */
async function pileUp(c: Cluster): Promise<void> {
  await setArchiveCommand(c, "");
  await sleep(200); // the reload reaches the archiver before the segments do
  for (let i = 0; i < SEGMENTS; i++) {
    await c.query("INSERT INTO t SELECT 1");
    await c.query("SELECT pg_switch_wal()");
  }
  const deadline = Date.now() + 30_000;
  while (ready(c) < SEGMENTS) {
    if (Date.now() > deadline) throw new Error(`only ${ready(c)} segments became ready`);
    await sleep(20);
  }
}

async function drain(c: Cluster, contender: Contender): Promise<void> {
  await pileUp(c);
  const t0 = process.hrtime.bigint();
  await setArchiveCommand(c, contender.command);
  const deadline = Date.now() + 300_000;
  while (ready(c) > 0) {
    if (Date.now() > deadline) throw new Error(`${contender.label}: still ${ready(c)} ready after 300 s:\n${c.log()}`);
    await sleep(10);
  }
  contender.samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
}

async function main(): Promise<void> {
  const runsArg = process.argv.indexOf("--runs");
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 5;
  const sshd = await TestSshd.start();
  const base = makeTempDir("bench-drain");
  const slaveBase = makeSlaveDir("bench-drain-slavehost");
  let c: Cluster | undefined;
  try {
    const slaveDir = join(slaveBase, "walshipping");
    const plain = join(slaveBase, "plain");
    const mk = runSlave("mkdir", [
      "-p",
      "-m",
      "700",
      join(slaveDir, "logs.complete"),
      join(slaveDir, "logs.partial"),
      plain,
    ]);
    if (mk.status !== 0) throw new Error(mk.stderr);
    const ini = join(base, "master.ini");
    writeFileAs(
      ini,
      `[wal-master]\njob_name = bench\nlogfile = ${join(base, "bench.log")}\nslave = walslave-test:${slaveDir}\nssh_config = ${sshd.clientConfig}\nssh_timeout = 10\n`,
    );
    c = await Cluster.create(base, "master");
    writeFileAs(
      join(c.dataDir, "postgresql.conf"),
      `${readFileSync(join(c.dataDir, "postgresql.conf"), "utf8")}\narchive_mode = on\narchive_command = ''\nwal_level = replica\n`,
    );
    c.start();
    await c.query("CREATE TABLE t (v int)");
    const rsh = `ssh -F ${sshd.clientConfig}`;
    const contenders: Contender[] = [
      {
        label: "wal-archive over ssh (shared connection)",
        command: `${sh(binPath("wal-archive"))} ${sh(ini)} %p %f`,
        samples: [],
      },
      {
        label: "rsync -a %p slave:dir/%f (walmgr.py, no fsync)",
        command: `rsync -a -e ${sh(rsh)} %p walslave-test:${sh(plain)}/r-%f`,
        samples: [],
      },
      {
        label: "ssh 'cat > tmp && sync tmp && mv && sync -f dir' (floor)",
        command: `ssh -F ${sh(sshd.clientConfig)} walslave-test ${sh(`cat > ${plain}/tmp.%f && sync ${plain}/tmp.%f && mv ${plain}/tmp.%f ${plain}/f-%f && sync -f ${plain}`)} < %p`,
        samples: [],
      },
    ];
    for (let i = 0; i < runs + 1; i++) {
      // Rotate who goes first, so that drift in machine load hits all alike.
      for (let k = 0; k < contenders.length; k++) {
        const contender = contenders[(i + k) % contenders.length];
        if (contender) await drain(c, contender);
      }
      if (i === 0) for (const x of contenders) x.samples = []; // warm-up
      // What was archived is not needed again (each round's segments have new names): free the disk.
      const done = join(slaveDir, "logs.complete");
      runSlave("/bin/sh", ["-c", `rm -f ${plain}/* ${done}/0* ${done}/.0*`]);
    }
    if (!existsSync(join(base, "bench.log"))) throw new Error("wal-archive never ran");
    process.stdout.write(
      `\ndrain bench: PostgreSQL's archiver, ${SEGMENTS} ready segments of 16 MiB, ${runs} runs each, loopback sshd; ${cpus().length} × ${cpus()[0]?.model ?? "?"}\n`,
    );
    const ours = median(contenders[0]?.samples ?? []);
    for (const x of contenders) {
      const m = median(x.samples);
      process.stdout.write(
        `  ${x.label.padEnd(58)} median ${m.toFixed(0).padStart(6)} ms  (${(m / SEGMENTS).toFixed(0)} ms/segment)${x === contenders[0] ? "" : `   wal-archive: ${(ours / m).toFixed(2)}×`}\n`,
      );
    }
  } finally {
    c?.stop("immediate");
    sshd.stop();
    removeTempDir(base);
    removeTempDir(slaveBase);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-drain: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
