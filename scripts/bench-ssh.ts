/**
 * `npm run bench` (second part): one 16 MiB WAL segment over ssh, side by side in one run, on a
 * loopback sshd (the test sshd of test/helpers/sshd.ts: its own host key, a client config with
 * the `walslave-test` alias; when run as root, the master side runs as `postgres` and the slave
 * side as `walslave`, as in the tests).
 *
 *   archive: wal-archive CONFIG %p %f          (ssh transport, default ssh_control_persist; and = 0)
 *            rsync -a %p slave:dir/%f           (walmgr.py's way: one ssh per segment, no fsync)
 *            ssh slave 'cat > tmp && sync tmp && mv tmp final && sync -f dir' < %p   (durable floor)
 *   restore: wal-restore CONFIG %f %p           vs   rsync -a slave:dir/%f %p
 *
 * Contenders alternate within each round (drift in machine load hits all alike); medians and
 * ratios to each baseline are printed. A measurement, not a test: exits 0 whatever the ratios.
 * Usage: node dist/scripts/bench-ssh.js [--runs N] (default 15)
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join } from "node:path";
import { binPath, makeTempDir, removeTempDir, run } from "../test/helpers/env";
import { makeSlaveDir, runSlave, TestSshd } from "../test/helpers/sshd";
import { writeFileAs } from "../test/helpers/walmgr";
import { median } from "./bench-util";

const SEGMENT = 16 * 1024 * 1024;

interface Contender {
  label: string;
  run: (i: number) => { file: string; args: string[]; input?: string };
  samples: number[];
}

function seg(i: number): string {
  return `00000001000000AB${i.toString(16).toUpperCase().padStart(8, "0")}`;
}

function time(c: Contender, i: number): void {
  const cmd = c.run(i);
  const t0 = process.hrtime.bigint();
  const res =
    cmd.input === undefined
      ? run(cmd.file, cmd.args)
      : run("/bin/sh", ["-c", `exec "$0" "$@" < "${cmd.input}"`, cmd.file, ...cmd.args]);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (res.status !== 0) throw new Error(`${c.label} failed (${String(res.status)}): ${res.stderr}`);
  c.samples.push(ms);
}

function table(title: string, cs: Contender[], baselines: number[]): void {
  process.stdout.write(`\n${title}\n`);
  const base = cs[0];
  for (const c of cs) {
    const m = median(c.samples);
    const ratios = baselines
      .filter((b) => cs[b] !== c)
      .map(
        (b) => `${(median(base?.samples ?? []) / median(cs[b]?.samples ?? [])).toFixed(2)}× vs ${cs[b]?.label ?? ""}`,
      );
    process.stdout.write(
      `  ${c.label.padEnd(58)} median ${m.toFixed(0).padStart(5)} ms${c === base ? `   (${ratios.join(", ")})` : ""}\n`,
    );
  }
}

async function main(): Promise<void> {
  const runsArg = process.argv.indexOf("--runs");
  const runs = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 15;
  const sshd = await TestSshd.start();
  const masterBase = makeTempDir("bench-ssh");
  const slaveBase = makeSlaveDir("bench-ssh-slavehost");
  try {
    const slaveDir = join(slaveBase, "walshipping");
    const completed = join(slaveDir, "logs.complete");
    const plain = join(slaveBase, "plain");
    const mk = runSlave("mkdir", ["-p", "-m", "700", completed, join(slaveDir, "logs.partial"), plain]);
    if (mk.status !== 0) throw new Error(mk.stderr);
    const ini = join(masterBase, "master.ini");
    writeFileAs(
      ini,
      `[wal-master]\njob_name = bench\nslave = walslave-test:${slaveDir}\nssh_config = ${sshd.clientConfig}\nssh_timeout = 10\n`,
    );
    const iniPlain = join(masterBase, "master-nosharing.ini");
    writeFileAs(
      iniPlain,
      `[wal-master]\njob_name = bench\nslave = walslave-test:${slaveDir}\nssh_config = ${sshd.clientConfig}\nssh_timeout = 10\nssh_control_persist = 0\n`,
    );
    const src = join(masterBase, "segment");
    writeFileAs(src, "");
    writeFileSync(src, randomBytes(SEGMENT));
    const rsh = `ssh -F ${sshd.clientConfig}`;
    const archive: Contender[] = [
      {
        label: "wal-archive over ssh (one session, shared connection)",
        samples: [],
        run: (i) => ({ file: binPath("wal-archive"), args: [ini, src, seg(i)] }),
      },
      {
        label: "wal-archive, ssh_control_persist = 0 (own connection)",
        samples: [],
        run: (i) => ({ file: binPath("wal-archive"), args: [iniPlain, src, seg(5000 + i)] }),
      },
      {
        label: "rsync -a %p slave:dir/%f (walmgr.py, no fsync)",
        samples: [],
        run: (i) => ({ file: "rsync", args: ["-a", "-e", rsh, src, `walslave-test:${plain}/r-${seg(i)}`] }),
      },
      {
        label: "ssh 'cat > tmp && sync tmp && mv && sync -f dir' (floor)",
        samples: [],
        run: (i) => ({
          file: "ssh",
          args: [
            "-F",
            sshd.clientConfig,
            "walslave-test",
            `cat > ${plain}/tmp.${i} && sync ${plain}/tmp.${i} && mv ${plain}/tmp.${i} ${plain}/f-${seg(i)} && sync -f ${plain}`,
          ],
          input: src,
        }),
      },
    ];
    const restoreName = seg(0);
    const restore: Contender[] = [
      {
        label: "wal-restore over ssh",
        samples: [],
        run: (i) => ({ file: binPath("wal-restore"), args: [ini, restoreName, join(masterBase, `out-w-${i}`)] }),
      },
      {
        label: "rsync -a slave:dir/%f %p",
        samples: [],
        run: (i) => ({
          file: "rsync",
          args: ["-a", "-e", rsh, `walslave-test:${completed}/${restoreName}`, join(masterBase, `out-r-${i}`)],
        }),
      },
    ];
    const first = run(binPath("wal-archive"), [ini, src, restoreName]); // what restore reads
    if (first.status !== 0) throw new Error(first.stderr);
    const warm = 2;
    for (let i = 0; i < warm + runs; i++) {
      for (const c of archive) time(c, 1000 + i);
      for (const c of restore) time(c, i);
      if (i < warm) for (const c of [...archive, ...restore]) c.samples = [];
      run("/bin/sh", ["-c", `rm -f ${masterBase}/out-*`]);
    }
    process.stdout.write(
      `\nssh bench: ${runs} runs each, 16 MiB segment, loopback sshd; ${cpus().length} × ${cpus()[0]?.model ?? "?"}\n`,
    );
    table("archive one segment", archive, [2, 3]);
    table("restore one segment", restore, [1]);
  } finally {
    sshd.stop();
    removeTempDir(masterBase);
    removeTempDir(slaveBase);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench-ssh: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
