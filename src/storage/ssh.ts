/**
 * The remote driver: the slave directory on another host, reached with ssh (and rsync for base
 * backups, where installed on both sides). Every operation is a request to our own helper on the
 * slave (remote-helper.ts), over one ssh session per command (ssh-transport.ts, protocol in
 * helper-protocol.ts), which does it with the local driver there: so a WAL file is stored under
 * a temporary name, fsynced, renamed and its folder fsynced on the slave, which rsync alone
 * would not do. Data travels as a body with its length and sha256, so a connection cut
 * mid-stream never leaves a file under its final name.
 */
import { spawn, spawnSync } from "node:child_process";
import { closeSync, createReadStream, fstatSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join, posix } from "node:path";
import { IoError, isErrno, ioError, TransportError } from "../errors";
import type { FileInfo, StorageDriver, TreeStats } from "./driver";
import type { Manifest } from "./manifest";
import type { HelperVerb } from "./helper-verbs";
import { HelperSession, lastLines, SshTransport, type RequestOpts, type SshOptions } from "./ssh-transport";

export { remoteArg, remoteCommand, type SshOptions } from "./ssh-transport";

const BAD_CHARS = /[\0\n\r]/;

export class SshDriver implements StorageDriver {
  readonly description: string;
  readonly transport: SshTransport;
  private session: Promise<HelperSession> | undefined;

  constructor(readonly opts: SshOptions) {
    this.transport = new SshTransport(opts);
    this.description = `ssh ${opts.host}`;
  }

  /** ssh's own options (see SshTransport.sshArgs). */
  sshArgs(): string[] {
    return this.transport.sshArgs();
  }

  private smallMs(): number {
    return Math.max(30, this.opts.timeout * 3) * 1000;
  }

  /** One request over this command's session (started on first use; a broken one is replaced). */
  private async request(verb: HelperVerb, args: string[], o: RequestOpts = {}) {
    this.session ??= this.transport.session();
    const s = await this.session;
    try {
      return await s.request(verb, args, { idleMs: this.smallMs(), ...o });
    } catch (err) {
      if (!s.alive && this.session !== undefined && (await this.session) === s) {
        this.session = undefined; // the next request starts a new session
      }
      throw err;
    }
  }

  private async result<T>(verb: HelperVerb, args: string[], o: RequestOpts = {}): Promise<T> {
    return (await this.request(verb, args, o)).r as T;
  }

  /** Ends the session (the helper exits); the process may also just exit. */
  async close(): Promise<void> {
    const s = this.session;
    this.session = undefined;
    if (s) await (await s).close();
  }

  /** Synchronous request, for signal handlers (bounded by the timeout). */
  callSync(verb: HelperVerb, args: string[]): boolean {
    return this.transport.requestSync(verb, args);
  }

  async publish(path: string, data: Uint8Array, opts: { exclusive?: boolean; padTo?: number } = {}): Promise<boolean> {
    const r = await this.result<{ stored: boolean }>(
      "put",
      [path, opts.exclusive ? "1" : "0", opts.padTo === undefined ? "-" : String(opts.padTo)],
      { body: [Buffer.from(data)] },
    );
    return r.stored;
  }

  /**
   * One request (put) streams the file, and the helper checks its length and sha256, fsyncs it
   * and puts it in place: the helper that writes the temp file lives until it is committed or
   * removed, so the temp carries a live writer's name the whole time and the slave's stale-temp
   * cleanup never takes it. The sha256 is the one of the bytes sent (the file is read once).
   */
  async publishFile(
    path: string,
    src: string,
    opts: { exclusive?: boolean } = {},
  ): Promise<{ sha256: string; bytes: number; stored: boolean }> {
    const rs = createReadStream(src, { highWaterMark: 1 << 20 });
    const opened = new Promise<void>((resolve, reject) => {
      rs.once("open", () => resolve());
      rs.once("error", (e) => reject(ioError("cannot read", src, e)));
    });
    await opened;
    const reading = (async function* () {
      try {
        for await (const c of rs) yield c as Buffer;
      } catch (err) {
        throw ioError("cannot read", src, err);
      }
    })();
    const r = await this.result<{ stored: boolean; bytes: number; sha256: string }>(
      "put",
      [path, opts.exclusive ? "1" : "0", "-"],
      { body: reading },
    );
    return { sha256: r.sha256, bytes: r.bytes, stored: r.stored };
  }

