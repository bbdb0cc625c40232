/**
 * A real OpenStack Swift all-in-one with its s3api middleware on a loopback port, for the S3
 * tests and the demo: scripts/swift/aio.py run by Debian's /usr/bin/python3 (python3-swift).
 * Path-style addressing, region us-east-1, access key `test:tester`, secret `testing`.
 * When the suite runs as root, the servers run as `postgres` in a temp folder it owns.
 *
 * The launcher prints READY / PROXY DOWN / PROXY UP on stdout and stops with its servers when
 * its stdin closes, so a test process that dies leaves no servers behind (the child and its
 * pipes are unref'd: a forgotten stop() does not keep the test process alive either).
 * Logs: <dir>/log/{proxy,account,container,object,aio}.log (see logTail()).
 *
 * One Swift for many test files: scripts/run-tests.ts starts one, runs the files that call
 * `TestSwift.shared()` one at a time, and names its Swift to them in $WALMGR_TEST_SWIFT; such a
 * file attaches to it (each file keeps to its own buckets and leaves the proxy up and not slowed).
 * A file run alone (node --test FILE) gets a Swift of its own from the same call.
 * A test's Swift (`shared()`, and the runner's) keeps its folder in /dev/shm where there is one
 * ($WALMGR_SWIFT_TMPDIR chooses another): every object PUT fsyncs, and nothing of Swift's
 * durability is under test. `start()` alone (the benchmarks, the demo) keeps the system's temp
 * folder, so benchmark figures stay comparable.
 */
