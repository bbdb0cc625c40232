/**
 * The slave side of the ssh transport: `wal-ctl SLAVE_CONFIG xhelper`, started once per master
 * command over ssh (walmgr ran `walmgr.py slave_config xlock` and friends the same way). It
 * serves requests (protocol.ts) until the master closes its stdin; each verb
 * (verbs.ts) does one storage operation with the local driver on this host, so
 * everything the local driver promises (temp name, fsync, rename, directory fsync, 0600/0700)
 * holds on the slave too. A body that arrives cut short or damaged is never published under
 * its final name.
 *
 * The session starts with the hello (protocol.ts): until the master's hello agrees with
 * this build's, every request is refused unrun (code 6, naming both versions), so a master of
 * another build never has a request misread. Errors of one request are answered (code from the
 * one table in errors.ts) and the session goes on; a broken stream ends the session. What ends the process (a bad command line, a bad
 * SLAVE_CONFIG, a cut connection) goes through the same describeError and exit codes as every
 * executable. SLAVE_CONFIG may be "-" when the master has no slave_config.
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  closeSync,
  constants,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  readSync,
  rmdirSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { loadConfig } from "../../config/load";
import {
  describeError,
  ExitCode,
  IoError,
  ioError,
  isErrno,
  TransportError,
  UsageError,
  type ExitCodeValue,
} from "../../errors";
import { Logger, writeStderr, writeStdout } from "../../log";
import {
  commitTemp,
  createTemp,
  fsyncDir,
  inheritOwner,
  removeDurable,
  removeQuietly,
  removeStaleTemps,
  tempNameFor,
  writeAll,
  writeAtDurable,
} from "../durable";
import {
  describeHello,
  errorAnswer,
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
} from "./protocol";
import { buildManifest } from "../manifest";
import { isSafeRelPath } from "../rel-path";
import { HELPER_COMMAND, HELPER_VERBS, isHelperVerb, type HelperVerb } from "./verbs";
import { requireFeature } from "../driver";
import { LocalDriver, mkdirPrivate, openRegularFile } from "../local/driver";
import { walkTreeSync } from "../tree-walk";

interface Served {
  r: unknown;
  /** A body to send after the answer (read). */
  body?: AsyncIterable<Buffer>;
}

interface VerbContext {
  log: Logger;
  /** Called for each item (file, folder) a long request has done: sends progress frames. */
  tick: () => void;
  /** The request's body (verbs that take one); each handler reads it to its end or throws. */
  body: AsyncGenerator<Buffer, { bytes: number; sha256: string }>;
}

type Handler = (args: string[], ctx: VerbContext) => Promise<Served>;

function num(v: string | undefined, what: string): number {
  const n = Number(v);
  if (v === undefined || v === "" || !Number.isSafeInteger(n) || n < 0) {
    throw new UsageError(`helper: bad ${what} ${JSON.stringify(v)}`);
  }
  return n;
}

function nonEmpty(v: string | undefined, what: string): string {
  if (v === undefined || v === "") throw new UsageError(`helper: missing ${what}`);
  return v;
}

/** Zeros, for padding a stored partial segment to full size. */
const ZEROS = Buffer.alloc(1 << 20);

/**
 * Streams the body into a temp file beside `path` (0600 from its creation, named after this
 * helper, which lives until the temp is committed or removed), zero-pads it to `padTo`, fsyncs
 * it, and once the body's length and sha256 have checked out puts it in place (exclusively:
 * stored false when `path` exists). Temps of dead writers beside `path` are removed first.
 */
async function put(
  path: string,
  exclusive: boolean,
  padTo: number | undefined,
  body: VerbContext["body"],
): Promise<{ stored: boolean; bytes: number; sha256: string }> {
  let tmp: string | undefined;
  let fd: number | undefined;
  let failure: unknown;
  try {
    removeStaleTemps(dirname(path));
    tmp = tempNameFor(path);
    fd = createTemp(tmp);
  } catch (err) {
    failure = err;
  }
  const cleanup = (): void => {
    if (fd !== undefined) closeSync(fd);
    fd = undefined;
    if (tmp !== undefined) removeQuietly(tmp);
  };
  let sum: { bytes: number; sha256: string };
  try {
    for (;;) {
      const r = await body.next();
      if (r.done) {
        sum = r.value;
        break;
      }
      if (failure === undefined && fd !== undefined) {
        try {
          writeAll(fd, r.value);
        } catch (err) {
          failure = err; // keep reading: the session stays in step; answered below
        }
      }
    }
  } catch (err) {
    cleanup(); // cut short or damaged: nothing under the final name
    throw err;
  }
  if (failure !== undefined || fd === undefined || tmp === undefined) {
    cleanup();
    throw ioError("cannot write", path, failure);
  }
  try {
    for (let size = sum.bytes; padTo !== undefined && size < padTo;) {
      const n = Math.min(ZEROS.length, padTo - size);
      writeAll(fd, ZEROS.subarray(0, n), size);
      size += n;
    }
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    return { stored: commitTemp(tmp, path, exclusive), ...sum };
  } catch (err) {
    cleanup();
    throw ioError("cannot write", path, err);
  }
}

