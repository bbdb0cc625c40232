/**
 * `node dist/scripts/measure-blocks.js [--scale N] [--json FILE] [--no-pgbackrest]`: the
 * measurement that picks the block repository's block size, frame (pack) size and compression
 * (docs/block-repository-measurements.md; issue 25).
 *
 * A PostgreSQL cluster gets `pgbench -i -s N` (default 50) and a CHECKPOINT; its relation files
 * (base/, global/) are copied as snapshot A; then `pgbench -c 2 -t 1500` and a clean stop (its
 * shutdown checkpoint puts every change in the files) give snapshot B. For each block size:
 * - blocks of A, and the distinct ones (by SHA-256): what a first (full) backup stores;
 * - blocks of B, and those not in A nor earlier in B: what the next (incremental) backup stores;
 * - the manifest at 32 bytes a block, for B and for a 500 GiB database;
 * - compressed sizes of what is stored, with zstd 1/3/6, lz4, gzip 1/6: each block alone, and
 *   runs of consecutive stored blocks packed into frames of at most 256 KiB, 1 MiB and 4 MiB
 *   (whole blocks in a frame; a block as large as the frame is a frame of its own), with the
 *   compression speed (one thread, synchronous calls, by CPU time; sizes are exact, speeds vary
 *   with the machine's other load all the same: caches and frequency are shared).
 * When pgbackrest is installed, `pgbackrest backup` full (at A) and incr (at B) with
 * compress-type=zst and process-max=1 run beside, and their stored bytes (`info`'s repository
 * delta) and times are printed.
 *
 * Memory stays flat: files are read 1 MiB at a time; only the sets of hashes are kept.
 */
import { createHash } from "node:crypto";
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { makeCodec, type Codec, type CompressType } from "../src/codec";
import { Cluster } from "../test/helpers/cluster";
import { makeTempDir, mkdirAs, removeTempDir, run } from "../test/helpers/env";
import { writeFileAs } from "../test/helpers/walmgr";

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK_SIZES = [8, 16, 32, 64, 128, 256, 1024].map((k) => k * KiB);
/** 0: each block compressed alone; otherwise the most raw bytes in one frame. */
const FRAMES = [0, 256 * KiB, MiB, 4 * MiB];
const CODECS: { type: CompressType; level: number }[] = [
  { type: "zstd", level: 1 },
  { type: "zstd", level: 3 },
  { type: "zstd", level: 6 },
  { type: "lz4", level: 1 },
  { type: "gzip", level: 1 },
  { type: "gzip", level: 6 },
];
const READ = MiB; // a multiple of every block size
const HASH_BYTES = 32;
const DB_500G = 500 * 1024 * MiB;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

const scale = Number(arg("--scale") ?? 50);
const jsonOut = arg("--json");
const withPgbackrest = !process.argv.includes("--no-pgbackrest");
if (!Number.isInteger(scale) || scale < 1) {
  process.stderr.write("usage: measure-blocks [--scale N] [--json FILE] [--no-pgbackrest]\n");
  process.exit(2);
}