import aws4 from "aws4";
import { type ChildProcess } from "node:child_process";
import {
  accessSync,
  chmodSync,
  constants,
  chownSync,
  copyFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { request as httpRequest, type IncomingHttpHeaders, type OutgoingHttpHeaders } from "node:http";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { freePort } from "./cluster";
import { makeTempDir, removeTempDir, REPO_ROOT, RUN_AS, RUN_AS_NAME, spawnAs, type Spawned } from "./env";

export const SWIFT_PYTHON = "/usr/bin/python3";
const AIO_SCRIPT = join(REPO_ROOT, "scripts", "swift", "aio.py");
const READY_TIMEOUT_MS = 30_000;

/** Where scripts/run-tests.ts names the Swift it shares with the test files it runs (JSON, see `shareSpec`). */
export const SHARED_SWIFT_ENV = "WALMGR_TEST_SWIFT";

/** Where a test's Swift keeps its folder: $WALMGR_SWIFT_TMPDIR, else /dev/shm (a tmpfs) if usable, else the system's temp folder. */
export function testSwiftTmpParent(): string | undefined {
  const chosen = process.env.WALMGR_SWIFT_TMPDIR;
  if (chosen) return chosen;
  try {
    accessSync("/dev/shm", constants.W_OK);
    return "/dev/shm";
  } catch {
    return undefined;
  }
}

/** True when something accepts connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect(port, "127.0.0.1");
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

/** True when python3-swift is installed (for a skip message). */
export function swiftAvailable(): boolean {
  return existsSync(SWIFT_PYTHON) && existsSync("/usr/lib/python3/dist-packages/swift/__init__.py");
}

export interface S3Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface S3RequestOptions {
  body?: Buffer | string;
  /** Extra headers (signed too). */
  headers?: Record<string, string>;
  /** Credentials other than the harness's own (a wrong secret, say). */
  accessKey?: string;
  secretKey?: string;
  /** Abort (rejecting) after this long; default 30 s. */
  timeoutMs?: number;
}

export class TestSwift {
  readonly accessKey = "test:tester";
  readonly secretKey = "testing";
  readonly region = "us-east-1";
  /** http://127.0.0.1:PORT (path-style: endpoint/bucket/key). */
  readonly endpoint: string;
  private readonly lines: string[] = [];
  private lineWaiters: (() => void)[] = [];
  private exitStatus: { status: number | null; signal: NodeJS.Signals | null } | undefined;
  private stopped = false;
  /** ms from spawning the launcher to its READY line. */
  startupMs = 0;

  private constructor(
    /** The temp folder: etc/, srv/, log/, the `slow` file. */
    readonly dir: string,
    readonly port: number,
    /** The launcher this process started; undefined when attached to a shared one (`launcherPid`). */
    private readonly proc: Spawned | undefined,
    private readonly launcherPid: number,
  ) {
    this.endpoint = `http://127.0.0.1:${port}`;
  }

  /**
   * The Swift of this test run when scripts/run-tests.ts shares one ($WALMGR_TEST_SWIFT), else
   * one of this process's own (`start`). Either way `stop()` when done: for a shared one it
   * only puts the proxy back up and ends a slow mode; the runner stops it.
   */
  static async shared(): Promise<TestSwift> {
    const spec = process.env[SHARED_SWIFT_ENV];
    if (!spec) return TestSwift.start({ parent: testSwiftTmpParent() });
    const { dir, port, pid } = JSON.parse(spec) as { dir: string; port: number; pid: number };
    const s = new TestSwift(dir, port, undefined, pid);
    // A file that died with the proxy down (or slowed) leaves it so: the next one mends it.
    s.setSlow(0);
    await s.ensureProxyUp();
    return s;
  }

  /** What a runner puts in $WALMGR_TEST_SWIFT for the test files that share this Swift. */
  shareSpec(): string {
    return JSON.stringify({ dir: this.dir, port: this.port, pid: this.launcherPid });
  }

  /**
   * Starts Swift on a free port (retried on a port clash); resolves once the proxy answers. Its
   * folder goes in `parent` (default: the system's temp folder).
   */
  static async start(opts: { parent?: string | undefined } = {}): Promise<TestSwift> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const dir = makeTempDir("swift", opts.parent);
      try {
        return await TestSwift.startIn(dir, await freePort());
      } catch (err) {
        removeTempDir(dir);
        lastErr = err;
        if (!(err instanceof Error) || !/is not free/.test(err.message)) throw err;
      }
    }
    throw lastErr;
  }

  private static async startIn(dir: string, port: number): Promise<TestSwift> {
    // A copy the server user can read even when the checkout is private (CI clones under /root).
    const script = join(dir, "aio.py");
    copyFileSync(AIO_SCRIPT, script);
    chmodSync(script, 0o644);
    if (RUN_AS) chownSync(script, RUN_AS.uid, RUN_AS.gid);
    const t0 = Date.now();
    const proc = spawnAs(SWIFT_PYTHON, [script, dir, String(port), "--user", RUN_AS_NAME], {
      stdio: ["pipe", "pipe", "pipe"],
      cwd: dir,
    });
    if (proc.child.pid === undefined) throw new Error(`could not start ${SWIFT_PYTHON} ${script}`);
    const s = new TestSwift(dir, port, proc, proc.child.pid);
    let partial = "";
    proc.child.stdout?.on("data", (b: Buffer) => {
      partial += b.toString("utf8");
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      s.addLines(parts);
    });
    void proc.exited.then((st) => {
      s.exitStatus = st;
      s.wake();
    });
    unrefChild(proc.child);
    try {
      await s.waitLine((l) => l.startsWith("READY "), READY_TIMEOUT_MS, "READY");
    } catch (err) {
      await s.stop();
      throw new Error(`Swift did not start: ${err instanceof Error ? err.message : String(err)}`);
    }
    s.startupMs = Date.now() - t0;
    return s;
  }

  private addLines(lines: string[]): void {
    this.lines.push(...lines);
    this.wake();
  }

  private wake(): void {
    const w = this.lineWaiters;
    this.lineWaiters = [];
    for (const f of w) f();
  }

  /** Waits for a stdout line from index `from` on matching `match`; rejects on exit/timeout. */
  private async waitLine(match: (line: string) => boolean, timeoutMs: number, what: string, from = 0): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find(match);
      if (hit !== undefined) return hit;
      if (this.exitStatus)
        throw new Error(
          `the Swift launcher exited (${this.exitStatus.signal ?? `status ${String(this.exitStatus.status)}`}) before ${what}\n${this.diagnostics()}`,
        );
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${what} from the Swift launcher after ${timeoutMs} ms\n${this.diagnostics()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.lineWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The launcher's output and the last `lines` lines of each log file. */
  logTail(lines = 20): string {
    const out = [
      this.proc ? `launcher output:\n${this.proc.output()}` : `(a shared launcher, pid ${this.launcherPid})`,
    ];
    const logDir = join(this.dir, "log");
    if (existsSync(logDir)) {
      for (const f of readdirSync(logDir).sort()) {
        const text = readFileSync(join(logDir, f), "utf8").split("\n").filter(Boolean);
        out.push(`${f}:\n${text.slice(-lines).join("\n")}`);
      }
    }
    return out.join("\n");
  }

  private diagnostics(): string {
    try {
      return this.logTail();
    } catch (err) {
      return `(no logs: ${String(err)})`;
    }
  }

  private async command(signal: NodeJS.Signals, want: "PROXY DOWN" | "PROXY UP"): Promise<void> {
    if (this.exitStatus || this.stopped) throw new Error("the Swift launcher is not running");
    if (!this.proc) {
      // A shared launcher prints its answer to the runner: its port says it here.
      process.kill(this.launcherPid, signal);
      const deadline = Date.now() + READY_TIMEOUT_MS + 5_000;
      while ((await listening(this.port)) !== (want === "PROXY UP")) {
        if (Date.now() > deadline) throw new Error(`no ${want} from the shared Swift\n${this.diagnostics()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return;
    }
    const from = this.lines.length;
    this.proc.child.kill(signal);
    const line = await this.waitLine(
      (l) => l === want || l.startsWith("PROXY FAILED"),
      READY_TIMEOUT_MS + 5_000,
      want,
      from,
    );
    if (line !== want) throw new Error(`${line}\n${this.diagnostics()}`);
  }

  /** Stops the proxy only: its port refuses connections (an endpoint that is down). */
  async stopProxy(): Promise<void> {
    await this.command("SIGUSR1", "PROXY DOWN");
  }

  /** Starts the proxy again on the same port; resolves once it answers. */
  async startProxy(): Promise<void> {
    await this.command("SIGUSR2", "PROXY UP");
  }

  /** Starts the proxy unless it answers already (a test that stopped it and then failed). */
  async ensureProxyUp(): Promise<void> {
    if (!(await listening(this.port))) await this.startProxy();
  }

  /**
   * The proxy waits `seconds` before handling each request from now on (0: no delay), or
   * only each request with one of `methods` ("PUT", say). Read by the proxy per request.
   */
  setSlow(seconds: number, ...methods: string[]): void {
    const file = join(this.dir, "slow");
    if (seconds > 0)
      writeFileSync(file, `${[String(seconds), ...methods.map((m) => m.toUpperCase())].join(" ")}\n`, { mode: 0o644 });
    else rmSync(file, { force: true });
  }

  /**
   * Stops all servers and removes the temp folder (kept with WALMGR_KEEP_TMP); a shared Swift is
   * left running for the next file, its proxy up and not slowed.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    const proc = this.proc;
    if (!proc) {
      this.setSlow(0);
      await this.ensureProxyUp();
      this.stopped = true;
      return;
    }
    this.stopped = true;
    if (!this.exitStatus) {
      proc.child.kill("SIGTERM");
      const killer = setTimeout(() => proc.child.kill("SIGKILL"), 10_000);
      await proc.exited;
      clearTimeout(killer);
    }
    removeTempDir(this.dir);
  }

  /** A signed (SigV4) S3 request; `path` is /bucket[/key][?query], already URI-encoded. */
  async request(method: string, path: string, opts: S3RequestOptions = {}): Promise<S3Response> {
    return s3Request(this.port, method, path, {
      ...opts,
      accessKey: opts.accessKey ?? this.accessKey,
      secretKey: opts.secretKey ?? this.secretKey,
      region: this.region,
    });
  }

  /** PUT Bucket (a signed request); throws unless Swift answers 200. */
  async createBucket(name: string): Promise<void> {
    const res = await this.request("PUT", `/${encodeURIComponent(name)}`);
    if (res.status !== 200)
      throw new Error(`PUT bucket ${name}: HTTP ${res.status}: ${res.body.toString("utf8").slice(0, 500)}`);
  }
}

/** A signed S3 request to 127.0.0.1:`port` over node:http (a new connection each time). */
export function s3Request(
  port: number,
  method: string,
  path: string,
  opts: S3RequestOptions & { accessKey: string; secretKey: string; region: string },
): Promise<S3Response> {
  const body = typeof opts.body === "string" ? Buffer.from(opts.body, "utf8") : opts.body;
  const headers: OutgoingHttpHeaders = { ...(opts.headers ?? {}) };
  if (body && !Object.keys(headers).some((h) => h.toLowerCase() === "content-type"))
    headers["Content-Type"] = "application/octet-stream"; // aws4 would say form-urlencoded
  if (!body && (method === "PUT" || method === "POST")) headers["Content-Length"] = 0;
  const signed = aws4.sign(
    { host: "127.0.0.1", port, method, path, service: "s3", region: opts.region, headers, ...(body ? { body } : {}) },
    { accessKeyId: opts.accessKey, secretAccessKey: opts.secretKey },
  );
  return new Promise<S3Response>((resolve, reject) => {
    const req = httpRequest(
      { host: "127.0.0.1", port, method, path: signed.path, headers: signed.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on("error", reject);
      },
    );
    req.setTimeout(opts.timeoutMs ?? 30_000, () =>
      req.destroy(new Error(`S3 ${method} ${path}: no answer after ${opts.timeoutMs ?? 30_000} ms`)),
    );
    req.on("error", reject);
    req.end(body);
  });
}

function unrefChild(child: ChildProcess): void {
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) (s as Socket | null)?.unref();
}

/** The S3 settings of a config that reaches `s` (a file holding them must be private: chmod 0600). */
export function s3Settings(s: TestSwift): string {
  return `s3_endpoint = ${s.endpoint}
s3_region = ${s.region}
s3_access_key = ${s.accessKey}
s3_secret_key = ${s.secretKey}
`;
}