  async writeAt(path: string, offset: number, data: Uint8Array): Promise<void> {
    await this.request("writeat", [path, String(offset)], { body: [Buffer.from(data)] });
  }

  /** The file's content as a stream of chunks (undefined: not there); read it to its end. */
  async readStream(path: string): Promise<AsyncGenerator<Buffer, unknown> | undefined> {
    const a = await this.request("read", [path]);
    return a.r === null ? undefined : a.body;
  }

  async read(path: string): Promise<Buffer | undefined> {
    const body = await this.readStream(path);
    if (body === undefined) return undefined;
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c);
    return Buffer.concat(parts);
  }

  async stat(path: string): Promise<FileInfo | undefined> {
    return (await this.result<FileInfo | null>("stat", [path])) ?? undefined;
  }

  async manifest(dir: string): Promise<Manifest> {
    const m = await this.result<Manifest | null>("manifest", [dir]);
    if (!m) throw new IoError(`${this.description}: no backup tree at ${dir}`);
    return m;
  }

  async list(dir: string): Promise<string[] | undefined> {
    return (await this.result<string[] | null>("list", [dir])) ?? undefined;
  }

  async remove(path: string): Promise<boolean> {
    return (await this.result<{ removed: boolean }>("remove", [path])).removed;
  }

  async removeTree(path: string): Promise<void> {
    await this.request("rmtree", [path], { idleMs: undefined });
  }

  async mkdirp(path: string): Promise<void> {
    await this.request("mkdir", [path]);
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
   */
  async putTree(
    src: string,
    dest: string,
    keep: (rel: string, isDir: boolean) => boolean,
    opts: { basis?: string; trustMtimeBefore?: number | undefined } = {},
  ): Promise<TreeStats> {
    const entries = listTree(src, keep);
    const probe = await this.result<{ rsync: boolean }>("probe", []);
    const useRsync = probe.rsync && process.env.WALMGR_NO_RSYNC !== "1" && localRsync();
    if (!useRsync) return this.streamTree(src, dest, entries);
    let basis: string | undefined;
    if (opts.basis !== undefined && (await this.stat(opts.basis))?.isDirectory) {
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
    await this.request("fsynctree", [dest], { idleMs: undefined });
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
        reject(new TransportError(msg, this.transport.hint()));
      });
      child.stdin.end(list);
    });
  }

  /** Fallback without rsync: the tree as records in one request's body (see remote-helper.ts). */
  private async streamTree(src: string, dest: string, entries: TreeEntry[]): Promise<TreeStats> {
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
          }
          stats.files++;
          stats.bytes += size;
        } finally {
          closeSync(fd);
        }
      }
      yield record({ end: true });
    };
    await this.request("puttree", [dest], { body: feed(), idleMs: undefined });
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
  const walk = (rel: string): void => {
    const from = rel === "" ? src : join(src, rel);
    let names: string[];
    try {
      names = readdirSync(from);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return;
      throw ioError("cannot list", from, err);
    }
    for (const name of names) {
      const childRel = rel === "" ? name : `${rel}/${name}`;
      if (BAD_CHARS.test(childRel)) throw new IoError(`cannot copy ${join(from, name)}: its name has a line break`);
      let st;
      try {
        st = statSync(join(from, name));
      } catch (err) {
        if (isErrno(err, "ENOENT")) continue;
        throw ioError("cannot stat", join(from, name), err);
      }
      if (st.isDirectory()) {
        if (!keep(childRel, true)) continue;
        out.push({ rel: childRel, isDir: true, size: 0, mtimeMs: st.mtimeMs });
        walk(childRel);
      } else if (st.isFile() && keep(childRel, false)) {
        out.push({ rel: childRel, isDir: false, size: st.size, mtimeMs: st.mtimeMs });
      }
    }
  };
  walk("");
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
