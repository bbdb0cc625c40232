/**
 * The test harness's view of the machine: where PostgreSQL's binaries are, which OS user runs
 * the servers (postgres when the suite runs as root: postgres refuses to run as root), and a
 * copy of this package that user can reach when the checkout is private (CI clones under /root).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess, type SpawnOptions, type SpawnSyncOptions } from "node:child_process";
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import { join, resolve } from "node:path";

export const REPO_ROOT = resolve(__dirname, "..", "..", "..");
export const IS_ROOT = process.getuid?.() === 0;

/** uid/gid of the user that runs servers and the executables they call; undefined = ourselves. */
export const RUN_AS: { uid: number; gid: number; name: string } | undefined = (() => {
  if (!IS_ROOT) return undefined;
  const res = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
  const gres = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
  if (res.status !== 0)
    throw new Error("running as root needs a 'postgres' OS user (apt-get install postgresql makes one)");
  return { uid: Number(res.stdout.trim()), gid: Number(gres.stdout.trim()), name: "postgres" };
})();

export const RUN_AS_NAME = RUN_AS?.name ?? userInfo().username;

/** PostgreSQL's bin directory: $PG_BIN, else the newest (preferring 15) under /usr/lib/postgresql. */
export function pgBinDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const base = "/usr/lib/postgresql";
  if (existsSync(base)) {
    const versions = readdirSync(base)
      .filter((v) => existsSync(join(base, v, "bin", "initdb")))
      .sort((a, b) => Number(b) - Number(a));
    const pick = versions.includes("15") ? "15" : versions[0];
    if (pick) return join(base, pick, "bin");
  }
  const which = spawnSync("sh", ["-c", "command -v initdb"], { encoding: "utf8" });
  if (which.status === 0) return resolve(which.stdout.trim(), "..");
  throw new Error("PostgreSQL binaries not found: install postgresql (15) or set PG_BIN");
}

export function pgBin(name: string): string {
  return join(pgBinDir(), name);
}

/**
 * A fresh temp folder owned by the server user, readable by everyone (sockets live in it), in
 * the system's temp folder or in `parent`.
 */
export function makeTempDir(prefix: string, parent?: string): string {
  const dir = mkdtempSync(join(parent ?? tmpdir(), `walmgr-${prefix}-`));
  chmodSync(dir, 0o755);
  if (RUN_AS) chownSync(dir, RUN_AS.uid, RUN_AS.gid);
  return dir;
}

export function removeTempDir(dir: string): void {
  if (process.env.WALMGR_KEEP_TMP) return;
  rmSync(dir, { recursive: true, force: true });
}

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawn options that run a child as the server user (when root), with its HOME/USER; `opts` win. */
function asServerUser<T extends { env?: NodeJS.ProcessEnv }>(opts: T): T & { env: NodeJS.ProcessEnv } {
  return {
    ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
    ...opts,
    env: {
      ...process.env,
      ...(RUN_AS ? { HOME: "/tmp", USER: RUN_AS.name, LOGNAME: RUN_AS.name } : {}),
      ...(opts.env ?? {}),
    },
  };
}

/** Runs a program as the server user (when root), the way PostgreSQL or a DBA would. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): RunResult {
  const res = spawnSync(cmd, args, {
    encoding: "utf8",
    timeout: 300_000,
    ...asServerUser(opts),
  });
  if (res.error) throw res.error;
  return { status: res.status, signal: res.signal, stdout: String(res.stdout ?? ""), stderr: String(res.stderr ?? "") };
}

let pkgRoot: string | undefined;

/**
 * The package root whose bin/ the server user can execute: this checkout when reachable,
 * otherwise a copy (bin, dist, node_modules, package.json) in a world-readable temp folder.
 */
export function packageRoot(): string {
  if (pkgRoot) return pkgRoot;
  let reachable = true;
  if (RUN_AS) {
    try {
      reachable = run(join(REPO_ROOT, "bin", "wal-archive"), ["--version"]).status === 0;
    } catch {
      reachable = false; // EACCES: the server user cannot even reach the file
    }
  }
  if (reachable) {
    pkgRoot = REPO_ROOT;
    return pkgRoot;
  }
  const copy = mkdtempSync(join(tmpdir(), "walmgr-ts-pkg-"));
  chmodSync(copy, 0o755);
  for (const part of ["bin", "dist", "node_modules", "package.json"]) {
    cpSync(join(REPO_ROOT, part), join(copy, part), { recursive: true, dereference: false });
  }
  spawnSync("chmod", ["-R", "a+rX", copy]);
  pkgRoot = copy;
  process.on("exit", () => rmSync(copy, { recursive: true, force: true }));
  return pkgRoot;
}

export function binPath(name: string): string {
  return join(packageRoot(), "bin", name);
}

/** Runs one of our executables as the server user. */
export function runBin(name: string, args: string[], opts: SpawnSyncOptions = {}): RunResult {
  return run(binPath(name), args, opts);
}

/** A running executable (as the server user), with its output collected and its end awaitable. */
export interface Spawned {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ status: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts one of our executables in the background as the server user (a daemon, typically). */
export function spawnBin(name: string, args: string[], opts: SpawnOptions = {}): Spawned {
  return spawnAs(binPath(name), args, opts);
}

/** Starts a program in the background as the server user (when root). */
export function spawnAs(cmd: string, args: string[], opts: SpawnOptions = {}): Spawned {
  const child = spawn(cmd, args, {
    stdio: ["ignore", "pipe", "pipe"],
    ...asServerUser(opts),
  });
  let out = "";
  child.stdout?.on("data", (b: Buffer) => (out += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (out += b.toString()));
  const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((resolveExit) =>
    child.once("close", (status, signal) => resolveExit({ status, signal })),
  );
  return { child, output: () => out, exited };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T> | T,
  timeoutMs = 60_000,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last instanceof Error ? last.message : JSON.stringify(last)}` : ""}`,
      );
    await sleep(everyMs);
  }
}

/** mkdir -p whose every new folder belongs to the server user (0700, like a slave directory). */
export function mkdirAs(path: string): void {
  if (existsSync(path)) return;
  mkdirAs(resolve(path, ".."));
  mkdirSync(path, { mode: 0o700 });
  if (RUN_AS) chownSync(path, RUN_AS.uid, RUN_AS.gid);
}

/**
 * How a child ended, for a failure message: "exit 3", or "killed by SIGKILL" when a signal ended
 * it (status is then null; run()'s own 300 s timeout shows as SIGTERM).
 */
export function howEnded(end: { status: number | null; signal: NodeJS.Signals | null }): string {
  return end.signal ? `killed by ${end.signal}` : `exit ${String(end.status)}`;
}

/** Asserts that an executable succeeded, showing how it ended and its output when it did not. */
export function ok(res: RunResult, what: string): RunResult {
  assert.equal(res.status, 0, `${what} failed (${howEnded(res)}):\n${res.stdout}\n${res.stderr}`);
  return res;
}
