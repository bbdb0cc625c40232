/**
 * ssh to the slave host: the command lines, connection sharing, and the client end of a helper
 * session (one `ssh HOST 'wal-ctl SLAVE_CONFIG xhelper'` per master command, serving every
 * request of that command; see protocol.ts).
 *
 * ssh runs non-interactively (BatchMode) with a connect timeout and keep-alives: a dead or
 * unreachable host is a TransportError (exit 6) naming the host, never a hang or a password
 * prompt. Consecutive commands share one connection (ControlMaster=auto, ControlPersist from
 * the ssh_control_persist setting, 0: off) through a socket in a private (0700) folder of the
 * calling user; a folder that cannot be used, or a stale socket, means one warning and a plain
 * connection. Everything else (port, user, keys, host-key checking) follows the operator's ssh
 * config (`ssh_config` names another file than ~/.ssh/config).
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { sha256 } from "../sha256";
import { accessSync, constants, lstatSync, mkdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { basename, isAbsolute, join } from "node:path";
import { ConfigError, ExitCode, IoError, TransportError, WalmgrError, type ExitCodeValue } from "../../errors";
import { writeStderr } from "../../log";
import { shellQuote } from "../../shell";
import {
  answerError,
  describeHello,
  encodeJson,
  FrameReader,
  HELLO_VERB,
  HELPER_MAGIC,
  helloAgrees,
  helloOf,
  MISMATCH_HINT,
  ProtocolError,
  readHello,
  sendBody,
  writeOut,
  VersionMismatchError,
  type Hello,
} from "./protocol";
import { HELPER_COMMAND, type HelperVerb } from "./verbs";

export interface SshOptions {
  host: string;
  /** Path of wal-ctl on the slave host. */
  remoteBin: string;
  /** The slave's config file on the slave host (slave_config), or undefined. */
  remoteConfig?: string;
  /** Seconds for ssh to connect, and each request's bound as a whole (see HelperSession). */
  timeout: number;
  /** ssh -C for streamed files, rsync -z for trees. */
  compression: boolean;
  /** ssh client config file (ssh -F); undefined: the user's ~/.ssh/config. */
  sshConfig?: string;
  /** Seconds a shared connection outlives its last use (ssh ControlPersist); 0 or undefined: no sharing. */
  controlPersist?: number;
  /** Where the one warning about connection sharing goes (default: stderr). */
  warn?: (message: string) => void;
}

const BAD_CHARS = /[\0\n\r]/;

/** Quotes one argument of the remote command; refuses what no shell quoting can carry safely. */
function remoteArg(word: string): string {
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

export function checkHost(host: string): void {
  // user@host, host names, IPv4, bracketed IPv6; nothing that ssh could read as an option.
  if (!/^[A-Za-z0-9_.%+@[\]-]+$/.test(host) || host.startsWith("-")) {
    throw new ConfigError(
      `slave host ${JSON.stringify(host)} is not a host name`,
      "write `slave = host:/path` (or user@host:/path); put ports and other details in the ssh config",
    );
  }
}

export function lastLines(text: string): string {
  return text.trim().split("\n").slice(-3).join(" / ");
}

let warnedSharing = false;

/**
 * The private folder for control sockets: $XDG_RUNTIME_DIR/walmgr-ssh when that runtime folder
 * is the caller's own, else $TMPDIR/walmgr-ssh-UID. It must be a real folder (not a link) owned
 * by the caller, 0700 or narrower, and writable; otherwise the reason it cannot be used.
 */
export function controlDir(): { dir: string } | { problem: string } {
  const uid = process.getuid?.() ?? 0;
  const xdg = process.env.XDG_RUNTIME_DIR;
  let dir = join(tmpdir(), `walmgr-ssh-${uid}`);
  if (xdg && isAbsolute(xdg)) {
    try {
      if (statSync(xdg).uid === uid) dir = join(xdg, "walmgr-ssh");
    } catch {
      // not there: the temp folder then
    }
  }
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") {
      return { problem: `cannot create ${dir}: ${(err as Error).message}` };
    }
  }
  try {
    const st = lstatSync(dir);
    if (!st.isDirectory()) return { problem: `${dir} is not a folder` };
    if (st.uid !== uid) return { problem: `${dir} belongs to uid ${st.uid}, not to this user (uid ${uid})` };
    if ((st.mode & 0o077) !== 0) {
      return { problem: `${dir} is open to others (mode ${(st.mode & 0o777).toString(8)}; it must be 700)` };
    }
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    return { problem: `cannot use ${dir}: ${(err as Error).message}` };
  }
  return { dir };
}

