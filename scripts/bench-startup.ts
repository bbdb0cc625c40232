/**
 * `npm run bench`: what does one `wal-archive` or `wal-restore` call cost, compared with what it has
 * to do anyway?
 *
 * PostgreSQL starts archive_command once per 16 MiB WAL segment, so the fixed cost of a call
 * (starting node, loading our modules, reading CONFIG) adds up. The issue's target: a plain
 * `wal-archive CONFIG %p %f` of a 16 MiB segment costs at most 1.3 × (bare node start-up + a
 * durable copy of the segment). This script measures, in wall-clock time per run:
 *
 *   node -e ''                 bare node start-up
 *   X --version                our start-up, for each of the five executables: node + the
 *                              modules bin/X loads and its argument parser, no work
 *                              (wal-archive and wal-restore: util.parseArgs, within 1.3× of
 *                              bare node; wal-sync, wal-backup, wal-ctl: yargs)
 *   cp+fsync (16MB)            the copy baseline: sh -c 'cp "$1" "$2" && sync "$2"'
 *   wal-archive (16MB)         a real archive of a 16 MiB segment under a fresh name
 *   cp (16MB restore)          PostgreSQL's example restore_command: sh -c 'cp "$1" "$2"'
 *   wal-restore (16MB, archive)  the Node path: fetch, verify against the checksum, rename (prefetch off)
 *   wal-restore (16MB, spooled)  the shell front serving a spooled entry (a rename; no Node)
 *   wal-archive (archived ahead) the shell front acknowledging PostgreSQL's call for a segment
 *                              an earlier run archived ahead (batch archiving; no Node)
 *
 * plus two informational rows: `sh -c true` (what the shell in the cp baseline costs) and
 * `dd conv=fsync (16MB)` (a one-process read/write copy, no shell, no copy_file_range).
 *
 * Each run is one child_process.spawnSync timed with process.hrtime.bigint(); the commands are
 * interleaved (one run of each per round) so drift in machine load hits all of them alike, after
 * a few warm-up rounds that are not counted. Prints median and p90 per command and the ratios.
 * Exits 0 whether or not the target is met (this is a measurement, not a test); non-zero only
 * when something fails to run.
 *
 * Usage: node dist/scripts/bench-startup.js [--runs N] [--warmup N] [--json] [--keep-env]
 *   --runs N      measured runs per command (default 30); --warmup N uncounted rounds first (default 3)
 *   --json        stdout is one JSON object with every number; the table goes to stderr instead
 *   --keep-env    pass NODE_OPTIONS, NODE_EXTRA_CA_CERTS … through to the children (see NODE_STARTUP_ENV)
 */
import { spawnSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import {
  closeSync,
  copyFileSync,
  existsSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { bootId, checkRecordName } from "../src/command/archive/spool";
import { ACK_DIR } from "../src/command/archive/acks";
import { fileStamp } from "../src/config/load";

const SEGMENT_SIZE = 16 * 1024 * 1024;
const TARGET_RATIO = 1.3;
const ROOT = resolve(__dirname, "..", ".."); // dist/scripts/ -> repository root
const WAL_ARCHIVE = join(ROOT, "bin", "wal-archive");
const WAL_RESTORE = join(ROOT, "bin", "wal-restore");
/** The segment name the archived-ahead row acknowledges. */
const ACK_NAME = "0000000100000000000000A0";
/** The executables whose start-up (`X --version`) is measured, with their keys in the results. */
const EXECUTABLES = [
  ["wal-archive", "walArchiveVersion"],
  ["wal-restore", "walRestoreVersion"],
  ["wal-sync", "walSyncVersion"],
  ["wal-backup", "walBackupVersion"],
  ["wal-ctl", "walCtlVersion"],
] as const;
/** wal-archive and wal-restore run once per WAL segment: their start-up must stay near bare node's. */
const HOT_PATH_START_RATIO = 1.3;
/** The archived segment the wal-restore rows fetch (timeline 2: never one of walName's). */
const RESTORE_NAME = "000000020000000000000001";

interface Options {
  runs: number;
  warmup: number;
  json: boolean;
  keepEnv: boolean;
}

const USAGE = "usage: node dist/scripts/bench-startup.js [--runs N] [--warmup N] [--json] [--keep-env]\n";

/**
 * Environment variables that change what node does at start-up, removed from the children's
 * environment unless --keep-env is given. PostgreSQL runs archive_command with the
 * postmaster's environment, which normally has none of them; a developer shell or CI often
 * does. NODE_EXTRA_CA_CERTS matters most: with OpenSSL 3, node 20 loads and parses the CA
 * bundle it names eagerly at start-up (nodejs/node#40524), which costs tens of ms per process
 * and would hide our own start-up cost behind a constant both sides pay.
 */
const NODE_STARTUP_ENV = ["NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "NODE_V8_COVERAGE", "NODE_DEBUG", "NODE_DEBUG_NATIVE"];

function parseOptions(argv: string[]): Options {
  const opts: Options = { runs: 30, warmup: 3, json: false, keepEnv: false };
  const count = (flag: string, value: string | undefined, min: number): number => {
    const n = Number(value);
    if (value === undefined || !/^\d+$/.test(value) || n < min) {
      process.stderr.write(
        `bench-startup: ${flag} needs a whole number >= ${min}, got ${JSON.stringify(value)}\n${USAGE}`,
      );
      process.exit(2);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const eq = arg.indexOf("=");
    const [flag, inline] = arg.startsWith("--") && eq > 0 ? [arg.slice(0, eq), arg.slice(eq + 1)] : [arg, undefined];
    switch (flag) {
      case "--runs":
        opts.runs = count(flag, inline ?? argv[++i], 1);
        break;
      case "--warmup":
        opts.warmup = count(flag, inline ?? argv[++i], 0);
        break;
      case "--json":
        opts.json = true;
        break;
      case "--keep-env":
        opts.keepEnv = true;
        break;
      case "-h":
      case "--help":
        process.stdout.write(USAGE);
        process.exit(0);
        break;
      default:
        process.stderr.write(`bench-startup: unknown argument ${JSON.stringify(arg)}\n${USAGE}`);
        process.exit(2);
    }
  }
  return opts;
}

/** One spawn per run: what to run, and what to set up before / check and tidy after (untimed). */
interface Bench {
  key: string;
  label: string;
  /** Part of the table, or only shown for context. */
  informational: boolean;
  /** Builds the command for run number `run` (fresh destination names each time). */
  command: (run: number) => { file: string; args: string[]; cwd?: string };
  /** Sets up what the run needs (untimed). */
  before?: (run: number) => void;
  /** Checks the result of the run and removes what it wrote; throws when the run did not do its job. */
  after?: (run: number) => void;
  samples: number[];
}

class RunFailure extends Error {}

/** Linear interpolation between closest ranks (R's type 7), `p` in [0, 1]. */
function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * p;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  const a = sorted[lo] ?? Number.NaN;
  const b = sorted[hi] ?? Number.NaN;
  return a + (b - a) * (pos - lo);
}

function summarize(samples: number[]): { median: number; p90: number; min: number; max: number } {
  const s = [...samples].sort((x, y) => x - y);
  return {
    median: percentile(s, 0.5),
    p90: percentile(s, 0.9),
    min: s[0] ?? Number.NaN,
    max: s[s.length - 1] ?? Number.NaN,
  };
}

/** WAL segment names 000000010000000000000001, …02, …: timeline 1, 256 segments per log id. */
function walName(n: number): string {
  const hex = (v: number): string => v.toString(16).toUpperCase().padStart(8, "0");
  return hex(1) + hex(Math.floor(n / 256)) + hex(n % 256);
}

/** Writes `size` random bytes to `path` and fsyncs it, so its writeback does not land in a measured run. */
function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, "w", 0o600);
  try {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (let off = 0; off < size; off += chunk.length) {
      randomFillSync(chunk);
      const part = chunk.subarray(0, Math.min(chunk.length, size - off));
      let done = 0;
      while (done < part.length) done += writeSync(fd, part, done, part.length - done, off + done);
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there
  }
}

function requireFile(path: string, size: number | undefined, what: string): void {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new RunFailure(`${what}: ${path} was not created`);
  }
  if (size !== undefined && st.size !== size)
    throw new RunFailure(`${what}: ${path} has ${st.size} bytes, expected ${size}`);
}

function fmt(ms: number): string {
  return ms.toFixed(1);
}

function main(): number {
  const opts = parseOptions(process.argv.slice(2));
  const progress = (text: string): void => {
    process.stderr.write(text);
  };

  const base = mkdtempSync(join(tmpdir(), "walmgr-bench-"));
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    rmSync(base, { recursive: true, force: true });
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      cleanup();
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  }

  try {
    // Everything lives under one temp folder, so the cp/dd destination and completed_wals are
    // on the same file system (and the same disk) as the source segment.
    const pgWal = join(base, "pg_wal");
    const slave = join(base, "slave");
    const completed = join(slave, "logs.complete");
    const copyDir = join(base, "copy");
    for (const d of [pgWal, slave, completed, copyDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
    const config = join(base, "master.ini");
    writeFileSync(config, `[wal-master]\nslave = ${slave}\ncompleted_wals = %(slave)s/logs.complete\n`, {
      mode: 0o600,
    });
    // One random (incompressible) segment, generated once; it sits in the page cache for every
    // run of every command alike, as a just-finished segment does on a real master.
    const seg = join(pgWal, "000000010000000000000000");
    progress(`bench-startup: temp folder ${base}; generating a ${SEGMENT_SIZE / 1048576} MiB random segment\n`);
    writeRandomFile(seg, SEGMENT_SIZE);

    // bin/wal-archive is a sh front that execs `node` from PATH, as PostgreSQL's shell would
    // start it: put the node running this script first in PATH, so that it finds the same node
    // binary the baseline measures.
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      PATH: [dirname(process.execPath), process.env.PATH ?? ""].join(delimiter),
    };
    const removedEnv = opts.keepEnv ? [] : NODE_STARTUP_ENV.filter((k) => process.env[k] !== undefined);
    for (const k of removedEnv) delete env[k];

    // wal-restore: a slave config on the same archive with prefetch off (the Node path alone),
    // the segment archived once under RESTORE_NAME, and a data directory holding a spool the
    // shell front serves from (the files the prefetcher writes, made here by hand: spool.ts).
    const slaveConfig = join(base, "slave.ini");
    writeFileSync(
      slaveConfig,
      `[wal-slave]\nslave = ${slave}\ncompleted_wals = %(slave)s/logs.complete\nrestore_prefetch = 0\n`,
      { mode: 0o600 },
    );
    const archived = spawnSync(WAL_ARCHIVE, [config, seg, RESTORE_NAME], { env, stdio: ["ignore", "pipe", "pipe"] });
    if (archived.status !== 0)
      throw new RunFailure(`wal-archive of ${RESTORE_NAME} failed: ${archived.stderr?.toString() ?? ""}`);
    const plainData = join(base, "data-plain");
    const spoolData = join(base, "data-spool");
    const spoolDir = join(spoolData, "pg_wal", ".walmgr-prefetch");
    mkdirSync(join(plainData, "pg_wal"), { recursive: true, mode: 0o700 });
    mkdirSync(spoolDir, { recursive: true, mode: 0o700 });
    symlinkSync(spoolData, join(spoolDir, "datadir"));
    symlinkSync(completed, join(spoolDir, "archive"));
    writeFileSync(join(spoolDir, "fast"), `${slaveConfig}\n${SEGMENT_SIZE}\n${bootId() || "durable"}\n`, {
      mode: 0o600,
    });
    // A data directory whose pg_wal holds a segment an earlier run archived ahead: its .ready,
    // its acknowledgement record (a hard link), and the records' config link and stamp.
    const ackData = join(base, "data-ack");
    const ackWal = join(ackData, "pg_wal");
    const ackDir = join(ackWal, ACK_DIR);
    mkdirSync(join(ackWal, "archive_status"), { recursive: true, mode: 0o700 });
    mkdirSync(ackDir, { recursive: true, mode: 0o700 });
    linkSync(seg, join(ackWal, ACK_NAME));
    symlinkSync(config, join(ackDir, "config"));
    writeFileSync(join(ackDir, "fast"), `${fileStamp(statSync(config, { bigint: true }))}\n`, { mode: 0o600 });
    // The entry's check record (the front serves only what still matches it; it leaves the
    // record in place, so one serves every run).
    const cksum = spawnSync("sh", ["-c", 'cksum <"$1"', "sh", seg], { encoding: "utf8" });
    if (cksum.status !== 0) throw new RunFailure(`cksum of ${seg} failed: ${cksum.stderr}`);
    writeFileSync(join(spoolDir, checkRecordName(RESTORE_NAME)), `${cksum.stdout.trim()}\n${"0".repeat(64)}\n`, {
      mode: 0o600,
    });
    const restored = (dataDir: string, what: string): void => {
      requireFile(join(dataDir, "pg_wal", "RECOVERYXLOG"), SEGMENT_SIZE, what);
      removeQuietly(join(dataDir, "pg_wal", "RECOVERYXLOG"));
    };

    const benches: Bench[] = [
      {
        key: "node",
        label: "node -e ''",
        informational: false,
        command: () => ({ file: process.execPath, args: ["-e", ""] }),
        samples: [],
      },
      ...EXECUTABLES.map(([name, key]): Bench => ({
        key,
        label: `${name} --version`,
        informational: false,
        command: () => ({ file: join(ROOT, "bin", name), args: ["--version"] }),
        samples: [],
      })),
      {
        // The copy baseline is what a DBA would put into archive_command for a durable copy:
        // `cp %p DEST && sync DEST`, which PostgreSQL runs through `sh -c`. GNU coreutils
        // (>= 8.24) `sync FILE` opens FILE and fsync()s it. So the baseline pays for one dash
        // start plus two exec'd children (cp, sync), i.e. a little more process start-up than a
        // single-process copy; the `sh -c true` row shows how much that is. This is the fair
        // choice for the target (wal-archive is judged against the plain-shell alternative it
        // replaces) and it is slightly generous to wal-archive. Note that cp 9.x copies with
        // copy_file_range() (in-kernel, no user-space buffer), while wal-archive must read the
        // data through user space to hash it; the dd row shows a read/write copy for contrast.
        // The baseline also skips the directory fsync and the checksum file wal-archive writes.
        key: "cpFsync",
        label: "cp+fsync (16MB)",
        informational: false,
        command: (run) => ({
          file: "/bin/sh",
          args: ["-c", 'cp "$1" "$2" && sync "$2"', "sh", seg, join(copyDir, `cp.${run}`)],
        }),
        after: (run) => {
          const dest = join(copyDir, `cp.${run}`);
          requireFile(dest, SEGMENT_SIZE, "cp+fsync");
          removeQuietly(dest);
        },
        samples: [],
      },
      {
        key: "walArchive",
        label: "wal-archive (16MB)",
        informational: false,
        command: (run) => ({ file: WAL_ARCHIVE, args: [config, seg, walName(run)] }),
        after: (run) => {
          const name = walName(run);
          requireFile(join(completed, name), SEGMENT_SIZE, "wal-archive");
          requireFile(join(completed, `.${name}.sha256`), undefined, "wal-archive");
          // Untimed tidy-up: keeps the disk footprint at one segment; names stay fresh anyway.
          removeQuietly(join(completed, name));
          removeQuietly(join(completed, `.${name}.sha256`));
        },
        samples: [],
      },
      {
        key: "walArchiveAck",
        label: "wal-archive (archived ahead)",
        informational: false,
        before: () => {
          writeFileSync(join(ackWal, "archive_status", `${ACK_NAME}.ready`), "");
          linkSync(join(ackWal, ACK_NAME), join(ackDir, ACK_NAME));
        },
        command: () => ({ file: WAL_ARCHIVE, args: [config, `pg_wal/${ACK_NAME}`, ACK_NAME], cwd: ackData }),
        after: () => {
          // Acknowledged by the shell front, which removes the record (Node would leave it).
          if (existsSync(join(ackDir, ACK_NAME)))
            throw new RunFailure("wal-archive (archived ahead): the record was not answered by the shell front");
          removeQuietly(join(ackWal, "archive_status", `${ACK_NAME}.ready`));
        },
        samples: [],
      },
      {
        // PostgreSQL's own example restore_command, run through sh as PostgreSQL runs it.
        key: "cpRestore",
        label: "cp (16MB restore)",
        informational: false,
        command: () => ({
          file: "/bin/sh",
          args: ["-c", 'cp "$1" "$2"', "sh", join(completed, RESTORE_NAME), "pg_wal/RECOVERYXLOG"],
          cwd: plainData,
        }),
        after: () => restored(plainData, "cp restore"),
        samples: [],
      },
      {
        key: "walRestore",
        label: "wal-restore (16MB, archive)",
        informational: false,
        command: () => ({
          file: WAL_RESTORE,
          args: [slaveConfig, RESTORE_NAME, "pg_wal/RECOVERYXLOG"],
          cwd: plainData,
        }),
        after: () => restored(plainData, "wal-restore"),
        samples: [],
      },
      {
        key: "walRestoreFast",
        label: "wal-restore (16MB, spooled)",
        informational: false,
        before: () => copyFileSync(seg, join(spoolDir, RESTORE_NAME)),
        command: () => ({
          file: WAL_RESTORE,
          args: [slaveConfig, RESTORE_NAME, "pg_wal/RECOVERYXLOG"],
          cwd: spoolData,
        }),
        after: () => {
          // Served by the shell front (the Node path with prefetch off never takes a spool entry).
          if (existsSync(join(spoolDir, RESTORE_NAME)))
            throw new RunFailure("wal-restore (spooled): the spool entry was not served by the shell front");
          restored(spoolData, "wal-restore (spooled)");
        },
        samples: [],
      },
      {
        key: "shTrue",
        label: "sh -c true",
        informational: true,
        command: () => ({ file: "/bin/sh", args: ["-c", "true"] }),
        samples: [],
      },
      {
        key: "ddFsync",
        label: "dd conv=fsync (16MB)",
        informational: true,
        command: (run) => ({
          file: "dd",
          args: [`if=${seg}`, `of=${join(copyDir, `dd.${run}`)}`, "bs=1M", "conv=fsync", "status=none"],
        }),
        after: (run) => {
          const dest = join(copyDir, `dd.${run}`);
          requireFile(dest, SEGMENT_SIZE, "dd");
          removeQuietly(dest);
        },
        samples: [],
      },
    ];

    const runOnce = (b: Bench, run: number): number => {
      b.before?.(run);
      const { file, args, cwd } = b.command(run);
      const t0 = process.hrtime.bigint();
      const res = spawnSync(file, args, { env, cwd, stdio: ["ignore", "pipe", "pipe"], maxBuffer: 16 * 1024 * 1024 });
      const t1 = process.hrtime.bigint();
      if (res.error || res.status !== 0 || res.signal !== null) {
        const why = res.error
          ? `could not run: ${res.error.message}`
          : res.signal !== null
            ? `was killed by ${res.signal}`
            : `exited ${String(res.status)}`;
        throw new RunFailure(
          `${b.label} (${[file, ...args].join(" ")}) ${why}\n--- stderr ---\n${res.stderr?.toString() ?? ""}--- stdout ---\n${res.stdout?.toString() ?? ""}`,
        );
      }
      b.after?.(run);
      return Number(t1 - t0) / 1e6;
    };

    // Warm-up rounds (uncounted), then measured rounds; run numbers, and so WAL names and copy
    // destinations, are never reused.
    let run = 1;
    progress(
      `bench-startup: ${opts.warmup} warm-up round(s), then ${opts.runs} measured round(s) of ${benches.length} commands\n`,
    );
    for (let i = 0; i < opts.warmup; i++, run++) for (const b of benches) runOnce(b, run);
    for (let i = 0; i < opts.runs; i++, run++) {
      for (const b of benches) b.samples.push(runOnce(b, run));
      if (process.stderr.isTTY) progress(`\rround ${i + 1}/${opts.runs}`);
    }
    if (process.stderr.isTTY) progress("\n");

    const stats = Object.fromEntries(benches.map((b) => [b.key, { label: b.label, ...summarize(b.samples) }]));
    const med = (key: string): number => stats[key]?.median ?? Number.NaN;
    const versionRatio = med("walArchiveVersion") / med("node");
    const baseline = med("node") + med("cpFsync");
    const archiveRatio = med("walArchive") / baseline;
    const ddRatio = med("walArchive") / (med("node") + med("ddFsync"));
    const met = archiveRatio <= TARGET_RATIO;
    const restoreRatio = med("walRestore") / (med("node") + med("cpRestore"));
    const fastRatio = med("walRestoreFast") / med("cpRestore");

    const lines: string[] = [];
    const w = Math.max(...benches.map((b) => b.label.length)) + 2;
    lines.push(
      `start-up benchmark (wal-archive, wal-restore): ${opts.runs} runs each (after ${opts.warmup} warm-up), node ${process.version}, temp ${tmpdir()}`,
    );
    lines.push(
      removedEnv.length > 0
        ? `child environment without ${removedEnv.join(", ")} (as under a postmaster; --keep-env to keep)`
        : `child environment: ${opts.keepEnv ? "kept as is (--keep-env)" : "no node start-up variables to remove"}`,
    );
    lines.push("");
    lines.push(`${"name".padEnd(w)}${"median ms".padStart(11)}${"p90 ms".padStart(10)}`);
    for (const b of benches) {
      const s = stats[b.key];
      if (!s) continue;
      lines.push(
        `${(b.informational ? `(${b.label})` : b.label).padEnd(w)}${fmt(s.median).padStart(11)}${fmt(s.p90).padStart(10)}`,
      );
    }
    lines.push("");
    const startRatios = Object.fromEntries(EXECUTABLES.map(([, key]) => [key, med(key) / med("node")]));
    for (const [name, key] of EXECUTABLES) {
      const hotPath = name === "wal-archive" || name === "wal-restore";
      lines.push(
        `${`${name} --version / node -e ''`.padEnd(51)}= ${(startRatios[key] ?? Number.NaN).toFixed(2)}x  (+${fmt(med(key) - med("node"))} ms start-up over bare node${hotPath ? `; target <= ${HOT_PATH_START_RATIO}` : ""})`,
      );
    }
    lines.push(
      `wal-archive (16MB) / (node -e '' + cp+fsync (16MB)) = ${archiveRatio.toFixed(2)}x  (${fmt(med("walArchive"))} / (${fmt(med("node"))} + ${fmt(med("cpFsync"))}) ms)`,
    );
    lines.push(`  (same with dd conv=fsync as the copy: ${ddRatio.toFixed(2)}x)`);
    lines.push(
      `target (ratio <= ${TARGET_RATIO}): ${met ? "MET" : "NOT MET"}` +
        (met
          ? ""
          : ` — ${fmt(med("walArchive") - TARGET_RATIO * baseline)} ms over the ${fmt(TARGET_RATIO * baseline)} ms budget`),
    );
    lines.push(
      `wal-restore (16MB, archive) / (node -e '' + cp (16MB restore)) = ${restoreRatio.toFixed(2)}x  (the Node path: checksum-verified)`,
    );
    lines.push(
      `wal-restore (16MB, spooled) / cp (16MB restore)               = ${fastRatio.toFixed(2)}x  (the shell front: a rename)`,
    );
    const table = `${lines.join("\n")}\n`;

    if (opts.json) {
      process.stderr.write(table);
      const result = {
        runs: opts.runs,
        warmup: opts.warmup,
        node: process.version,
        tmpdir: tmpdir(),
        removedEnv,
        segmentBytes: SEGMENT_SIZE,
        unit: "ms",
        results: stats,
        samples: Object.fromEntries(benches.map((b) => [b.key, b.samples])),
        ratios: {
          versionOverNode: versionRatio,
          startOverNode: startRatios,
          archiveOverNodePlusCp: archiveRatio,
          archiveOverNodePlusDd: ddRatio,
          restoreOverNodePlusCp: restoreRatio,
          spooledRestoreOverCp: fastRatio,
        },
        target: { maxRatio: TARGET_RATIO, budgetMs: TARGET_RATIO * baseline, met },
      };
      process.stdout.write(`${JSON.stringify(result)}\n`);
    } else {
      process.stdout.write(table);
    }
    return 0;
  } catch (err) {
    process.stderr.write(
      `\nbench-startup: ${err instanceof RunFailure ? err.message : String((err as Error)?.stack ?? err)}\n`,
    );
    return 1;
  } finally {
    cleanup();
  }
}

process.exitCode = main();
