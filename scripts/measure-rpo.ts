/**
 * `node dist/scripts/measure-rpo.js [--trials N] [--loop-delay S] [--wait-loops K] [--baseline]`:
 * the recovery point of the sync daemon, measured. Each trial makes a master and a slave,
 * runs the daemon (record mode, loop_delay S), commits rows, waits K × loop_delay, stops the
 * master with -m immediate, boots the slave and reports what the slave lacks: rows, bytes of
 * WAL (the master's last insert position against the end the slave recovered to) and seconds
 * of commits. --baseline runs the same trials without the daemon (archive_command only).
 */
import { rpoTrial, type RpoResult } from "../test/helpers/daemon";

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a number`);
  return v;
}

async function main(): Promise<void> {
  const trials = arg("trials", 3);
  const loopDelay = arg("loop-delay", 1);
  const waitLoops = arg("wait-loops", 2);
  const baseline = process.argv.includes("--baseline");
  process.stdout.write(
    `recovery point of ${baseline ? "archive_command alone (no daemon)" : `the sync daemon (loop_delay ${loopDelay} s)`}: ` +
      `${trials} trial(s); commit 200 rows in 20 transactions, wait ${waitLoops} × ${loopDelay} s, stop the master -m immediate, boot the slave\n\n`,
  );
  const header = [
    "trial",
    "rows",
    "recovered",
    "lost rows",
    "bytes lost",
    "seconds lost",
    "master end",
    "slave end",
    "segment archived",
  ];
  process.stdout.write(`${header.join(" | ")}\n${header.map((h) => "-".repeat(h.length)).join(" | ")}\n`);
  const results: RpoResult[] = [];
  for (let i = 1; i <= trials; i++) {
    const started = Date.now();
    const r = await rpoTrial(`rpo-${i}`, { loopDelay, waitLoops, daemon: !baseline });
    results.push(r);
    const cells = [
      String(i),
      String(r.rows),
      String(r.recovered),
      String(r.lostRows),
      String(r.bytesLost),
      r.secondsLost.toFixed(3),
      r.masterEnd,
      r.recoveredTo,
      r.segmentArchived ? "yes" : "no",
    ];
    process.stdout.write(
      `${cells.map((c, j) => c.padStart(header[j]?.length ?? 0)).join(" | ")}   (${((Date.now() - started) / 1000).toFixed(0)} s)\n`,
    );
  }
  const sum = (f: (r: RpoResult) => number): number => results.reduce((a, r) => a + f(r), 0);
  const max = (f: (r: RpoResult) => number): number => Math.max(...results.map(f));
  process.stdout.write(
    `\nsummary: ${results.length} trial(s); rows lost: total ${sum((r) => r.lostRows)}, worst ${max((r) => r.lostRows)}; ` +
      `bytes lost: worst ${max((r) => r.bytesLost)}, mean ${(sum((r) => r.bytesLost) / results.length).toFixed(0)}; ` +
      `seconds lost: worst ${max((r) => r.secondsLost).toFixed(3)}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