/** Can something be reached at the unix socket `path`? "refused" for a socket nobody listens on. */
function probeSocket(path: string): Promise<"live" | "refused" | "other"> {
  return new Promise((resolve) => {
    const s = connect({ path });
    const t = setTimeout(() => {
      s.destroy();
      resolve("other");
    }, 2000);
    s.once("connect", () => {
      clearTimeout(t);
      s.destroy();
      resolve("live");
    });
    s.once("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve(e.code === "ECONNREFUSED" || e.code === "ENOENT" ? "refused" : "other");
    });
  });
}

/** How ssh ended, as reported by its 'close' event. */
interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export class SshTransport {
  /** ssh's control options once `prepare` decided; [] means a plain connection. */
  private control: string[] = [];
  /** The control socket, with a shared connection. */
  private controlSocket: string | undefined;
  private prepared: Promise<void> | undefined;

  constructor(readonly opts: SshOptions) {
    checkHost(opts.host);
  }

  /** ssh's own options: non-interactive, bounded connect time, keep-alives, compression, sharing. */
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
      ...this.control,
      "-T",
      ...(this.opts.compression ? ["-C"] : []),
    ];
  }

  /** The control socket's path for this host and ssh config (inside the private folder). */
  controlPath(dir: string): string {
    const key = sha256(Buffer.from(JSON.stringify([this.opts.sshConfig ?? "", this.opts.host])));
    return join(dir, key.slice(0, 32));
  }

  private warn(message: string): void {
    if (warnedSharing) return;
    warnedSharing = true;
    if (this.opts.warn) this.opts.warn(message);
    else writeStderr(`${basename(process.argv[1] ?? "walmgr")}: WARNING: ${message}\n`);
  }

  /** Decides on connection sharing (once): the folder is checked, a stale socket removed. */
  prepare(): Promise<void> {
    this.prepared ??= (async (): Promise<void> => {
      const persist = this.opts.controlPersist ?? 0;
      if (!(persist > 0)) return;
      const where = controlDir();
      const fallback = "connecting without connection sharing (set ssh_control_persist = 0 to silence this)";
      if ("problem" in where) {
        this.warn(`ssh connection sharing: ${where.problem}; ${fallback}`);
        return;
      }
      const path = this.controlPath(where.dir);
      let isSocket = false;
      try {
        const st = lstatSync(path);
        isSocket = st.isSocket();
        if (!isSocket) {
          unlinkSync(path);
          this.warn(`ssh connection sharing: ${path} was not a socket and was removed; ${fallback}`);
          return;
        }
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
          this.warn(`ssh connection sharing: cannot use ${path}: ${(err as Error).message}; ${fallback}`);
          return;
        }
      }
      if (isSocket) {
        const state = await probeSocket(path);
        if (state !== "live") {
          // A master that died (kill -9, reboot) left its socket: remove it for the next call.
          try {
            unlinkSync(path);
          } catch {
            // gone meanwhile
          }
          this.warn(
            `ssh connection sharing: stale control socket ${path} (its ssh master is gone) removed; ${fallback}`,
          );
          return;
        }
      }
      this.controlSocket = path;
      this.control = [
        "-o",
        "ControlMaster=auto",
        "-o",
        `ControlPath=${path}`,
        "-o",
        `ControlPersist=${Math.max(1, Math.ceil(persist))}s`,
      ];
    })();
    return this.prepared;
  }

  /**
   * The pid of the shared connection's master (ssh -O check, bounded), or undefined: no sharing,
   * no master, or no answer.
   */
  masterPid(): number | undefined {
    if (this.controlSocket === undefined) return undefined;
    const res = spawnSync(
      "ssh",
      [
        ...(this.opts.sshConfig ? ["-F", this.opts.sshConfig] : []),
        "-o",
        `ControlPath=${this.controlSocket}`,
        "-O",
        "check",
        "--",
        this.opts.host,
      ],
      { encoding: "utf8", timeout: 2000, stdio: ["ignore", "pipe", "pipe"] },
    );
    const pid = Number(/\(pid=(\d+)\)/.exec(`${res.stdout ?? ""}${res.stderr ?? ""}`)?.[1]);
    return pid > 0 ? pid : undefined;
  }

  /** The argv of ssh that starts a helper session on the slave. */
  helperArgs(): string[] {
    const cmd = remoteCommand([this.opts.remoteBin, this.opts.remoteConfig ?? "-", HELPER_COMMAND]);
    return [...this.sshArgs(), "--", this.opts.host, cmd];
  }

  hint(): string {
    return `check that \`ssh ${this.opts.sshConfig ? `-F ${this.opts.sshConfig} ` : ""}${this.opts.host} true\` works without a password as this user (BatchMode), and that the host is up`;
  }

  /** The error for how ssh ended (`why`: we killed it, and why); undefined when it ended well. */
  failure(res: Ended, why?: string): WalmgrError | undefined {
    const host = this.opts.host;
    if (why) return new TransportError(`ssh to ${host}: ${why}`, this.hint());
    if (res.code === null) {
      return new TransportError(`ssh to ${host} was killed by ${res.signal ?? "a signal"}`, this.hint());
    }
    if (res.code === 255) {
      return new TransportError(`ssh to ${host} failed: ${lastLines(res.stderr) || "exit 255"}`, this.hint());
    }
    if (res.code === 126 || res.code === 127) {
      return new TransportError(
        `the helper ${this.opts.remoteBin} cannot be run on ${host}: ${lastLines(res.stderr)}`,
        "install walmgr-ts at the same path on the slave, or set slave_wal_ctl to its wal-ctl there",
      );
    }
    if (res.code === 0) return undefined;
    if (res.code === ExitCode.USAGE) {
      // The slave's wal-ctl did not take the command line the master ran: another build.
      return new TransportError(
        `the helper ${this.opts.remoteBin} on ${host} refused its command line (version mismatch?): ${lastLines(res.stderr) || "exit 2"}`,
        MISMATCH_HINT,
      );
    }
    if (res.code > 128) {
      // The remote shell reports a helper that died of a signal (kill -9, the OOM killer).
      return new TransportError(
        `the helper on ${host} died (signal ${res.code - 128}): ${lastLines(res.stderr) || "no message"}`,
        "look at the slave host's logs (OOM killer?) and retry",
      );
    }
    const valid = Object.values(ExitCode) as number[];
    const code = (valid.includes(res.code) ? res.code : ExitCode.TRANSPORT) as ExitCodeValue;
    const [msg, ...rest] = res.stderr.trim().split("\nHINT: ");
    return new WalmgrError(`on ${host}: ${msg || `the helper exited ${res.code}`}`, code, rest.join(" ") || undefined);
  }

  /** Starts a helper session (one ssh process). */
  async session(): Promise<HelperSession> {
    await this.prepare();
    return new HelperSession(this);
  }

  /**
   * One request in a session of its own, synchronously, for signal handlers (bounded by the
   * timeout): true when the helper answered ok.
   */
  requestSync(verb: HelperVerb, args: string[]): boolean {
    const res = spawnSync("ssh", this.helperArgs(), {
      input: Buffer.concat([helloRequest(), encodeJson("H", { v: verb, a: args })]),
      stdio: ["pipe", "pipe", "pipe"],
      timeout: Math.max(30, this.opts.timeout * 3) * 1000,
    });
    if (res.status !== 0 || !Buffer.isBuffer(res.stdout)) return false;
    const [hello, answer] = headersOf(res.stdout);
    const theirs = hello?.ok === 1 ? readHello(hello.r) : undefined;
    return theirs !== undefined && helloAgrees(theirs, helloOf()) && answer?.ok === 1;
  }
}

