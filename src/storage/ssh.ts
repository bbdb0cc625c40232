/**
 * The slave directory on another host, reached with ssh (and rsync for base backups, where
 * installed on both sides). Every operation runs our own helper on the slave
 * (`wal-ctl SLAVE_CONFIG xVERB …`, see remote-helper.ts), which does it with the local driver
 * there: so a WAL file is stored under a temporary name, fsynced, renamed and its folder fsynced
 * on the slave, which rsync alone would not do. Data travels on the helper's stdin with its
 * length and sha256, so a connection cut mid-stream never leaves a file under its final name.
 *
 * ssh runs non-interactively (BatchMode) with a connect timeout and keep-alives: a dead or
 * unreachable host is a TransportError (exit 6) naming the host, never a hang or a password
 * prompt. Host-key checking and everything else follow the operator's ssh config (`ssh_config`
 * to use another file than ~/.ssh/config).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { PassThrough, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import { closeSync, createReadStream, fstatSync, openSync, readSync } from "node:fs";
import { join, posix } from "node:path";
import { ConfigError, ExitCode, IoError, isErrno, ioError, TransportError, WalmgrError } from "../errors";
import type { ExitCodeValue } from "../errors";
import { shellQuote } from "../pg/postgresql-conf";
import type {
  FileInfo,
  ReadStream,
  StorageDriver,
  StorageFeatures,
  TreeStats,
  WriteHandle,
  WriteOptions,
} from "./driver";
import type { Manifest } from "./manifest";
import { bodyTrailer } from "./body-trailer";
import { sha256 as sha, newSha256 } from "./sha256";
import { walkTreeSync } from "./tree-walk";

export interface SshOptions {
  host: string;
  /** Path of wal-ctl on the slave host. */
  remoteBin: string;
  /** The slave's config file on the slave host (slave_config), or undefined. */
  remoteConfig?: string;
  /** Seconds for ssh to connect (and for an idle operation to answer). */
  timeout: number;
  /** ssh -C for streamed files, rsync -z for trees. */
  compression: boolean;
  /** ssh client config file (ssh -F); undefined: the user's ~/.ssh/config. */
  sshConfig?: string;
}

const BAD_CHARS = /[\0\n\r]/;

/** Quotes one argument of the remote command; refuses what no shell quoting can carry safely. */
export function remoteArg(word: string): string {
  if (BAD_CHARS.test(word)) {
    throw new IoError(
      `refusing to pass ${JSON.stringify(word)} to the slave: it contains a NUL or line break`,
      "rename the path; NUL and line breaks cannot travel safely through a remote shell",
    );
  }
  return shellQuote(word);
}

/** The remote command line: each word quoted for the slave's /bin/sh. */
export function remoteCommand(words: string[]): string {
  return words.map(remoteArg).join(" ");
}

function checkHost(host: string): void {
  // user@host, host names, IPv4, bracketed IPv6; nothing that ssh could read as an option.
  if (!/^[A-Za-z0-9_.%+@[\]-]+$/.test(host) || host.startsWith("-")) {
    throw new ConfigError(
      `slave host ${JSON.stringify(host)} is not a host name`,
      "write `slave = host:/path` (or user@host:/path); put ports and other details in the ssh config",
    );
  }
}

interface CallOpts {
  input?: Buffer;
  inputFile?: string;
  /** Kill the call when nothing moved for this long; undefined = only ssh keep-alives. */
  idleMs?: number;
}

interface CallResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" / ");
}

export class SshDriver implements StorageDriver {
  readonly description: string;

  constructor(readonly opts: SshOptions) {
    checkHost(opts.host);
    this.description = `ssh ${opts.host}`;
  }

  /** ssh's own options: non-interactive, bounded connect time, keep-alives, compression. */
  sshArgs(): string[] {
    const t = Math.max(1, Math.ceil(this.opts.timeout));
    return [
      ...(this.opts.sshConfig ? ["-F", this.opts.sshConfig] : []),
      "-o",
      "BatchMode=yes",
      "-o",
      `ConnectTimeout=${t}`,
      "-o",
      `ServerAliveInterval=${Math.max(1, Math.ceil(t / 3))}`,
      "-o",
      "ServerAliveCountMax=3",
      "-T",
      ...(this.opts.compression ? ["-C"] : []),
    ];
  }

