/**
 * The remote driver: the slave directory on another host, reached with ssh (and rsync for base
 * backups, where installed on both sides). Every operation is a request to our own helper on the
 * slave (helper.ts), over one ssh session per command (transport.ts, protocol in
 * protocol.ts), which does it with the local driver there: so a WAL file is stored under
 * a temporary name, fsynced, renamed and its folder fsynced on the slave, which rsync alone
 * would not do. Data travels as a body with its length and sha256, so a connection cut
 * mid-stream never leaves a file under its final name.
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { join, posix } from "node:path";
import { IoError, isErrno, ioError, TransportError } from "../../errors";
import { Readable, Writable } from "node:stream";
import type {
  FileInfo,
  ReadStream,
  StorageDriver,
  StorageFeatures,
  TreeProgress,
  TreeStats,
  WriteHandle,
  WriteOptions,
} from "../driver";
import type { Manifest } from "../manifest";
import type { HelperVerb } from "./verbs";
import { isSafeName, isSafeRelPath } from "../rel-path";
import { walkTreeSync } from "../tree-walk";
import { HelperSession, lastLines, SshTransport, type RequestOpts, type SshOptions } from "./transport";

export { remoteCommand, type SshOptions } from "./transport";

const BAD_CHARS = /[\0\n\r]/;

/** The TransportError for an answer of the helper that no real helper gives. */
function badAnswer(where: string, what: string): TransportError {
  return new TransportError(
    `${where}: the helper answered ${what}: refusing the answer (nothing was done with it)`,
    "the program answering on the slave is not a walmgr-ts helper, or is damaged: check slave_wal_ctl and who can change it",
  );
}

/**
 * A `list` answer of the helper, checked: an array of plain names (`isSafeName`). A name with a
 * `/`, or `.`, `..` or empty, would make a caller's join name another folder than the one
 * listed (purge, leftovers, sets): the whole answer is refused (exit 6).
 */
export function checkedListing(names: unknown, where: string): string[] {
  if (!Array.isArray(names)) throw badAnswer(where, "something other than a list of names");
  for (const n of names as unknown[]) {
    if (typeof n !== "string" || !isSafeName(n)) throw badAnswer(where, `the name ${JSON.stringify(n)}`);
  }
  return names as string[];
}

/**
 * A `manifest` answer of the helper, checked: file names relative to the tree (`isSafeRelPath`),
 * each with a size and a sha256. The manifest is written into the set, and restore and verify
 * join its names to the set's folder.
 */
export function checkedManifest(m: unknown, where: string): Manifest {
  const files = (m as { files?: unknown } | null)?.files;
  if (typeof files !== "object" || files === null || Array.isArray(files))
    throw badAnswer(where, "a manifest without 'files'");
  for (const [rel, e] of Object.entries(files as Record<string, unknown>)) {
    if (!isSafeRelPath(rel)) throw badAnswer(where, `the file name ${JSON.stringify(rel)}, which leaves the tree`);
    const entry = e as { size?: unknown; sha256?: unknown } | null;
    if (typeof entry?.size !== "number" || typeof entry.sha256 !== "string")
      throw badAnswer(where, `the entry ${JSON.stringify(rel)} without a size or a sha256`);
  }
  return m as Manifest;
}

export class SshDriver implements StorageDriver {
  readonly description: string;
  readonly transport: SshTransport;
  private session: Promise<HelperSession> | undefined;
  /** The last hopeless session's end (a time-out, a version mismatch): holds back new ones. */
  private heldBack: { at: number; error: Error } | undefined;

  constructor(readonly opts: SshOptions) {
    this.transport = new SshTransport(opts);
    this.description = `ssh ${opts.host}`;
  }

  /**
   * One request over this command's session (started on first use; a broken one is replaced).
   * After a session ended hopelessly (a request timed out, the helper is of another build),
   * requests within ssh_timeout fail at once with its error instead of starting a session that
   * would likely end the same way: a command fails within one bound, not one per request, and a
   * long-lived process (the sync daemon) tries again later.
   */
  private async request(verb: HelperVerb, args: string[], o: RequestOpts = {}) {
    if (this.heldBack !== undefined && Date.now() - this.heldBack.at < this.opts.timeout * 1000) {
      throw this.heldBack.error;
    }
    this.session ??= this.transport.session();
    const s = await this.session;
    try {
      return await s.request(verb, args, o);
    } catch (err) {
      if (!s.alive && this.session !== undefined && (await this.session) === s) {
        this.session = undefined; // the next request starts a new session
        if (s.hopeless) this.heldBack = { at: Date.now(), error: err as Error };
      }
      throw err;
    }
  }