/** The hello the master sends first (protocol.ts). */
function helloRequest(): Buffer {
  return encodeJson("H", { v: HELLO_VERB, a: [], h: helloOf() });
}

/** The headers in a whole helper output (after its magic); what does not parse ends the list. */
function headersOf(out: Buffer): Record<string, unknown>[] {
  const magic = Buffer.from(HELPER_MAGIC, "latin1");
  if (!out.subarray(0, magic.length).equals(magic)) return [];
  const found: Record<string, unknown>[] = [];
  for (let off = magic.length; off + 5 <= out.length;) {
    const type = out.toString("latin1", off, off + 1);
    const len = out.readUInt32BE(off + 1);
    if (off + 5 + len > out.length) break;
    if (type === "H") {
      try {
        found.push(JSON.parse(out.toString("utf8", off + 5, off + 5 + len)) as Record<string, unknown>);
      } catch {
        break;
      }
    }
    off += 5 + len;
  }
  return found;
}

/** A request's data may move no slower than this (bytes per second) on top of its base budget. */
export const MIN_RATE = 64 * 1024;

/** Once ssh exited, how long its pipes may stay open (a shared master may hold them) before we let go. */
const CLOSE_GRACE_MS = 1000;

/** How long a master we stop gets for SIGTERM (it removes its socket) before SIGKILL. */
const STOP_GRACE_MS = 1000;