  private helperArgs(verb: string, args: string[]): string[] {
    const cmd = remoteCommand([this.opts.remoteBin, this.opts.remoteConfig ?? "-", verb, ...args]);
    return [...this.sshArgs(), "--", this.opts.host, cmd];
  }

  /** Maps how ssh ended to an error, or undefined when the helper answered. */
  private failure(verb: string, res: { code: number | null; signal: string | null; stderr: string }, why?: string) {
    const host = this.opts.host;
    if (why) return new TransportError(`ssh to ${host} (${verb}): ${why}`, this.hint());
    if (res.code === null) {
      return new TransportError(`ssh to ${host} (${verb}) was killed by ${res.signal ?? "a signal"}`, this.hint());
    }
    if (res.code === 255) {
      return new TransportError(`ssh to ${host} failed (${verb}): ${lastLines(res.stderr) || "exit 255"}`, this.hint());
    }
    if (res.code === 126 || res.code === 127) {
      return new TransportError(
        `the helper ${this.opts.remoteBin} cannot be run on ${host}: ${lastLines(res.stderr)}`,
        "install walmgr-ts at the same path on the slave, or set slave_wal_ctl to its wal-ctl there",
      );
    }
    if (res.code === 0) return undefined;
    const valid = Object.values(ExitCode) as number[];
    const code = (valid.includes(res.code) ? res.code : ExitCode.IO) as ExitCodeValue;
    const [msg, ...rest] = res.stderr.trim().split("\nHINT: ");
    return new WalmgrError(
      `on ${host}: ${msg || `the helper ${verb} exited ${res.code}`}`,
      code,
      rest.join(" ") || undefined,
    );
  }

  private hint(): string {
    return `check that \`ssh ${this.opts.sshConfig ? `-F ${this.opts.sshConfig} ` : ""}${this.opts.host} true\` works without a password as this user (BatchMode), and that the host is up`;
  }

