/**
 * `npm run measure:delta`: bytes sent over ssh by a second base backup after a small change,
 * against the first. A master (pgbench scale 10) backs up to a slave directory on a test sshd
 * (see test/helpers/sshd.ts); then 1,000 neighbouring rows are updated and a second backup is taken. rsync's
 * delta transfer against the previous set (--copy-dest) should send a small fraction.
 * Pass --compression to set compression = 1 (rsync -z).
 */
import { runBin } from "../test/helpers/env";
import { createRemotePair, stopRemotePair } from "../test/helpers/remote";

const compression = process.argv.includes("--compression");

function backup(ini: string): { sent: number; files: number; mib: number } {
  const res = runBin("wal-backup", [ini]);
  if (res.status !== 0) throw new Error(`wal-backup exited ${String(res.status)}:\n${res.stderr}`);
  const m = /backup copied: (\d+) files, ([\d.]+) MiB, (\d+) bytes sent,/.exec(res.stderr);
  if (!m) throw new Error(`no 'bytes sent' in:\n${res.stderr}`);
  return { files: Number(m[1]), mib: Number(m[2]), sent: Number(m[3]) };
}

async function measure(): Promise<void> {
  const p = await createRemotePair("delta", { master: `compression = ${compression ? 1 : 0}` });
  try {
    const setup = runBin("wal-ctl", [p.masterIni, "setup"]);
    if (setup.status !== 0) throw new Error(`setup failed: ${setup.stderr}`);
    p.master.pgbench(["-i", "-s", "10", "-q"]);
    await p.master.query("CHECKPOINT");
    const first = backup(p.masterIni);
    await p.master.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 1000");
    await p.master.query("CHECKPOINT");
    const second = backup(p.masterIni);
    const row = (name: string, b: typeof first): string =>
      `${name.padEnd(28)} ${String(b.files).padStart(6)} ${b.mib.toFixed(1).padStart(10)} ${String(b.sent).padStart(14)}`;
    process.stdout.write(
      [
        `base backup over ssh to a test sshd, pgbench scale 10, compression = ${compression ? 1 : 0}`,
        `${"".padEnd(28)} ${"files".padStart(6)} ${"data MiB".padStart(10)} ${"bytes sent".padStart(14)}`,
        row("first backup", first),
        row("second (1,000 rows changed)", second),
        `second / first: ${((second.sent / first.sent) * 100).toFixed(2)} % of the bytes (${(first.sent / Math.max(1, second.sent)).toFixed(0)}x fewer)`,
        "",
      ].join("\n"),
    );
  } finally {
    stopRemotePair(p);
  }
}

measure().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