/** When process `pid` started (clock ticks since boot, /proc/PID/stat), or undefined. */
function startTicks(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    const t = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    return Number.isFinite(t) ? t : undefined;
  } catch {
    return undefined;
  }
}

/** Is `pid` still running (a zombie waiting for its parent is not)? */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "latin1");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
}

/**
 * A pause that keeps the process alive: an unref'd one would let Node exit (with status 0!) in
 * the middle of a teardown once ssh and its pipes are gone and nothing else is pending.
 */
function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** SIGTERM (ssh then removes its control socket), SIGKILL after STOP_GRACE_MS. */
async function stopProcess(pid: number): Promise<void> {
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  for (let waited = 0; waited < STOP_GRACE_MS && alive(pid); waited += 50) await delay(50);
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // gone
  }
}

/** An answer: its result, and its body when it has one (read it to the end before the next request). */
export interface Answered {
  r: unknown;
  body?: AsyncGenerator<Buffer, unknown>;
}

export interface RequestOpts {
  /** A body to send with the request. */
  body?: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>;
}

/**
 * The master's end of one helper session: requests go one at a time (a second waits for the
 * first, including its answer's body). Any broken stream ends the session: ssh is killed and
 * the error says what happened, from ssh's exit and stderr where that says more.
 *
 * The session starts with the hello (protocol.ts), written before anything is read: a
 * helper of another protocol or request table is a TransportError naming both versions, before
 * any request runs.
 *
 * Every request is bounded as a whole: its answer (and its answer's body) must be complete within
 * ssh_timeout of its start, plus one second per MIN_RATE bytes its bodies moved (the session
 * start before it, ssh's connection, login and the hello, gets twice ssh_timeout); a long request (tree hashes, fsyncs, removals) gets
 * ssh_timeout more from each progress frame that reports more items done. Bytes alone never
 * extend it by more than their share, so a helper that trickles, or announces a frame longer
 * than what it sends and stalls, times out like one that says nothing. On time-out the session
 * is torn down at once: our ssh is killed, and so is the shared connection's master when this
 * session's ssh started it (it holds the session's pipes as long as the helper stays); we do not
 * wait for the pipes beyond CLOSE_GRACE_MS.
 */
export class HelperSession {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly reader: FrameReader;
  private readonly ended: Promise<Ended>;
  /** When our ssh started (clock ticks since boot): a master younger than it is this session's. */
  private readonly childStart: number | undefined;
  private stderr = "";
  private why: string | undefined;
  private whyHint: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** When the running request's time is up (ms since the epoch), and when it started. */
  private deadlineAt = 0;
  private startedAt = 0;
  private current = "";
  private progress = 0;
  private started: Promise<void> | undefined;
  private queue: Promise<void> = Promise.resolve();
  private dead: WalmgrError | undefined;
  private busy = 0;
  private tornDown: Promise<void> | undefined;

