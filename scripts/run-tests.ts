/**
 * The integration test runner (`npm run test:integration`, `npm run test:slow`): runs test
 * files, each with `node --test FILE` in its own process as `node --test DIR` would, but
 *   - `--jobs N` files at a time (default 3, $WALMGR_TEST_JOBS: files mostly wait on PostgreSQL,
 *     timers and child processes, so on 2 cores 3 at a time still finish sooner), the longest first as
 *     test/timings.json last measured them (files it does not name go first), so that the
 *     longest file does not start last;
 *   - one Swift for every file that calls `TestSwift.shared()` (test/helpers/swift.ts), started
 *     here once and named to them in $WALMGR_TEST_SWIFT; those files run one at a time, since
 *     some stop or slow its proxy, and one of them starts whenever none runs (in a row they are
 *     the longest job);
 *   - each file's TAP printed whole when it ends (never interleaved), then a summary: the
 *     counts of all files together, the slowest files, the wall time.
 * Exit status 0 only when every file ran and passed. `--write-timings` records this run's
 * per-file times in test/timings.json (commit them when files change a lot).
 *
 *   node dist/scripts/run-tests.js [--jobs N] [--write-timings] DIR|FILE.test.js ...
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { SHARED_SWIFT_ENV, swiftAvailable, TestSwift, testSwiftTmpParent } from "../test/helpers/swift";

const ROOT = resolve(__dirname, "..", ".."); // dist/scripts/ -> the package
const DIST_TEST = join(ROOT, "dist", "test");
const TIMINGS = join(ROOT, "test", "timings.json");
/** What marks a file as one that uses the shared Swift (its compiled text calls this). */
const SWIFT_MARK = "TestSwift.shared(";

interface FileRun {
  file: string;
  /** "integration/quickstart.test.js": the name in test/timings.json and in the summary. */
  name: string;
  swift: boolean;
  expectedS: number | undefined;
}

interface Done {
  run: FileRun;
  seconds: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  counts: Map<string, number>;
}

function usage(msg: string): never {
  process.stderr.write(`run-tests: ${msg}\nusage: run-tests [--jobs N] [--write-timings] DIR|FILE.test.js ...\n`);
  process.exit(2);
}

function testFiles(path: string): string[] {
  if (!existsSync(path)) usage(`${path} does not exist (npm run build first?)`);
  if (statSync(path).isFile()) return [path];
  return readdirSync(path, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory() ? testFiles(join(path, e.name)) : e.name.endsWith(".test.js") ? [join(path, e.name)] : [],
    )
    .sort();
}

function readTimings(): Record<string, number> {
  try {
    return JSON.parse(readFileSync(TIMINGS, "utf8")) as Record<string, number>;
  } catch {
    return {};
  }
}