const say = (s: string): void => void process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${s}\n`);
const codecLabel = (c: { type: string; level: number }): string => (c.type === "lz4" ? "lz4" : `${c.type} ${c.level}`);
const sizeLabel = (b: number): string => (b >= MiB ? `${b / MiB} MiB` : `${b / KiB} KiB`);
const frameLabel = (f: number): string => (f === 0 ? "block alone" : `frames ${sizeLabel(f)}`);

/** One codec's total over the frames of one Framer. */
class Packed {
  raw = 0;
  packed = 0;
  frames = 0;
  us = 0;

  constructor(
    readonly codec: Codec,
    readonly frame: number,
  ) {}

  /** Timed by this process's CPU time, not the clock: other work on the machine barely moves it. */
  compress(b: Buffer): void {
    const t0 = process.cpuUsage();
    this.packed += this.codec.compressSync(b).length;
    const t = process.cpuUsage(t0);
    this.us += t.user + t.system;
    this.raw += b.length;
    this.frames++;
  }

  get mbPerS(): number {
    return this.raw / this.us;
  }
}

/**
 * Cuts a stream of blocks into frames of whole blocks of at most `frame` bytes (0: each block is
 * a frame; a block of `frame` bytes or more is a frame of its own) and compresses each frame with
 * every codec. The frame buffer is shared by the codecs: one per block size and frame size.
 */
class Framer {
  private readonly buf: Buffer;
  private fill = 0;
  readonly packed: Packed[];

  constructor(readonly frame: number) {
    this.buf = Buffer.alloc(Math.max(frame, 1));
    this.packed = CODECS.map((c) => new Packed(makeCodec(c.type, c.level), frame));
  }

  add(block: Buffer): void {
    if (this.frame === 0 || block.length >= this.frame) {
      this.flush();
      for (const p of this.packed) p.compress(block);
      return;
    }
    if (this.fill + block.length > this.frame) this.flush();
    block.copy(this.buf, this.fill);
    this.fill += block.length;
  }

  flush(): void {
    if (this.fill === 0) return;
    const frame = this.buf.subarray(0, this.fill);
    for (const p of this.packed) p.compress(frame);
    this.fill = 0;
  }
}

/** What one block size sees of one snapshot. */
interface Side {
  blocks: number;
  bytes: number;
  stored: number;
  storedBytes: number;
  /** Frame sizes larger than the block size only: the others are "block alone" again. */
  framers: Framer[];
}

function newSide(bs: number): Side {
  return {
    blocks: 0,
    bytes: 0,
    stored: 0,
    storedBytes: 0,
    framers: FRAMES.filter((f) => f === 0 || f > bs).map((f) => new Framer(f)),
  };
}

/** Relation files of a data directory (or a copy of its base/ and global/), sorted. */
function relationFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !/^pg_internal\.init|^pg_filenode\.map$|^PG_VERSION$/.test(e.name)) out.push(p);
    }
  };
  for (const top of ["global", "base"]) walk(join(root, top));
  return out;
}

/**
 * Reads every relation file under `root` 1 MiB at a time, cuts it into blocks of each size (a
 * file's last block may be shorter) and passes each block whose hash is not yet in `seen` to the
 * framers of that size (adding the hash). Yields to the event loop after each read, so the
 * compressors' result buffers are freed as it goes.
 */
async function scan(root: string, seen: Map<number, Set<string>>, sides: Map<number, Side>): Promise<number> {
  const buf = Buffer.alloc(READ);
  let total = 0;
  const files = relationFiles(root);
  let nextReport = Date.now() + 30_000;
  for (const [i, file] of files.entries()) {
    const fd = openSync(file, "r");
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, READ, null);
        if (n === 0) break;
        total += n;
        for (const bs of BLOCK_SIZES) {
          const side = sides.get(bs) as Side;
          const set = seen.get(bs) as Set<string>;
          for (let off = 0; off < n; off += bs) {
            const block = buf.subarray(off, Math.min(n, off + bs));
            side.blocks++;
            side.bytes += block.length;
            const h = createHash("sha256").update(block).digest().toString("latin1");
            if (set.has(h)) continue;
            set.add(h);
            side.stored++;
            side.storedBytes += block.length;
            for (const f of side.framers) f.add(block);
          }
        }
        await new Promise((r) => setImmediate(r));
        if (n < READ) break;
      }
    } finally {
      closeSync(fd);
    }
    if (Date.now() > nextReport) {
      say(`  ${i + 1}/${files.length} files, ${(total / MiB).toFixed(0)} MiB (${relative(root, file)})`);
      nextReport = Date.now() + 30_000;
    }
  }
  for (const side of sides.values()) for (const f of side.framers) f.flush();
  return total;
}

interface RestInfo {
  label: string;
  ms: number;
  stored: number;
  size: number;
}

/** A pgBackRest stanza beside the cluster: local repository, zstd (its level 3), one process. */
function pgbackrestSetup(base: string, c: Cluster): string | undefined {
  if (run("sh", ["-c", "command -v pgbackrest"]).status !== 0) return undefined;
  for (const d of ["repo", "log", "lock"]) mkdirAs(join(base, "pgbackrest", d));
  const conf = join(base, "pgbackrest", "pgbackrest.conf");
  writeFileAs(
    conf,
    [
      "[global]",
      `repo1-path=${join(base, "pgbackrest", "repo")}`,
      `log-path=${join(base, "pgbackrest", "log")}`,
      `lock-path=${join(base, "pgbackrest", "lock")}`,
      "log-level-console=off",
      "log-level-file=off",
      "compress-type=zst",
      "process-max=1",
      "start-fast=y",
      "",
      "[m]",
      `pg1-path=${c.dataDir}`,
      `pg1-port=${c.port}`,
      `pg1-socket-path=${c.socketDir}`,
      "pg1-user=postgres",
      "",
    ].join("\n"),
  );
  return conf;
}

function pgbackrest(conf: string, args: string[]): string {
  const res = run("pgbackrest", [`--config=${conf}`, "--stanza=m", ...args]);
  if (res.status !== 0) throw new Error(`pgbackrest ${args.join(" ")}: exit ${res.status}\n${res.stdout}${res.stderr}`);
  return res.stdout;
}

function pgbackrestBackup(conf: string, type: "full" | "incr"): RestInfo {
  const t0 = Date.now();
  pgbackrest(conf, [`--type=${type}`, "backup"]);
  const ms = Date.now() - t0;
  const info = JSON.parse(pgbackrest(conf, ["--output=json", "info"])) as {
    backup: { type: string; info: { size: number; repository: { delta: number } } }[];
  }[];
  const last = info[0]?.backup.at(-1);
  if (!last || last.type !== type) throw new Error(`pgbackrest info: no ${type} backup last`);
  return {
    label: `pgbackrest backup --type=${type} (zst 3, process-max=1)`,
    ms,
    stored: last.info.repository.delta,
    size: last.info.size,
  };
}

/** Bytes under a folder of the data directory other than base/ and global/ (pg_wal excluded). */
function otherBytes(dataDir: string): number {
  let total = 0;
  const walk = (p: string): void => {
    const st = statSync(p);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(join(p, e));
    else total += st.size;
  };
  for (const e of readdirSync(dataDir))
    if (!["base", "global", "pg_wal", "postmaster.pid", "postmaster.opts"].includes(e)) walk(join(dataDir, e));
  return total;
}

const mib = (b: number): string => (b / MiB).toFixed(2);
const pad = (s: string, n: number): string => s.padStart(n);

function dedupTable(full: Map<number, Side>, incr: Map<number, Side>): string[] {
  const lines = [
    "Blocks and deduplication (sizes in MiB; manifest at 32 bytes a block)",
    `${"block".padEnd(8)}${pad("A blocks", 10)}${pad("A stored", 10)}${pad("A MiB", 10)}${pad("B blocks", 10)}${pad("B new", 9)}${pad("new MiB", 10)}${pad("new %", 8)}${pad("manifest B", 12)}${pad("manifest 500 GiB", 18)}`,
  ];
  for (const bs of BLOCK_SIZES) {
    const a = full.get(bs) as Side;
    const b = incr.get(bs) as Side;
    lines.push(
      `${sizeLabel(bs).padEnd(8)}${pad(String(a.blocks), 10)}${pad(String(a.stored), 10)}${pad(mib(a.storedBytes), 10)}${pad(String(b.blocks), 10)}${pad(String(b.stored), 9)}${pad(mib(b.storedBytes), 10)}${pad(((b.storedBytes / b.bytes) * 100).toFixed(2), 8)}${pad(`${((b.blocks * HASH_BYTES) / KiB).toFixed(0)} KiB`, 12)}${pad(`${mib((DB_500G / bs) * HASH_BYTES)} MiB`, 18)}`,
    );
  }
  return lines;
}

function packTable(title: string, sides: Map<number, Side>): string[] {
  const lines = [
    title,
    "  compressed MiB / speed MB/s (raw bytes per CPU second of compression, one thread)",
    `${"block".padEnd(8)}${"codec".padEnd(8)}${FRAMES.map((f) => pad(frameLabel(f), 20)).join("")}`,
  ];
  for (const bs of BLOCK_SIZES) {
    const side = sides.get(bs) as Side;
    for (const c of CODECS) {
      const cells = FRAMES.map((f) => {
        const p = side.framers
          .find((x) => x.frame === f)
          ?.packed.find((x) => x.codec.type === c.type && x.codec.level === c.level);
        if (!p) return pad("= alone", 20);
        return pad(`${mib(p.packed)} / ${p.mbPerS.toFixed(0)}`, 20);
      });
      lines.push(`${sizeLabel(bs).padEnd(8)}${codecLabel(c).padEnd(8)}${cells.join("")}`);
    }
  }
  return lines;
}

function asJson(sides: Map<number, Side>): unknown {
  return BLOCK_SIZES.map((bs) => {
    const s = sides.get(bs) as Side;
    return {
      blockSize: bs,
      blocks: s.blocks,
      bytes: s.bytes,
      stored: s.stored,
      storedBytes: s.storedBytes,
      packed: s.framers
        .flatMap((f) => f.packed)
        .map((p) => ({
          codec: codecLabel(p.codec),
          frame: p.frame,
          frames: p.frames,
          raw: p.raw,
          packed: p.packed,
          cpuMs: p.us / 1000,
        })),
    };
  });
}

async function main(): Promise<void> {
  const started = Date.now();
  const base = makeTempDir("measure-blocks");
  const c = await Cluster.create(base, "master");
  try {
    const conf = withPgbackrest ? pgbackrestSetup(base, c) : undefined;
    writeFileAs(
      join(c.dataDir, "postgresql.conf"),
      `${readFileSync(join(c.dataDir, "postgresql.conf"), "utf8")}\nmax_wal_size = 4GB\nwal_level = replica\n` +
        (conf ? `archive_mode = on\narchive_command = 'pgbackrest --config=${conf} --stanza=m archive-push %p'\n` : ""),
    );
    c.start();
    if (conf) pgbackrest(conf, ["stanza-create"]);
    say(`pgbench -i -s ${scale}`);
    c.pgbench(["-i", "-q", "-s", String(scale)]);
    await c.query("CHECKPOINT");
    const rest: RestInfo[] = [];
    if (conf) {
      say("pgbackrest full backup");
      rest.push(pgbackrestBackup(conf, "full"));
    }
    c.stop();
    const snapA = join(base, "snapA");
    mkdirAs(snapA);
    const cp = run("cp", ["-a", join(c.dataDir, "base"), join(c.dataDir, "global"), snapA]);
    if (cp.status !== 0) throw new Error(`cp: ${cp.stderr}`);
    const otherA = otherBytes(c.dataDir);
    c.start();
    say("pgbench -c 2 -t 1500");
    c.pgbench(["-c", "2", "-t", "1500"]);
    await c.query("CHECKPOINT");
    if (conf) {
      say("pgbackrest incr backup");
      rest.push(pgbackrestBackup(conf, "incr"));
    }
    c.stop();

    const seen = new Map(BLOCK_SIZES.map((bs) => [bs, new Set<string>()]));
    const full = new Map(BLOCK_SIZES.map((bs) => [bs, newSide(bs)]));
    say("scanning A (every block, every codec and frame size)");
    const aBytes = await scan(snapA, seen, full);
    removeTempDir(snapA);
    const incr = new Map(BLOCK_SIZES.map((bs) => [bs, newSide(bs)]));
    say("scanning B");
    const bBytes = await scan(c.dataDir, seen, incr);

    const out = [
      `pgbench scale ${scale}: A = after pgbench -i and CHECKPOINT, B = after pgbench -c 2 -t 1500 and a clean stop`,
      `relation files (base/, global/): A ${mib(aBytes)} MiB, B ${mib(bBytes)} MiB; the rest of the data directory (pg_wal excluded): ${mib(otherA)} MiB`,
      "",
      ...dedupTable(full, incr),
      "",
      ...packTable("Full backup (stored blocks of A)", full),
      "",
      ...packTable("Incremental backup (blocks of B not in A)", incr),
      "",
      ...(rest.length
        ? [
            "pgBackRest 2.45 on the same cluster (repository delta = bytes the backup added to its repository)",
            ...rest.map(
              (r) =>
                `  ${r.label.padEnd(48)} ${pad(mib(r.stored), 9)} MiB stored of ${mib(r.size)} MiB, ${(r.ms / 1000).toFixed(1)} s`,
            ),
          ]
        : ["pgBackRest: not run (not installed, or --no-pgbackrest)"]),
      "",
      `peak RSS of this script: ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB; ran ${((Date.now() - started) / 1000).toFixed(0)} s`,
      "",
    ];
    process.stdout.write(out.join("\n"));
    if (jsonOut)
      writeFileSync(
        jsonOut,
        `${JSON.stringify({ scale, aBytes, bBytes, otherA, full: asJson(full), incr: asJson(incr), pgbackrest: rest }, null, 2)}\n`,
      );
  } finally {
    c.stop("immediate");
    removeTempDir(base);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