  private async result<T>(verb: HelperVerb, args: string[], o: RequestOpts = {}): Promise<T> {
    return (await this.request(verb, args, o)).r as T;
  }

  /** Synchronous request, for signal handlers (bounded by the timeout). */
  callSync(verb: HelperVerb, args: string[]): boolean {
    return this.transport.requestSync(verb, args);
  }

  readonly features: StorageFeatures = {
    writeAt: { writeAt: (path, offset, data) => this.writeAt(path, offset, data) },
    tree: {
      manifest: (dir) => this.manifest(dir),
      removeTree: (path) => this.removeTree(path),
      renameDir: (from, to) => this.rename(from, to),
      putTree: (src, dest, keep, opts) => this.putTree(src, dest, keep, opts),
    },
    releaseNow: {
      releaseLockSync: (lockPath, pid, host) => this.releaseLockSync(lockPath, pid, host),
      removeTreeSync: (path) => this.removeTreeSync(path),
    },
  };

  /**
   * One request (put) whose body is what is written: the helper hashes it into a temp file
   * beside `path`, checks length and sha256 against the body's end frame, fsyncs it and puts it
   * in place (exclusively: `commit` is false when the name exists). The helper that writes the
   * temp lives until it is committed or removed, so the temp carries a live writer's name the
   * whole time and the slave's stale-temp cleanup never takes it. `abort` (or a cut connection)
   * ends the body with an abort frame or not at all: nothing appears under `path`.
   */
  newWrite(path: string, opts: WriteOptions = {}): Promise<WriteHandle> {
    const args = [path, opts.exclusive ? "1" : "0", opts.padTo === undefined ? "-" : String(opts.padTo)];
    return Promise.resolve(
      new SshWrite((body) => this.result<{ stored: boolean }>("put", args, { body }).then((r) => r.stored)),
    );
  }