/** The whole body in memory (small in-place updates only: writeat). */
async function collect(body: VerbContext["body"]): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

/** The content of an open file, 1 MiB at a time; closes it at the end. */
async function* fileChunks(fd: number, path: string): AsyncGenerator<Buffer> {
  try {
    let pos = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(1 << 20);
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, pos);
      } catch (err) {
        throw ioError("cannot read", path, err);
      }
      if (n === 0) return;
      pos += n;
      yield buf.subarray(0, n);
    }
  } finally {
    closeSync(fd);
  }
}

/** fsyncs every file and folder under `root` (rsync writes but never fsyncs); `tick` per item. */
export function fsyncTree(root: string, tick: () => void = () => undefined): { files: number; bytes: number } {
  const stats = { files: 0, bytes: 0 };
  try {
    chmodSync(root, 0o700);
    walkTreeSync(
      root,
      ({ path, st }) => {
        if (!st.isFile()) return;
        const fd = openSync(path, "r");
        try {
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        stats.files++;
        stats.bytes += st.size;
        tick();
      },
      {
        skipVanished: false,
        leave: (dir) => {
          fsyncDir(dir);
          tick();
        },
      },
    );
    fsyncDir(dirname(root));
  } catch (err) {
    throw ioError("cannot fsync", root, err);
  }
  return stats;
}

/**
 * Receives a tree in the fallback format (when rsync is missing on either side), carried as
 * the request's body: records of a 4-byte big-endian header length, a JSON header
 * {p: relative path, d: folder?, s: size}, then `s` bytes of content. A header with `end`
 * closes the tree; without it nothing counts.
 */
async function receiveTree(
  dest: string,
  body: VerbContext["body"],
  tick: () => void,
): Promise<{ files: number; bytes: number }> {
  mkdirPrivate(dest);
  let buf: Buffer = Buffer.alloc(0);
  let fd: number | undefined;
  let left = 0;
  let ended = false;
  const stats = { files: 0, bytes: 0 };
  // The master's names: only paths inside `dest` (the same rule as for listings and manifests).
  const safe = (rel: unknown): string => {
    if (typeof rel !== "string" || !isSafeRelPath(rel)) {
      throw new UsageError(`helper: refusing path ${JSON.stringify(rel)} in a tree stream`);
    }
    return join(dest, rel);
  };
  const finishFile = (): void => {
    if (fd === undefined) return;
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
  };
  try {
    for await (const chunk of body) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        if (left > 0) {
          const n = Math.min(left, buf.length);
          if (n === 0) break;
          let off = 0;
          while (off < n) off += writeSync(fd ?? -1, buf, off, n - off);
          buf = buf.subarray(n);
          left -= n;
          if (left === 0) finishFile();
          continue;
        }
        if (buf.length < 4) break;
        const len = buf.readUInt32BE(0);
        if (buf.length < 4 + len) break;
        let header: { p?: unknown; d?: unknown; s?: unknown; end?: unknown };
        try {
          header = JSON.parse(buf.subarray(4, 4 + len).toString("utf8")) as typeof header;
        } catch {
          throw new UsageError(`helper: malformed record in the tree stream into ${dest}`);
        }
        buf = buf.subarray(4 + len);
        if (typeof header !== "object" || header === null) continue;
        if (header.end === true) {
          ended = true;
          continue;
        }
        const p = safe(header.p);
        if (header.d === true) {
          mkdirPrivate(p);
          continue;
        }
        // Never through a link (nothing in a fresh tree is one, but nothing is followed either).
        fd = openSync(p, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o600);
        inheritOwner(fd, dirname(p));
        left = typeof header.s === "number" && Number.isSafeInteger(header.s) && header.s >= 0 ? header.s : 0;
        stats.files++;
        stats.bytes += left;
        if (left === 0) finishFile();
      }
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  if (!ended || left > 0) {
    throw new IoError(`tree stream into ${dest} was cut short`, "retry the backup: the connection was interrupted");
  }
  fsyncTree(dest, tick);
  return stats;
}

/**
 * Removes the tree `path` like the local driver's removeTree (symbolic links removed, never
 * followed; the parent folder fsynced), one entry at a time so that `tick` hears of each.
 */
function removeTreeTicking(path: string, tick: () => void): void {
  try {
    let isDir: boolean;
    try {
      isDir = lstatSync(path).isDirectory();
    } catch (err) {
      if (!isErrno(err, "ENOENT")) throw err;
      return;
    }
    if (!isDir) rmSync(path, { force: true });
    else
      walkTreeSync(
        path,
        ({ path: p, st }) => {
          if (st.isDirectory()) return true;
          try {
            unlinkSync(p);
          } catch (err) {
            if (!isErrno(err, "ENOENT")) throw err;
          }
          tick();
          return false;
        },
        {
          follow: false,
          leave: (dir) => {
            rmdirSync(dir);
            tick();
          },
        },
      );
    fsyncDir(dirname(path));
  } catch (err) {
    throw ioError("cannot remove", path, err);
  }
}

const local = new LocalDriver();
const tree = requireFeature(local, "tree");

/** One handler per verb of HELPER_VERBS (the type makes the two lists the same). */
const HANDLERS: { [V in HelperVerb]: Handler } = {
  probe: () => {
    const r = spawnSync("rsync", ["--version"], { stdio: "ignore" });
    return Promise.resolve({ r: { rsync: r.status === 0, pid: process.pid } });
  },
  stat: async ([path]) => ({ r: (await local.info(nonEmpty(path, "path"))) ?? null }),
  manifest: async ([dir], { tick }) => {
    const d = nonEmpty(dir, "directory");
    if (!(await local.info(d))?.isDirectory) return { r: null };
    try {
      return { r: buildManifest(d, tick) };
    } catch (err) {
      throw ioError("cannot read", d, err);
    }
  },
  list: async ([dir]) => ({ r: (await local.list(nonEmpty(dir, "directory"))) ?? null }),
  read: ([path]) => {
    const p = nonEmpty(path, "path");
    const f = openRegularFile(p);
    if (f === undefined) return Promise.resolve({ r: null });
    return Promise.resolve({ r: { size: f.size }, body: fileChunks(f.fd, p) });
  },
  put: async ([path, exclusive, padTo], { body }) => {
    const p = nonEmpty(path, "path");
    const pad = padTo === "-" ? undefined : num(padTo, "padding");
    return { r: await put(p, exclusive === "1", pad, body) };
  },
  writeat: async ([path, offset], { body }) => {
    const p = nonEmpty(path, "path");
    const off = num(offset, "offset");
    const data = await collect(body);
    writeAtDurable(p, off, data);
    return { r: {} };
  },
  remove: ([path]) => Promise.resolve({ r: { removed: removeDurable(nonEmpty(path, "path")) } }),
  rmtree: ([path], { log, tick }) => {
    const p = nonEmpty(path, "path");
    removeTreeTicking(p, tick);
    log.info(`removed ${p} (for the master)`);
    return Promise.resolve({ r: {} });
  },
  mkdir: async ([path]) => {
    await local.pathCreate(nonEmpty(path, "path"));
    return { r: {} };
  },
  rename: async ([from, to], { log }) => {
    const f = nonEmpty(from, "source path");
    const t = nonEmpty(to, "target path");
    await tree.renameDir(f, t);
    log.info(`renamed ${f} to ${t} (for the master)`);
    return { r: {} };
  },
  fsynctree: ([path], { tick }) => Promise.resolve({ r: fsyncTree(nonEmpty(path, "path"), tick) }),
  puttree: async ([path], { body, tick }) => ({ r: await receiveTree(nonEmpty(path, "path"), body, tick) }),
  unlock: ([path, pid, host], { log }) => {
    // Removes a lock file only when it names this holder (pid and host): never another's lock.
    const p = nonEmpty(path, "path");
    let removed = false;
    try {
      const held = JSON.parse(readFileSync(p, "utf8")) as { pid?: number; host?: string };
      if (String(held.pid) === pid && held.host === host) removed = removeDurable(p);
    } catch {
      // not ours, or already gone
    }
    if (removed) log.info(`released ${p} (for the master)`);
    return Promise.resolve({ r: { removed } });
  },
};

// eslint-disable-next-line require-yield -- a body with nothing in it
async function* noBody(): AsyncGenerator<Buffer, { bytes: number; sha256: string }> {
  await Promise.resolve();
  return { bytes: 0, sha256: "" };
}

/** At most one progress frame per this many milliseconds. */
const TICK_MS = 500;

/**
 * The `tick` of one request: counts the items done, and writes a progress frame with the count
 * when TICK_MS passed since the last one. The verbs that tick do their work synchronously, and
 * a write to a pipe that has room goes out at once (libuv tries the write before queueing it).
 */
function ticker(): () => void {
  let done = 0;
  let last = Date.now();
  return () => {
    done++;
    const now = Date.now();
    if (now - last < TICK_MS) return;
    last = now;
    process.stdout.write(encodeJson("P", { done }));
  };
}

/**
 * Serves one request: runs its verb and writes the answer (and its body). With `refuse` (the
 * two ends do not agree on the protocol), answers that error instead, without running anything.
 */
async function serve(req: Record<string, unknown>, reader: FrameReader, log: Logger, refuse?: Error): Promise<void> {
  const out = process.stdout;
  const { v, a, b } = req;
  const hasBody = b === 1;
  const body = hasBody ? reader.body(`the body of ${JSON.stringify(v)}`) : noBody();
  let served: Served;
  try {
    if (refuse) throw refuse;
    if (typeof v !== "string" || !isHelperVerb(v)) {
      throw new UsageError(
        `helper: unknown verb ${JSON.stringify(v)}`,
        "the master and slave run different walmgr-ts versions? install the same one on both hosts",
      );
    }
    const spec = HELPER_VERBS[v];
    if (!Array.isArray(a) || a.length !== spec.args.length || a.some((x) => typeof x !== "string")) {
      throw new UsageError(`helper: ${v} takes ${spec.args.length} string arguments (${spec.args.join(", ")})`);
    }
    if (hasBody !== (spec.body === "in")) {
      throw new UsageError(`helper: ${v} ${spec.body === "in" ? "needs" : "takes no"} body`);
    }
    served = await HANDLERS[v](a as string[], { log, body, tick: ticker() });
  } catch (err) {
    if (err instanceof ProtocolError) throw err;
    await reader.drain(body); // stay in step with the master
    await writeOut(out, errorAnswer(err));
    return;
  }
  await reader.drain(body);
  await writeOut(out, encodeJson("H", { ok: 1, r: served.r, ...(served.body ? { b: 1 } : {}) }));
  if (served.body)
    await sendBody(out, served.body).catch((err: unknown) => {
      // The A frame went out (the master discards what it got); the session goes on.
      if (err instanceof ProtocolError) throw err;
      log.error(describeError(err).text);
    });
}

/** Entry of the helper (from wal-ctl, before its normal argument parsing). Exits when done. */
export function helperMain(argv: string[]): void {
  const [configFile = "-", command = "", ...extra] = argv;
  const log = new Logger({ verbosity: -1, jobName: "wal-ctl helper" });
  const finish = (code: ExitCodeValue): void => {
    log.close();
    process.exit(code);
  };
  (async (): Promise<ExitCodeValue> => {
    if (command !== HELPER_COMMAND || extra.length > 0) {
      throw new UsageError(
        `wal-ctl helper: expected \`wal-ctl SLAVE_CONFIG ${HELPER_COMMAND}\`, got ${JSON.stringify(argv)}`,
        "the master and slave run different walmgr-ts versions? install the same one on both hosts",
      );
    }
    if (configFile !== "-") {
      const config = loadConfig(configFile);
      const logfile = config.path("logfile");
      log.configure({ jobName: `${config.jobName} (helper)`, ...(logfile ? { logfile } : {}) });
    }
    writeStdout(HELPER_MAGIC);
    const reader = new FrameReader(process.stdin, "the master");
    const own = helloOf();
    // Until the master's hello agrees with ours, every request is refused unrun.
    let refuse: Error | undefined = new TransportError(
      `version mismatch: the master did not say which helper protocol it speaks (it runs a walmgr-ts older than helper protocol 2), this slave host runs walmgr-ts helper ${describeHello(own)}: refusing its requests`,
      MISMATCH_HINT,
    );
    for (;;) {
      const req = await reader.header();
      if (req === undefined) return ExitCode.OK; // the master closed the session
      if (req.v !== HELLO_VERB) {
        await serve(req, reader, log, refuse);
        continue;
      }
      if (req.b === 1) await reader.drain(reader.body("the body of hello"));
      const theirs = readHello(req.h);
      refuse =
        theirs !== undefined && helloAgrees(theirs, own)
          ? undefined
          : new TransportError(
              `version mismatch: the master speaks walmgr-ts helper ${theirs ? describeHello(theirs) : "of an unknown kind"}, this slave host ${describeHello(own)}: refusing its requests`,
              MISMATCH_HINT,
            );
      // The answer is always our own hello: the master judges it (and says which host is which).
      await writeOut(process.stdout, encodeJson("H", { ok: 1, r: own }));
    }
  })().then(finish, (err: unknown) => {
    const { text, code } = describeError(err);
    writeStderr(`${text}\n`);
    log.error(text);
    finish(code);
  });
}