  constructor(readonly transport: SshTransport) {
    this.child = spawn("ssh", transport.helperArgs(), { stdio: ["pipe", "pipe", "pipe"] });
    this.childStart = startTicks(this.child.pid);
    const spawnError = new Promise<Ended>((resolve) =>
      this.child.once("error", (e) => {
        this.why = `cannot run ssh: ${e.message}`;
        resolve({ code: null, signal: null, stderr: "" });
      }),
    );
    const closed = new Promise<void>((resolve) => this.child.once("close", () => resolve()));
    const exited = new Promise<Ended>((resolve) =>
      this.child.once("exit", (code, signal) => resolve({ code, signal, stderr: "" })),
    ).then(async (e) => {
      // ssh is gone; its last words on stderr come with the pipes' end. A shared connection's
      // master that took the pipes over for this session may hold them as long as the helper
      // stays: wait a moment, not for that.
      await Promise.race([closed, delay(CLOSE_GRACE_MS)]);
      this.release();
      return { ...e, stderr: this.stderr };
    });
    this.ended = Promise.race([spawnError, exited]).then((e) => {
      this.disarm();
      return e;
    });
    this.child.stdin.on("error", () => undefined); // EPIPE when ssh dies: reported by its exit
    this.child.stdout.on("error", () => undefined);
    this.child.stderr.on("error", () => undefined);
    this.child.stderr.on("data", (c: Buffer) => {
      if (this.stderr.length < 65536) this.stderr += c.toString("utf8");
    });
    this.reader = new FrameReader(this.child.stdout, `the helper on ${transport.opts.host}`);
    // The hello waits in the pipe until the helper reads it; its answer comes right after the
    // magic: no round trip of its own.
    this.child.stdin.write(helloRequest());
    this.idle();
  }

  /** False once a stream failure ended this session (the next request needs a new one). */
  get alive(): boolean {
    return this.dead === undefined;
  }

  /**
   * True when this session ended because a request ran out of time or the helper is of another
   * build: a new session right away would likely end the same way.
   */
  get hopeless(): boolean {
    return this.whyHint !== undefined || this.dead instanceof VersionMismatchError;
  }

  private get host(): string {
    return this.transport.opts.host;
  }

  private get timeoutMs(): number {
    return Math.max(0.1, this.transport.opts.timeout) * 1000;
  }

  /** Starts a clock of `times` ssh_timeout for `what` (the session start, or a request). */
  private arm(what: string, times: number): void {
    this.current = what;
    this.progress = 0;
    this.startedAt = Date.now();
    this.deadlineAt = this.startedAt + this.timeoutMs * times;
    this.schedule();
  }

  /** `bytes` of a body moved: the deadline grows by their share at MIN_RATE. */
  private moved(bytes: number): void {
    this.deadlineAt += (bytes * 1000) / MIN_RATE;
  }