/** The TAP summary lines ("# pass 12") of a file's output. */
function countsOf(out: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const m of out.matchAll(/^# (tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/gm))
    counts.set(m[1] ?? "", Number(m[2]));
  return counts;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  let jobs = Number(process.env.WALMGR_TEST_JOBS ?? 3);
  let writeTimings = false;
  const paths: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] ?? "";
    if (a === "--jobs") jobs = Number(args[++i]);
    else if (a.startsWith("--jobs=")) jobs = Number(a.slice(7));
    else if (a === "--write-timings") writeTimings = true;
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else paths.push(resolve(a));
  }
  if (!Number.isInteger(jobs) || jobs < 1) usage("--jobs takes a whole number of at least 1");
  if (paths.length === 0) usage("no test folder or file given");

  const timings = readTimings();
  // tsc never deletes: a compiled test whose source was moved or removed would still run.
  const files = paths.flatMap(testFiles).filter((file) => {
    const source = join(ROOT, "test", relative(DIST_TEST, file)).replace(/\.js$/, ".ts");
    if (existsSync(source)) return true;
    process.stdout.write(
      `# run-tests: skipping ${relative(ROOT, file)}: no ${relative(ROOT, source)} (a leftover build)\n`,
    );
    return false;
  });
  const runs: FileRun[] = files.map((file) => {
    const name = relative(DIST_TEST, file);
    return { file, name, swift: readFileSync(file, "utf8").includes(SWIFT_MARK), expectedS: timings[name] };
  });
  // Longest first; unknown (new) files before all, as they may be long.
  runs.sort((a, b) => (b.expectedS ?? Infinity) - (a.expectedS ?? Infinity) || a.name.localeCompare(b.name));

  let swift: TestSwift | undefined;
  if (runs.some((r) => r.swift) && swiftAvailable()) {
    swift = await TestSwift.start({ parent: testSwiftTmpParent() });
    process.stdout.write(
      `# run-tests: one Swift for the S3 files at ${swift.endpoint} (${swift.startupMs} ms to start)\n`,
    );
  }
  const children = new Set<ChildProcess>();
  const stopAll = (): void => {
    for (const c of children) if (c.pid !== undefined) killGroup(c.pid);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    process.stderr.write(`run-tests: ${sig}: stopping the test files still running\n`);
    stopAll();
    void swift?.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  const t0 = Date.now();
  process.stdout.write(`# run-tests: ${runs.length} file(s), ${jobs} at a time\n`);
  const done: Done[] = [];
  const pending = [...runs];
  let swiftBusy = false;
  await new Promise<void>((allDone) => {
    let running = 0;
    const next = (): void => {
      while (running < jobs) {
        // The files on the shared Swift run one after another: together they are the longest
        // job, so a free Swift goes to the next of them before any other file starts.
        const onSwift = swiftBusy ? -1 : pending.findIndex((r) => r.swift);
        const i = onSwift >= 0 ? onSwift : pending.findIndex((r) => !r.swift);
        if (i < 0) break;
        const [run] = pending.splice(i, 1);
        if (!run) break;
        running++;
        if (run.swift) swiftBusy = true;
        void runFile(run, swift, children).then((d) => {
          running--;
          if (run.swift) swiftBusy = false;
          done.push(d);
          report(d);
          next();
        });
      }
      if (running === 0 && pending.length === 0) allDone();
    };
    next();
  });
  await swift?.stop();

  const wallS = (Date.now() - t0) / 1000;
  const total = new Map<string, number>();
  for (const d of done) for (const [k, v] of d.counts) total.set(k, (total.get(k) ?? 0) + v);
  const failed = done.filter((d) => d.code !== 0 || (d.counts.get("fail") ?? 0) > 0 || !d.counts.has("tests"));
  const counts = ["tests", "suites", "pass", "fail", "cancelled", "skipped", "todo"]
    .map((k) => `${k} ${total.get(k) ?? 0}`)
    .join(", ");
  const slowest = [...done]
    .sort((a, b) => b.seconds - a.seconds)
    .slice(0, 8)
    .map((d) => `${d.run.name} ${d.seconds.toFixed(0)} s`)
    .join(", ");
  process.stdout.write(
    [
      `# ==== run-tests: ${done.length} file(s) in ${wallS.toFixed(0)} s, ${jobs} at a time`,
      `# all files: ${counts}`,
      `# slowest: ${slowest}`,
      ...failed.map(
        (d) => `# FAILED: ${d.run.name} (${d.signal ? `killed by ${d.signal}` : `exit ${String(d.code)}`})`,
      ),
      "",
    ].join("\n"),
  );
  if (writeTimings) {
    const next = readTimings();
    for (const d of done) next[d.run.name] = Math.round(d.seconds);
    const sorted = Object.fromEntries(Object.entries(next).sort(([a], [b]) => a.localeCompare(b)));
    writeFileSync(TIMINGS, `${JSON.stringify(sorted, null, 2)}\n`);
    process.stdout.write(`# run-tests: per-file times written to ${relative(ROOT, TIMINGS)}\n`);
  }
  return failed.length === 0 ? 0 : 1;
}

function report(d: Done): void {
  process.stdout.write(
    `# ---- ${d.run.name}: ${d.seconds.toFixed(1)} s, ${d.signal ? `killed by ${d.signal}` : `exit ${String(d.code)}`}\n`,
  );
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGTERM");
  } catch {
    // gone already
  }
}

/** Runs one file with `node --test` in its own process group; prints its output whole when it ends. */
function runFile(run: FileRun, swift: TestSwift | undefined, children: Set<ChildProcess>): Promise<Done> {
  const t0 = Date.now();
  const env = { ...process.env };
  if (swift && run.swift) env[SHARED_SWIFT_ENV] = swift.shareSpec();
  else delete env[SHARED_SWIFT_ENV];
  const child = spawn(process.execPath, ["--test", "--test-reporter=tap", run.file], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group: an interrupted run stops all it started
  });
  children.add(child);
  const chunks: Buffer[] = [];
  child.stdout?.on("data", (b: Buffer) => chunks.push(b));
  child.stderr?.on("data", (b: Buffer) => chunks.push(b));
  return new Promise((resolveDone) => {
    child.once("close", (code, signal) => {
      children.delete(child);
      const out = Buffer.concat(chunks).toString("utf8");
      process.stdout.write(`# ==== ${run.name}\n${out}${out.endsWith("\n") ? "" : "\n"}`);
      resolveDone({ run, seconds: (Date.now() - t0) / 1000, code, signal, counts: countsOf(out) });
    });
  });
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`run-tests: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(70);
  },
);
