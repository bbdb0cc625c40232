/** The sync daemon in tests and in scripts/measure-rpo.ts: start it, stop it, and one RPO trial. */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseLsn } from "../../src/wal/names";
import { ok, removeTempDir, runBin, sleep, spawnBin, waitFor, type Spawned } from "./env";
import { createPair, stopPair, type Pair } from "./walmgr";

export interface SyncStateFile {
  name: string;
  offset: number;
  lsn: string;
  time: string;
}

export function syncState(p: Pair): SyncStateFile | undefined {
  try {
    return JSON.parse(readFileSync(join(p.slaveDir, "logs.partial", ".walmgr-sync-state"), "utf8")) as SyncStateFile;
  } catch {
    return undefined;
  }
}

export function pidfileOf(p: Pair): string {
  return join(p.base, "daemon.pid");
}

export function pidIn(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, "utf8"), 10);
    return Number.isInteger(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** The process runs (a zombie, exited and waiting to be reaped, does not). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A detached daemon that exited stays a zombie until init reaps it: it has ended.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}

/** Starts `wal-sync CONFIG --daemon` in the foreground (as a child) and waits for its pidfile. */
export async function startDaemon(p: Pair, extra: string[] = []): Promise<Spawned> {
  const d = spawnBin("wal-sync", [p.masterIni, "--daemon", ...extra]);
  await waitFor(
    "the sync daemon to write its pidfile",
    async () => {
      if (d.child.exitCode !== null) throw new Error(`the daemon exited ${d.child.exitCode}:\n${d.output()}`);
      return pidIn(pidfileOf(p)) === d.child.pid;
    },
    30_000,
    100,
  );
  return d;
}

/** SIGTERM, and the exit it led to. */
export async function stopDaemon(d: Spawned): Promise<{ status: number | null; signal: NodeJS.Signals | null }> {
  if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill("SIGTERM");
  return d.exited;
}

/** Waits until the daemon has shipped the master's WAL up to `lsn`. */
export async function waitShipped(p: Pair, lsn: string, timeoutMs = 30_000): Promise<void> {
  const want = parseLsn(lsn);
  await waitFor(
    `the daemon to ship up to ${lsn}`,
    () => {
      const st = syncState(p);
      return st !== undefined && st.lsn !== "" && parseLsn(st.lsn) >= want;
    },
    timeoutMs,
    100,
  );
}

/** The end of WAL the booted slave recovered to: the switch point in its newest .history file. */
export function recoveredEnd(slaveData: string): string | undefined {
  const wal = join(slaveData, "pg_wal");
  if (!existsSync(wal)) return undefined;
  const hist = readdirSync(wal)
    .filter((n) => /^[0-9A-F]{8}\.history$/.test(n))
    .sort()
    .pop();
  if (!hist) return undefined;
  const lines = readFileSync(join(wal, hist), "utf8")
    .split("\n")
    .filter((l) => /^\d+\s/.test(l));
  return lines.pop()?.split(/\s+/)[1];
}

export interface RpoResult {
  rows: number;
  recovered: number;
  lostRows: number;
  masterEnd: string;
  recoveredTo: string;
  bytesLost: number;
  secondsLost: number;
  segment: string;
  segmentArchived: boolean;
  daemonExit: number | null;
}

/**
 * One recovery-point trial, as the issue states it: a master and a slave, the daemon with
 * `loopDelay`, `batches` committed transactions, a wait of `waitLoops` × loop_delay, the master
 * stopped with -m immediate, the slave booted; then what the slave lacks.
 */
export async function rpoTrial(
  name: string,
  opts: {
    loopDelay?: number;
    waitLoops?: number;
    batches?: number;
    keep?: boolean;
    /** false: no daemon at all (the baseline: only archive_command ships). */
    daemon?: boolean;
    log?: (s: string) => void;
  } = {},
): Promise<RpoResult> {
  const loopDelay = opts.loopDelay ?? 1;
  const waitLoops = opts.waitLoops ?? 2;
  const batches = opts.batches ?? 20;
  const log = opts.log ?? ((): void => undefined);
  const p = await createPair(name, {
    master: `use_xlog_functions = 1\nloop_delay = ${loopDelay}\npidfile = daemon.pid`,
  });
  let d: Spawned | undefined;
  try {
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
    await p.master.query("CREATE TABLE rpo (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())");
    ok(runBin("wal-backup", [p.masterIni]), "wal-backup");
    ok(runBin("wal-ctl", [p.slaveIni, "restore"]), "restore");
    log("pair ready; starting the daemon");
    if (opts.daemon !== false) d = await startDaemon(p);
    for (let i = 0; i < batches; i++) {
      await p.master.query("INSERT INTO rpo (at) SELECT clock_timestamp() FROM generate_series(1, 10)");
    }
    const segment = await p.master.value<string>("SELECT pg_walfile_name(pg_current_wal_lsn())");
    const lastAt = await p.master.value<Date>("SELECT max(at) FROM rpo");
    const firstAt = await p.master.value<Date>("SELECT min(at) FROM rpo");
    await sleep(waitLoops * loopDelay * 1000);
    const masterEnd = await p.master.value<string>("SELECT pg_current_wal_insert_lsn()::text");
    p.master.stop("immediate");
    const segmentArchived = existsSync(join(p.slaveDir, "logs.complete", segment));
    const exit = d ? await stopDaemon(d) : { status: null };
    d = undefined;
    log(`master stopped at ${masterEnd}; booting the slave`);
    ok(runBin("wal-ctl", [p.slaveIni, "boot"]), "boot");
    const recovered = Number(await p.slave.value<string>("SELECT count(*)::text FROM rpo"));
    const slaveLast = await p.slave.value<Date | null>("SELECT max(at) FROM rpo");
    const recoveredTo =
      (await waitFor("the promoted slave's .history file", () => recoveredEnd(p.slaveData), 20_000)) ?? "0/0";
    const rows = batches * 10;
    const bytesLost = Math.max(0, Number(parseLsn(masterEnd) - parseLsn(recoveredTo)));
    // Seconds of commits lost: from the newest recovered commit (or, when none was, the first
    // commit of the trial) to the newest commit on the master.
    const secondsLost =
      recovered === rows ? 0 : Math.max(0, (lastAt.getTime() - (slaveLast ?? firstAt).getTime()) / 1000);
    return {
      rows,
      recovered,
      lostRows: rows - recovered,
      masterEnd,
      recoveredTo,
      bytesLost,
      secondsLost,
      segment,
      segmentArchived,
      daemonExit: exit.status,
    };
  } finally {
    if (d) await stopDaemon(d);
    stopPair(p);
    if (!opts.keep) removeTempDir(p.base);
  }
}