  async writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    await this.request("writeat", [path, String(offset)], { body: [Buffer.from(data)] });
  }

  /**
   * The file as a stream of the helper's answer body (undefined: not there). Read it to its end
   * or destroy it: a reader that stops midway ends this session (the next request starts one).
   */
  async newRead(path: string): Promise<ReadStream | undefined> {
    const a = await this.request("read", [path]);
    if (a.r === null || a.body === undefined) return undefined;
    return Readable.from(a.body, { objectMode: false, highWaterMark: 1 });
  }

  async info(path: string): Promise<FileInfo | undefined> {
    return (await this.result<FileInfo | null>("stat", [path])) ?? undefined;
  }

  async pathCreate(path: string): Promise<void> {
    await this.request("mkdir", [path]);
  }

  /** The manifest the helper built of `dir`; its file names are checked (`checkedManifest`). */
  async manifest(dir: string): Promise<Manifest> {
    const m = await this.result<unknown>("manifest", [dir]);
    if (!m) throw new IoError(`${this.description}: no backup tree at ${dir}`);
    return checkedManifest(m, `${this.description} (manifest of ${dir})`);
  }

  /** The names in `dir` as the helper lists them; each is checked (`checkedListing`) before any caller joins it to a path. */
  async list(dir: string): Promise<string[] | undefined> {
    const names = await this.result<unknown>("list", [dir]);
    return names === null || names === undefined
      ? undefined
      : checkedListing(names, `${this.description} (listing of ${dir})`);
  }

  async remove(path: string): Promise<boolean> {
    return (await this.result<{ removed: boolean }>("remove", [path])).removed;
  }

  async removeTree(path: string): Promise<void> {
    await this.request("rmtree", [path]);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.request("rename", [from, to]);
  }

  /** Synchronously removes `lockPath` on the slave if it names this process (signal-time cleanup). */
  releaseLockSync(lockPath: string, pid: number, host: string): void {
    this.callSync("unlock", [lockPath, String(pid), host]);
  }

  removeTreeSync(path: string): void {
    this.callSync("rmtree", [path]);
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
   *
   * `onProgress` hears of each file rsync reports done (sent, or "is uptodate": taken from the
   * basis), with its size from our own listing; in the framed stream, of each chunk sent.
   */
  async putTree(
    src: string,
    dest: string,
    keep: (rel: string, isDir: boolean) => boolean,
    opts: { basis?: string; trustMtimeBefore?: number | undefined; onProgress?: TreeProgress } = {},
  ): Promise<TreeStats> {
    const entries = listTree(src, keep);
    const probe = await this.result<{ rsync: boolean }>("probe", []);
    const useRsync = probe.rsync && process.env.WALMGR_NO_RSYNC !== "1" && localRsync();
    if (!useRsync) return this.streamTree(src, dest, entries, opts.onProgress);
    let basis: string | undefined;
    if (opts.basis !== undefined && (await this.info(opts.basis))?.isDirectory) {
      basis = posix.isAbsolute(opts.basis) ? opts.basis : posix.relative(dest, opts.basis);
    }
    const progress = opts.onProgress && rsyncProgress(entries, opts.onProgress);
    let sent: number;
    if (basis === undefined) {
      sent = await this.rsync(src, dest, entries, undefined, false, progress);
    } else {
      const cutoff = opts.trustMtimeBefore ?? -Infinity;
      const trusted = entries.filter((e) => e.isDir || e.mtimeMs < cutoff);
      const compared = entries.filter((e) => !e.isDir && !(e.mtimeMs < cutoff));
      // The first run creates every folder; the second only fills in files.
      sent = await this.rsync(src, dest, trusted, basis, false, progress);
      if (compared.length > 0) sent += await this.rsync(src, dest, compared, basis, true, progress);
    }
    await this.request("fsynctree", [dest]);
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
    return ["ssh", ...this.transport.sshArgs()].map((w) => (/^[A-Za-z0-9_=./:,+-]+$/.test(w) ? w : `"${w}"`)).join(" ");
  }

  private async rsync(
    src: string,
    dest: string,
    entries: TreeEntry[],
    basis: string | undefined,
    byContent: boolean,
    progress?: (line: string) => void,
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
      // One stdout line per file done: "SIZE NAME" when sent, "NAME is uptodate" when taken
      // from the basis (name2), names unescaped (-8); rsync 3.1 and later.
      ...(progress ? ["--info=name2", "--out-format=%l %n", "-8"] : []),
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
      // Read line by line, keeping nothing but the count of bytes sent (--stats): with a line
      // per file, the whole output of a big tree would not be small.
      let sent = 0;
      let partial = "";
      const line = (l: string): void => {
        const m = /^Total bytes sent:\s*([\d,.]+)/.exec(l);
        if (m) sent = Number((m[1] ?? "0").replace(/[,.]/g, ""));
        else progress?.(l);
      };
      let err = "";
      child.stdout.setEncoding("utf8");
      child.stdout.on("data", (c: string) => {
        const lines = (partial + c).split("\n");
        partial = lines.pop() ?? "";
        for (const l of lines) line(l);
      });
      child.stderr.on("data", (c: Buffer) => {
        if (err.length < 65536) err += c.toString("utf8");
      });
      child.stdin.on("error", () => undefined);
      child.on("error", (e) => reject(new TransportError(`cannot run rsync: ${e.message}`, "install rsync")));
      child.on("close", (code, signal) => {
        // 24: files vanished while copying (a running database removes files; replay repairs that).
        if (code === 0 || code === 24) {
          if (partial !== "") line(partial);
          return resolve(sent);
        }
        const what = code === null ? `was killed by ${signal ?? "a signal"}` : `exited ${code}`;
        const msg = `rsync to ${this.opts.host}:${dest} ${what}: ${lastLines(err)}`;
        // 23: some files could not be transferred (permissions, disk full) — an I/O problem.
        if (code === 23 || code === 11)
          return reject(new IoError(msg, "check the free space and the owner of the slave directory"));
        reject(new TransportError(msg, this.transport.hint()));
      });
      child.stdin.end(list);
    });
  }

  /** Fallback without rsync: the tree as records in one request's body (see helper.ts). */
  private async streamTree(
    src: string,
    dest: string,
    entries: TreeEntry[],
    onProgress?: TreeProgress,
  ): Promise<TreeStats> {
    const record = (h: object): Buffer => {
      const j = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(4);
      len.writeUInt32BE(j.length);
      return Buffer.concat([len, j]);
    };
    const stats: TreeStats = { files: 0, bytes: 0 };
    let sent = 0;
    const feed = async function* (): AsyncGenerator<Buffer> {
      for (const e of entries) {
        if (e.isDir) {
          yield record({ p: e.rel, d: true });
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
          yield record({ p: e.rel, s: size });
          let off = 0;
          while (off < size) {
            const buf = Buffer.allocUnsafe(Math.min(1 << 20, size - off));
            const n = readSync(fd, buf, 0, buf.length, off);
            if (n === 0) {
              // Shrank while copying: pad (like tar); WAL replay repairs the file.
              yield Buffer.alloc(size - off);
              break;
            }
            off += n;
            sent += n;
            yield buf.subarray(0, n);
            onProgress?.(n, 0);
          }
          stats.files++;
          stats.bytes += size;
          onProgress?.(0, 1);
        } finally {
          closeSync(fd);
        }
      }
      yield record({ end: true });
    };
    await this.request("puttree", [dest], { body: feed() });
    return { ...stats, sent };
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

/**
 * A reader of rsync's per-file lines (see `rsync`'s --out-format) that tells `onProgress` of
 * each file of `entries` done, with its size as listed (a file rsync took from the basis sent
 * nothing, but it is done). Each file counts once, over both runs; other lines are ignored.
 */
function rsyncProgress(entries: TreeEntry[], onProgress: TreeProgress): (line: string) => void {
  const size = new Map<string, number>();
  for (const e of entries) if (!e.isDir) size.set(e.rel, e.size);
  const done = (rel: string): boolean => {
    const n = size.get(rel);
    if (n === undefined) return false;
    size.delete(rel);
    onProgress(n, 1);
    return true;
  };
  return (line) => {
    const sent = /^\d+ (.+)$/.exec(line);
    if (sent?.[1] !== undefined && done(sent[1])) return;
    if (line.endsWith(" is uptodate")) done(line.slice(0, -" is uptodate".length));
  };
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

type Queued = { kind: "data"; chunk: Buffer; cb: (err?: Error | null) => void } | { kind: "end" } | { kind: "abort" };

/**
 * The writer `SshDriver.newWrite` returns: a Writable whose chunks become the body of one put
 * request, one at a time; a chunk's write callback fires once the pipe to ssh has taken it, so
 * the caller may reuse its buffer (nothing is copied or piled up: constant memory).
 */
class SshWrite extends Writable implements WriteHandle {
  private readonly stored: Promise<boolean>;
  private queued: Queued | undefined;
  private waiting: ((q: Queued) => void) | undefined;
  private failed: Error | undefined;

  constructor(send: (body: AsyncIterable<Buffer>) => Promise<boolean>) {
    super({ highWaterMark: 0 });
    this.stored = send(this.body());
    this.stored.catch((err: unknown) => {
      // The request failed before taking what is queued: fail that write instead of hanging it.
      this.failed = err instanceof Error ? err : new Error(String(err));
      const q = this.queued;
      this.queued = undefined;
      if (q?.kind === "data") q.cb(this.failed);
    });
  }

  private give(q: Queued): void {
    const w = this.waiting;
    this.waiting = undefined;
    if (w) w(q);
    else this.queued = q;
  }

  private take(): Promise<Queued> {
    const q = this.queued;
    this.queued = undefined;
    return q ? Promise.resolve(q) : new Promise((resolve) => (this.waiting = resolve));
  }

  private async *body(): AsyncGenerator<Buffer> {
    for (;;) {
      const q = await this.take();
      if (q.kind === "end") return;
      if (q.kind === "abort") throw new IoError("the write was abandoned before its end");
      let sent = false;
      try {
        yield q.chunk;
        sent = true;
      } finally {
        // Not sent: the request failed; its error (how the connection or helper ended) is the
        // one to report, not a generic one.
        if (sent) q.cb(null);
        else
          this.stored.then(
            () => q.cb(new IoError("the write ended before its body was sent")),
            (err: unknown) => q.cb(err instanceof Error ? err : new Error(String(err))),
          );
      }
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.failed) cb(this.failed);
    else this.give({ kind: "data", chunk, cb });
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.give({ kind: "end" });
    cb();
  }

  async commit(): Promise<boolean> {
    if (!this.writableEnded) this.end();
    return this.stored;
  }

  async abort(): Promise<void> {
    this.give({ kind: "abort" });
    await this.stored.catch(() => undefined);
    this.destroy();
  }
}