  /** A progress frame: more items done renews the budget (ssh_timeout from now). */
  private progressed(done: number): void {
    if (done <= this.progress) return;
    this.progress = done;
    this.deadlineAt = Math.max(this.deadlineAt, Date.now() + this.timeoutMs);
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.expire(), Math.max(0, this.deadlineAt - Date.now()));
  }

  private expire(): void {
    this.timer = undefined;
    if (this.busy === 0 || this.dead !== undefined) return;
    if (Date.now() < this.deadlineAt) return this.schedule(); // extended meanwhile
    const took = Math.round((Date.now() - this.startedAt) / 1000);
    const t = this.transport.opts.timeout;
    this.why = `${this.current} got no complete answer within ${took} s (ssh_timeout = ${t} bounds each request as a whole, plus 1 s per ${MIN_RATE >> 10} KiB of data it carries, and the session start at twice that); the session was torn down`;
    this.whyHint = `the helper on ${this.host} stalled, or the connection to it hangs: look at the slave host (its load, its disk, the walmgr log there); raise ssh_timeout if the slave host is just slow`;
    void this.teardown(true);
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** Lets go of our ends of ssh's pipes (whoever holds the other ends). */
  private release(): void {
    this.child.stdin.destroy();
    this.child.stdout.destroy();
    this.child.stderr.destroy();
  }

  /**
   * Ends the session now: our ssh is killed; with `stopMaster`, so is the shared connection's
   * master when this session's ssh started it (ssh forks the master off and detaches it, so it
   * is known by its socket, and as ours by having started after our ssh); our pipe ends are let
   * go of after CLOSE_GRACE_MS at most. A master that was there before stays: other commands
   * share it.
   */
  private teardown(stopMaster: boolean): Promise<void> {
    this.tornDown ??= (async (): Promise<void> => {
      const master = stopMaster && this.childStart !== undefined ? this.transport.masterPid() : undefined;
      const ours =
        master !== undefined &&
        master !== this.child.pid &&
        (startTicks(master) ?? -1) >= (this.childStart ?? Infinity);
      try {
        this.child.kill("SIGKILL");
      } catch {
        // gone
      }
      if (ours) await stopProcess(master);
      await Promise.race([this.ended, delay(CLOSE_GRACE_MS)]);
      this.release();
    })();
    return this.tornDown;
  }

  /** Between requests the session must not keep the process alive. */
  private idle(): void {
    this.child.unref();
    (this.child.stdin as unknown as { unref?: () => void }).unref?.();
    (this.child.stdout as unknown as { unref?: () => void }).unref?.();
    (this.child.stderr as unknown as { unref?: () => void }).unref?.();
  }

  private active(): void {
    this.child.ref();
    (this.child.stdin as unknown as { ref?: () => void }).ref?.();
    (this.child.stdout as unknown as { ref?: () => void }).ref?.();
    (this.child.stderr as unknown as { ref?: () => void }).ref?.();
  }

  /** Turns a stream failure into the error worth reporting, and ends the session. */
  private async broken(err: unknown): Promise<WalmgrError> {
    if (this.dead) return this.dead;
    // Killed here only when still running: how it ended by itself says more than our kill.
    const running = this.child.exitCode === null && this.child.signalCode === null;
    if (running) await this.teardown(false);
    const ended = await this.ended;
    if (this.dead) return this.dead;
    const fromSsh = !running || this.why !== undefined ? this.transport.failure(ended, this.why) : undefined;
    let e: WalmgrError;
    if (err instanceof VersionMismatchError) e = err;
    else if (err instanceof ProtocolError && /before the protocol started/.test(err.message)) e = err;
    else if (fromSsh)
      e = this.why !== undefined && this.whyHint ? new TransportError(fromSsh.message, this.whyHint) : fromSsh;
    else if (err instanceof WalmgrError) e = err;
    else e = new TransportError((err as Error)?.message ?? String(err));
    if (e instanceof TransportError && !e.message.includes(this.host)) {
      e = new TransportError(`ssh to ${this.host}: ${e.message}`, e.hint ?? this.transport.hint());
    }
    this.dead = e;
    return e;
  }

  /** Waits for the magic and the helper's hello; refuses a helper that does not agree with us. */
  private start(): Promise<void> {
    this.started ??= (async (): Promise<void> => {
      const got = await this.reader.expectMagic();
      if (got === "eof") {
        const ended = await this.ended;
        throw (
          this.transport.failure(ended, this.why) ??
          new TransportError(
            `the helper ${this.transport.opts.remoteBin} on ${this.host} ended without answering`,
            "is the slave's walmgr-ts the same version as the master's? run `wal-ctl --version` on both",
          )
        );
      }
      const a = await this.reader.header();
      if (a === undefined) throw new ProtocolError(`the helper on ${this.host} ended the session`);
      const theirs = a.ok === 1 ? readHello(a.r) : undefined;
      const own = helloOf();
      if (theirs !== undefined && helloAgrees(theirs, own)) return;
      throw new VersionMismatchError(mismatch(this.host, own, theirs, a), MISMATCH_HINT);
    })();
    return this.started;
  }

  /** Sends one request and waits for its answer. An `{ok: 0}` answer is thrown as its error. */
  request(verb: HelperVerb, args: string[], o: RequestOpts = {}): Promise<Answered> {
    const run = async (): Promise<{ answered: Answered; done: Promise<void> }> => {
      if (this.dead) throw this.dead;
      this.busy++;
      this.active();
      const what = `the request \`${`${verb} ${args[0] ?? ""}`.trim()}\``;
      if (this.started === undefined) this.arm(`the session start (ssh, login, the helper's hello) for ${what}`, 2);
      let release!: () => void;
      const done = new Promise<void>((r) => (release = r));
      let finished = false;
      const finish = (): void => {
        if (finished) return;
        finished = true;
        this.busy--;
        this.disarm();
        if (this.busy === 0) this.idle();
        release();
      };
      let a: Record<string, unknown> | undefined;
      let localError: unknown;
      try {
        await this.start();
        this.arm(what, 1);
        const req = encodeJson("H", { v: verb, a: args, ...(o.body ? { b: 1 } : {}) });
        // The answer is awaited while the body goes out: the helper answers only after the
        // body, but a helper that died shows up as the end of its stdout.
        const answerP = this.reader.header((n) => this.progressed(n));
        answerP.catch(() => undefined);
        await writeOut(this.child.stdin, req);
        if (o.body) {
          try {
            await sendBody(this.child.stdin, o.body, (n) => this.moved(n));
          } catch (err) {
            if (err instanceof ProtocolError) throw err;
            localError = err; // the A frame went out: the helper discards the body and answers
          }
        }
        a = await answerP;
        if (a === undefined) throw new ProtocolError(`the helper on ${this.host} ended the session`);
      } catch (err) {
        const e = await this.broken(err);
        finish();
        throw e;
      }
      if (localError !== undefined || a.ok !== 1) {
        finish();
        if (localError !== undefined) throw localError as Error;
        const code = typeof a.code === "number" ? a.code : ExitCode.IO;
        const msg = typeof a.msg === "string" ? a.msg : JSON.stringify(a);
        if (code === ExitCode.USAGE) {
          // The helper did not take a request this master made: the two ends are not the same
          // build. Never the local command's usage error (exit 2).
          throw new TransportError(`on ${this.host}: ${msg} (version mismatch?)`, MISMATCH_HINT);
        }
        throw answerError({ code, msg, ...(typeof a.hint === "string" ? { hint: a.hint } : {}) }, `on ${this.host}`);
      }
      if (a.b !== 1) {
        finish();
        return { answered: { r: a.r }, done };
      }
      return { answered: { r: a.r, body: this.answerBody(verb, args[0] ?? "", finish) }, done };
    };
    const p = this.queue.then(run);
    this.queue = p.then(
      (x) => x.done,
      () => undefined,
    );
    return p.then((x) => x.answered);
  }

  private async *answerBody(verb: string, what: string, finish: () => void): AsyncGenerator<Buffer, unknown> {
    let complete = false;
    try {
      const gen = this.reader.body(`${verb} ${what} from ${this.host}`);
      for (;;) {
        const r = await gen.next();
        if (r.done) {
          complete = true;
          return r.value;
        }
        this.moved(r.value.length);
        yield r.value;
      }
    } catch (err) {
      complete = true; // broken or failed: already accounted for
      if (err instanceof ProtocolError) throw await this.broken(err);
      throw err;
    } finally {
      // A reader that gave up midway leaves the rest of the body in the pipe, where the next
      // answer would be looked for: this session cannot go on (the driver starts a new one).
      if (!complete) await this.broken(new ProtocolError(`${verb} ${what}: the reader stopped before the end`));
      finish();
    }
  }
}

/** The message for a helper whose hello does not agree with ours (or that has none). */
function mismatch(host: string, own: Hello, theirs: Hello | undefined, answer: Record<string, unknown>): string {
  const ours = `this master speaks ${describeHello(own)}`;
  if (theirs !== undefined) {
    return `version mismatch: slave host ${host} runs walmgr-ts helper ${describeHello(theirs)}, ${ours}`;
  }
  const said = typeof answer.msg === "string" ? answer.msg : JSON.stringify(answer).slice(0, 200);
  if (answer.ok === 0 && /unknown verb/.test(said)) {
    return `version mismatch: slave host ${host} runs walmgr-ts helper protocol 1 (an older version, which does not report it; its answer to the hello: ${said}), ${ours}`;
  }
  return `version mismatch: slave host ${host} runs a walmgr-ts helper that did not answer the hello as protocol 2 and later do (it answered ${JSON.stringify(said)}), ${ours}`;
}