  /** Runs the helper; resolves with its result (exit 1 included); TransportError for ssh trouble. */
  async call(verb: string, args: string[], o: CallOpts = {}): Promise<CallResult> {
    const argv = this.helperArgs(verb, args);
    return new Promise<CallResult>((resolve, reject) => {
      const child = spawn("ssh", argv, { stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      let err = "";
      let why: string | undefined;
      let timer: NodeJS.Timeout | undefined;
      const arm = (): void => {
        if (o.idleMs === undefined) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => {
          why = `no answer for ${Math.round((o.idleMs ?? 0) / 1000)} s`;
          child.kill("SIGKILL");
        }, o.idleMs);
      };
      arm();
      child.stdout.on("data", (c: Buffer) => {
        out.push(c);
        arm();
      });
      child.stderr.on("data", (c: Buffer) => {
        if (err.length < 65536) err += c.toString("utf8");
        arm();
      });
      child.stdin.on("error", () => undefined); // EPIPE when ssh dies: reported by its exit
      child.on("error", (e) => {
        if (timer) clearTimeout(timer);
        reject(new TransportError(`cannot run ssh for ${this.opts.host}: ${e.message}`, "install openssh-client"));
      });
      child.on("close", (code, signal) => {
        if (timer) clearTimeout(timer);
        const fail = this.failure(verb, { code, signal, stderr: err }, why);
        if (fail && !(code === 1 && verb === "xread" && why === undefined)) return reject(fail);
        resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err });
      });
      if (o.inputFile !== undefined) {
        const rs = createReadStream(o.inputFile, { highWaterMark: 1 << 20 });
        rs.on("data", () => arm());
        rs.on("error", (e) => {
          why = `cannot read ${o.inputFile}: ${e.message}`;
          child.kill("SIGKILL");
        });
        rs.pipe(child.stdin);
      } else {
        child.stdin.end(o.input ?? Buffer.alloc(0));
      }
    });
  }

  private smallMs(): number {
    return Math.max(30, this.opts.timeout * 3) * 1000;
  }

  private async json<T>(verb: string, args: string[], o: CallOpts = {}): Promise<T> {
    const res = await this.call(verb, args, { idleMs: this.smallMs(), ...o });
    try {
      return JSON.parse(res.stdout.toString("utf8")) as T;
    } catch {
      throw new TransportError(
        `ssh to ${this.opts.host} (${verb}): unexpected answer ${JSON.stringify(res.stdout.toString("utf8").slice(0, 200))}`,
        "something on the slave (a login script?) writes to stdout; make non-interactive logins silent",
      );
    }
  }

  /** Synchronous helper call, for signal handlers (bounded by the timeout). */
  callSync(verb: string, args: string[]): boolean {
    const res = spawnSync("ssh", this.helperArgs(verb, args), {
      stdio: ["ignore", "pipe", "pipe"],
      timeout: this.smallMs(),
    });
    return res.status === 0;
  }

  readonly features: StorageFeatures = {
    writeAt: { writeAt: (path, offset, data) => this.writeAt(path, offset, data) },
    tree: {
      manifest: (dir) => this.manifest(dir),
      removeTree: (path) => this.removeTree(path),
      renameDir: (from, to) => this.rename(from, to),
      putTree: (src, dest, keep, opts) => this.putTree(src, dest, keep, opts),
    },
  };

  /**
   * One helper call (xput) per object: the body streams to the helper's stdin, hashed on the
   * way, and ends with a trailer of its length and sha256 (see remote-helper.ts `put`), which
   * the helper checks before it fsyncs the temp and puts it in place. The helper that writes
   * the temp lives until it is committed or removed, so the temp carries a live writer's name
   * the whole time and the slave's stale-temp cleanup never takes it.
   */
  async newWrite(path: string, opts: WriteOptions = {}): Promise<WriteHandle> {
    const args = [path, opts.exclusive ? "1" : "0", "-", "-", opts.padTo === undefined ? "-" : String(opts.padTo)];
    const child = spawn("ssh", this.helperArgs("xput", args), { stdio: ["pipe", "pipe", "pipe"] });
    const result = this.collect("xput", child, this.smallMs());
    return Promise.resolve(new SshWrite(path, child, result, this.opts.host));
  }

  /**
   * The file streamed from the helper's stdout (xread). Resolves once the first bytes (or the
   * helper's end) arrive, so that "not there" (exit 1 before any byte) is told apart; the stream
   * errors, never just ends, when ssh or the helper fails midway.
   */
  async newRead(path: string): Promise<ReadStream | undefined> {
    const child = spawn("ssh", this.helperArgs("xread", [path]), { stdio: ["ignore", "pipe", "pipe"] });
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    let err = "";
    let why: string | undefined;
    let timer: NodeJS.Timeout | undefined;
    const idleMs = this.smallMs();
    const arm = (): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        why = `no answer for ${Math.round(idleMs / 1000)} s`;
        child.kill("SIGKILL");
      }, idleMs);
    };
    arm();
    return new Promise<ReadStream | undefined>((resolve, reject) => {
      let started = false;
      const start = (): void => {
        if (started) return;
        started = true;
        resolve(out);
      };
      child.stdout.on("data", (c: Buffer) => {
        arm();
        start();
        if (!out.write(c)) {
          child.stdout.pause();
          out.once("drain", () => child.stdout.resume());
        }
      });
      child.stderr.on("data", (c: Buffer) => {
        if (err.length < 65536) err += c.toString("utf8");
      });
      out.on("close", () => {
        // The reader gave up early: stop the transfer.
        if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      });
      child.on("error", (e) => {
        if (timer) clearTimeout(timer);
        const fail = new TransportError(`cannot run ssh for ${this.opts.host}: ${e.message}`, "install openssh-client");
        if (started) out.destroy(fail);
        else reject(fail);
      });
      child.on("close", (code, signal) => {
        if (timer) clearTimeout(timer);
        if (!started && code === ExitCode.NOT_AVAILABLE && why === undefined) return resolve(undefined);
        const fail = this.failure("xread", { code, signal, stderr: err }, why);
        if (fail) {
          if (started) out.destroy(fail);
          else reject(fail);
          return;
        }
        start();
        out.end();
      });
    });
  }

  async info(path: string): Promise<FileInfo | undefined> {
    return (await this.json<FileInfo | null>("xstat", [path])) ?? undefined;
  }

  async pathCreate(path: string): Promise<void> {
    await this.call("xmkdir", [path], { idleMs: this.smallMs() });
  }

  /** Waits for a helper spawned by `newWrite`; its JSON answer, or the error of how it ended. */
  private collect(verb: string, child: ChildProcess, idleMs: number): Promise<{ stored: boolean }> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      let err = "";
      let why: string | undefined;
      let timer: NodeJS.Timeout | undefined;
      const arm = (): void => {
        if (timer) clearTimeout(timer);
        timer = setTimeout(() => {
          why = `no answer for ${Math.round(idleMs / 1000)} s`;
          child.kill("SIGKILL");
        }, idleMs);
      };
      arm();
      child.stdout?.on("data", (c: Buffer) => {
        out.push(c);
        arm();
      });
      child.stderr?.on("data", (c: Buffer) => {
        if (err.length < 65536) err += c.toString("utf8");
        arm();
      });
      child.stdin?.on("error", () => undefined); // EPIPE when ssh dies: reported by its exit
      (child as ChildProcess & { arm?: () => void }).arm = arm;
      child.on("error", (e) => {
        if (timer) clearTimeout(timer);
        reject(new TransportError(`cannot run ssh for ${this.opts.host}: ${e.message}`, "install openssh-client"));
      });
      child.on("close", (code, signal) => {
        if (timer) clearTimeout(timer);
        const fail = this.failure(verb, { code, signal, stderr: err }, why);
        if (fail) return reject(fail);
        const text = Buffer.concat(out).toString("utf8");
        try {
          resolve(JSON.parse(text) as { stored: boolean });
        } catch {
          reject(
            new TransportError(
              `ssh to ${this.opts.host} (${verb}): unexpected answer ${JSON.stringify(text.slice(0, 200))}`,
              "something on the slave (a login script?) writes to stdout; make non-interactive logins silent",
            ),
          );
        }
      });
    });
  }

  async writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    const buf = Buffer.from(data);
    await this.call("xwriteat", [path, String(offset), String(buf.length), sha(buf)], {
      input: buf,
      idleMs: this.smallMs(),
    });
  }

  async manifest(dir: string): Promise<Manifest> {
    const m = await this.json<Manifest | null>("xmanifest", [dir]);
    if (!m) throw new IoError(`${this.description}: no backup tree at ${dir}`);
    return m;
  }

  async list(dir: string): Promise<string[] | undefined> {
    return (await this.json<string[] | null>("xlist", [dir])) ?? undefined;
  }

  async remove(path: string): Promise<boolean> {
    return (await this.json<{ removed: boolean }>("xremove", [path])).removed;
  }

  async removeTree(path: string): Promise<void> {
    await this.call("xrmtree", [path]);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.call("xrename", [from, to], { idleMs: this.smallMs() });
  }

  /** Synchronously removes `lockPath` on the slave if it names this process (signal-time cleanup). */
  releaseLockSync(lockPath: string, pid: number, host: string): void {
    this.callSync("xunlock", [lockPath, String(pid), host]);
  }

  removeTreeSync(path: string): void {
    this.callSync("xrmtree", [path]);
  }

  /**
   * Copies a local tree to the slave. With rsync on both sides: only the files `keep` accepts
   * (listed with --files-from), symlinks followed, delta transfer against `basis` (the previous
   * set, via --copy-dest: unchanged files are copied on the slave, changed ones are sent as
   * differences, and the previous set is never touched). Without rsync: a framed stream into
   * the helper. Either way the helper fsyncs the whole tree afterwards.
   *
   * rsync's quick check trusts size + mtime, and compares mtimes in whole seconds: a file
   * rewritten within the second the basis copied it (same size) would keep the basis's stale
   * bytes. So two runs: the files whose mtime is older than `trustMtimeBefore` with the quick
   * check (an unchanged old file costs no read), all others with --ignore-times, which compares
   * their content against the basis (still a delta transfer: unchanged blocks are not sent).
   */
  async putTree(
    src: string,
    dest: string,
    keep: (rel: string, isDir: boolean) => boolean,
    opts: { basis?: string; trustMtimeBefore?: number | undefined } = {},
  ): Promise<TreeStats> {
    const entries = listTree(src, keep);
    const probe = await this.json<{ rsync: boolean }>("xprobe", []);
    const useRsync = probe.rsync && process.env.WALMGR_NO_RSYNC !== "1" && localRsync();
    if (!useRsync) return this.streamTree(src, dest, entries);
    let basis: string | undefined;
    if (opts.basis !== undefined && (await this.info(opts.basis))?.isDirectory) {
      basis = posix.isAbsolute(opts.basis) ? opts.basis : posix.relative(dest, opts.basis);
    }
    let sent: number;
    if (basis === undefined) {
      sent = await this.rsync(src, dest, entries, undefined, false);
    } else {
      const cutoff = opts.trustMtimeBefore ?? -Infinity;
      const trusted = entries.filter((e) => e.isDir || e.mtimeMs < cutoff);
      const compared = entries.filter((e) => !e.isDir && !(e.mtimeMs < cutoff));
      // The first run creates every folder; the second only fills in files.
      sent = await this.rsync(src, dest, trusted, basis, false);
      if (compared.length > 0) sent += await this.rsync(src, dest, compared, basis, true);
    }
    await this.call("xfsynctree", [dest]);
    const stats: TreeStats = { files: 0, bytes: 0 };
    for (const e of entries) {
      if (e.isDir) continue;
      stats.files++;
      stats.bytes += e.size;
    }
    return { ...stats, sent };
  }

  /** The ssh command for rsync -e: every word quoted for rsync's own splitting. */
  rsyncShell(): string {
    return ["ssh", ...this.sshArgs()].map((w) => (/^[A-Za-z0-9_=./:,+-]+$/.test(w) ? w : `"${w}"`)).join(" ");
  }

  private async rsync(
    src: string,
    dest: string,
    entries: TreeEntry[],
    basis: string | undefined,
    byContent: boolean,
  ): Promise<number> {
    const t = Math.max(1, Math.ceil(this.opts.timeout));
    const args = [
      "--files-from=-",
      "--from0",
      "--copy-links",
      "--times",
      "--perms",
      "--chmod=D0700,F0600",
      "-s", // --secluded-args/--protect-args: names travel in the protocol, never through a shell
      "--stats",
      `--timeout=${Math.max(60, t * 6)}`,
      ...(this.opts.compression ? ["-z"] : []),
      ...(basis !== undefined ? [`--copy-dest=${basis}`] : []),
      ...(byContent ? ["--ignore-times"] : []),
      "-e",
      this.rsyncShell(),
      `${src}/`,
      `${this.opts.host}:${dest}/`,
    ];
    // Only what `keep` accepted; no "." entry (rsync would copy every top-level file with it).
    const list = Buffer.from(entries.map((e) => `${e.rel}\0`).join(""));
    return new Promise<number>((resolve, reject) => {
      // rsync dies with us (even on kill -9, where no cleanup runs): an orphan would go on
      // writing into a temp set that the next backup is removing.
      const child = pdeathsig()
        ? spawn("setpriv", ["--pdeathsig", "KILL", "--", "rsync", ...args], { stdio: ["pipe", "pipe", "pipe"] })
        : spawn("rsync", args, { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      let err = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
      child.stderr.on("data", (c: Buffer) => {
        if (err.length < 65536) err += c.toString("utf8");
      });
      child.stdin.on("error", () => undefined);
      child.on("error", (e) => reject(new TransportError(`cannot run rsync: ${e.message}`, "install rsync")));
      child.on("close", (code, signal) => {
        // 24: files vanished while copying (a running database removes files; replay repairs that).
        if (code === 0 || code === 24) {
          const m = /Total bytes sent:\s*([\d,.]+)/.exec(out);
          return resolve(m ? Number((m[1] ?? "0").replace(/[,.]/g, "")) : 0);
        }
        const what = code === null ? `was killed by ${signal ?? "a signal"}` : `exited ${code}`;
        const msg = `rsync to ${this.opts.host}:${dest} ${what}: ${lastLines(err)}`;
        // 23: some files could not be transferred (permissions, disk full) — an I/O problem.
        if (code === 23 || code === 11)
          return reject(new IoError(msg, "check the free space and the owner of the slave directory"));
        reject(new TransportError(msg, this.hint()));
      });
      child.stdin.end(list);
    });
  }

  /** Fallback without rsync: the tree as frames on the helper's stdin (see remote-helper.ts). */
  private async streamTree(src: string, dest: string, entries: TreeEntry[]): Promise<TreeStats> {
    const { PassThrough } = await import("node:stream");
    const pass = new PassThrough({ highWaterMark: 1 << 20 });
    const frame = (h: object): Buffer => {
      const j = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(4);
      len.writeUInt32BE(j.length);
      return Buffer.concat([len, j]);
    };
    const write = async (b: Buffer): Promise<void> => {
      if (!pass.write(b)) await new Promise((r) => pass.once("drain", r));
    };
    const stats: TreeStats = { files: 0, bytes: 0 };
    const feed = (async (): Promise<void> => {
      const buf = Buffer.allocUnsafe(1 << 20);
      for (const e of entries) {
        if (e.isDir) {
          await write(frame({ p: e.rel, d: true }));
          continue;
        }
        let fd: number;
        try {
          fd = openSync(join(src, e.rel), "r");
        } catch (err) {
          if (isErrno(err, "ENOENT")) continue; // vanished: a running database removes files
          throw ioError("cannot read", join(src, e.rel), err);
        }
        try {
          const size = fstatSync(fd).size;
          await write(frame({ p: e.rel, s: size }));
          let off = 0;
          while (off < size) {
            const n = readSync(fd, buf, 0, Math.min(buf.length, size - off), off);
            if (n === 0) {
              // Shrank while copying: pad (like tar); WAL replay repairs the file.
              await write(Buffer.alloc(size - off));
              break;
            }
            await write(Buffer.from(buf.subarray(0, n)));
            off += n;
          }
          stats.files++;
          stats.bytes += size;
        } finally {
          closeSync(fd);
        }
      }
      await write(frame({ end: true }));
      pass.end();
    })();
    const sent = { n: 0 };
    pass.on("data", (c: Buffer) => (sent.n += c.length));
    const callP = this.callStream("xputtree", [dest], pass);
    await Promise.all([
      feed.catch((e: unknown) => {
        pass.destroy(); // the helper sees no end frame and stores nothing as complete
        throw e;
      }),
      callP,
    ]);
    return { ...stats, sent: sent.n };
  }

  private async callStream(verb: string, args: string[], input: NodeJS.ReadableStream): Promise<CallResult> {
    const argv = this.helperArgs(verb, args);
    return new Promise<CallResult>((resolve, reject) => {
      const child = spawn("ssh", argv, { stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      let err = "";
      child.stdout.on("data", (c: Buffer) => out.push(c));
      child.stderr.on("data", (c: Buffer) => {
        if (err.length < 65536) err += c.toString("utf8");
      });
      child.stdin.on("error", () => undefined);
      child.on("error", (e) => reject(new TransportError(`cannot run ssh for ${this.opts.host}: ${e.message}`)));
      child.on("close", (code, signal) => {
        const fail = this.failure(verb, { code, signal, stderr: err });
        if (fail) return reject(fail);
        resolve({ code: code ?? -1, stdout: Buffer.concat(out), stderr: err });
      });
      input.on("close", () => child.stdin.end());
      input.pipe(child.stdin);
    });
  }
}

/** The handle of `SshDriver.newWrite`: bytes to the helper's stdin, trailer at the end. */
class SshWrite extends Writable implements WriteHandle {
  private readonly hash = newSha256();
  private bytes = 0;
  private done = false;
  private pending: ((err?: Error | null) => void) | undefined;

  constructor(
    readonly path: string,
    private readonly child: ChildProcess,
    private readonly result: Promise<{ stored: boolean }>,
    private readonly host: string,
  ) {
    super({ highWaterMark: 1 << 20, autoDestroy: false });
    // A write waiting for 'drain' when ssh dies would wait for ever: fail it with how ssh ended.
    result.then(
      () => this.settle(new TransportError(`ssh to ${host} (xput) ended before the body was sent`)),
      (err: Error) => this.settle(err),
    );
  }

  private settle(err: Error): void {
    const cb = this.pending;
    this.pending = undefined;
    cb?.(err);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    (this.child as ChildProcess & { arm?: () => void }).arm?.();
    const stdin = this.child.stdin;
    if (!stdin || stdin.destroyed) return cb(new TransportError(`ssh to ${this.host} (xput) ended early`));
    // Done with the chunk only once the pipe has taken it: the caller may reuse the buffer.
    this.pending = cb;
    stdin.write(chunk, (err) => {
      // A broken pipe (EPIPE: ssh died) is left pending: how ssh ended (a TransportError naming
      // the host, exit 6) settles it once the process is gone.
      if (err) return;
      const p = this.pending;
      this.pending = undefined;
      p?.();
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.child.stdin?.end(bodyTrailer(this.bytes, this.hash.digest("hex")), () => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.done) {
      this.done = true;
      // Without its trailer the helper stores nothing; killing ssh makes sure of it.
      this.child.kill("SIGKILL");
    }
    cb(err);
  }

  async commit(): Promise<boolean> {
    if (this.done) throw new IoError(`cannot write ${this.path}: the write was already committed or aborted`);
    if (!this.writableFinished) {
      if (!this.writableEnded) this.end();
      await Promise.race([finished(this), this.result]);
    }
    this.done = true;
    return (await this.result).stored;
  }

  async abort(): Promise<void> {
    if (!this.destroyed) this.destroy();
    await this.result.catch(() => undefined);
  }
}

interface TreeEntry {
  rel: string;
  isDir: boolean;
  size: number;
  mtimeMs: number;
}

/** The tree below `src` as `keep` accepts it, symlinks followed (like the local copy). */
function listTree(src: string, keep: (rel: string, isDir: boolean) => boolean): TreeEntry[] {
  const out: TreeEntry[] = [];
  walkTreeSync(src, ({ rel, path, st }) => {
    if (BAD_CHARS.test(rel)) throw new IoError(`cannot copy ${path}: its name has a line break`);
    if (st.isDirectory()) {
      if (!keep(rel, true)) return false;
      out.push({ rel, isDir: true, size: 0, mtimeMs: st.mtimeMs });
      return true;
    }
    if (st.isFile() && keep(rel, false)) out.push({ rel, isDir: false, size: st.size, mtimeMs: st.mtimeMs });
    return false;
  });
  return out;
}

let rsyncHere: boolean | undefined;
function localRsync(): boolean {
  rsyncHere ??= spawnSync("rsync", ["--version"], { stdio: "ignore" }).status === 0;
  return rsyncHere;
}

let setprivHere: boolean | undefined;
/** util-linux setpriv can make rsync get SIGKILL when this process dies (Linux PR_SET_PDEATHSIG). */
function pdeathsig(): boolean {
  setprivHere ??= spawnSync("setpriv", ["--pdeathsig", "KILL", "--", "true"], { stdio: "ignore" }).status === 0;
  return setprivHere;
}
