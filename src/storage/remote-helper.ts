/**
 * The slave side of the ssh transport: `wal-ctl SLAVE_CONFIG xVERB ARGS…`, run by the master
 * over ssh (walmgr ran `walmgr.py slave_config xlock` and friends the same way). Each verb does
 * one storage operation with the local driver on this host, so everything the local driver
 * promises (temp name, fsync, rename, directory fsync, 0600/0700) holds on the slave too.
 *
 * Protocol: arguments are positional only (no option parsing, so no path can pose as an
 * option); data arrives on stdin together with its length and sha256 as arguments, and nothing
 * is stored unless both match (a connection cut mid-stream can never commit a short file);
 * results are JSON on stdout (raw bytes for xread); errors are a message on stderr and an exit
 * code from the one table in errors.ts (1 = not there, for xread).
 * SLAVE_CONFIG may be "-" when the master has no slave_config: the helper then needs none.
 */
import { closeSync, fsyncSync, openSync, readFileSync, writeSync, chmodSync } from "node:fs";
import { pipeline } from "node:stream/promises";
import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { ExitCode, IoError, UsageError, WalmgrError, ioError, type ExitCodeValue } from "../errors";
import { loadConfig } from "../config/load";
import { Logger, writeStderr, writeStdout } from "../log";
import {
  commitTemp,
  createTemp,
  removeQuietly,
  removeStaleTemps,
  writeAll,
  fsyncDir,
  inheritOwner,
  removeDurable,
  tempNameFor,
  writeAtDurable,
  writeFileDurable,
} from "./durable";
import { parseTrailer, TRAILER_BYTES } from "./body-trailer";
import { requireFeature } from "./driver";
import { LocalDriver, mkdirPrivate } from "./local";
import { sha256 as sha, newSha256 } from "./sha256";
import { walkTreeSync } from "./tree-walk";

export const HELPER_VERBS = new Set([
  "xprobe",
  "xstat",
  "xlist",
  "xmanifest",
  "xread",
  "xput",
  "xpublish",
  "xwriteat",
  "xremove",
  "xrmtree",
  "xmkdir",
  "xrename",
  "xfsynctree",
  "xputtree",
  "xunlock",
]);

/** True when wal-ctl's arguments are a helper call: CONFIG then a helper verb (bin/wal-ctl has the same list). */
export function isHelperCall(argv: string[]): boolean {
  return argv.length >= 2 && HELPER_VERBS.has(argv[1] ?? "");
}

/** Fails unless `data` has the announced length and sha256 (a cut stream never gets stored). */
function verify(what: string, bytes: number, sha: string, gotBytes: number, gotSha: string): void {
  if (gotBytes !== bytes || gotSha !== sha) {
    throw new IoError(
      `${what}: received ${gotBytes} bytes (sha256 ${gotSha.slice(0, 16)}…), expected ${bytes} (sha256 ${sha.slice(0, 16)}…): the transfer was cut short or damaged; nothing was stored`,
      "retry: the connection to the master was probably interrupted",
    );
  }
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

function num(v: string | undefined, what: string): number {
  const n = Number(v);
  if (v === undefined || !Number.isSafeInteger(n) || n < 0) throw new UsageError(`helper: bad ${what} ${String(v)}`);
  return n;
}

function arg(args: string[], i: number, what: string): string {
  const v = args[i];
  if (v === undefined || v === "") throw new UsageError(`helper: missing ${what}`);
  return v;
}

function out(value: unknown): void {
  // Synchronous: the helper exits right after, and a pipe would drop what Node had not flushed.
  writeStdout(`${JSON.stringify(value)}\n`);
}

/**
 * Streams stdin into a temp file beside `path` (0600 from its creation, named after this
 * helper, which lives until the temp is committed or removed), fsyncs it, checks length and
 * sha256, and puts it in place (exclusively: false when `path` exists). Temps of dead writers
 * beside `path` are removed first. With `bytes` and `sha` undefined the body ends with a
 * trailer (`bodyTrailer`) instead, so a writer can stream what it has not measured yet; a
 * stream cut anywhere fails the check either way. `padTo` zero-extends the stored file.
 */
async function put(
  path: string,
  exclusive: boolean,
  bytes: number | undefined,
  sha: string | undefined,
  padTo?: number,
): Promise<boolean> {
  removeStaleTemps(dirname(path));
  const tmp = tempNameFor(path);
  const hash = newSha256();
  let got = 0;
  let fd: number | undefined;
  const trailerMode = bytes === undefined;
  let held = Buffer.alloc(0);
  try {
    const tmpFd = createTemp(tmp);
    fd = tmpFd;
    const take = (b: Buffer): void => {
      hash.update(b);
      writeAll(tmpFd, b);
      got += b.length;
    };
    for await (const chunk of process.stdin) {
      const b = chunk as Buffer;
      if (!trailerMode) {
        take(b);
        continue;
      }
      // Hold back the last TRAILER_BYTES: they are the trailer if the stream ends here.
      const all = held.length === 0 ? b : Buffer.concat([held, b]);
      const cut = Math.max(0, all.length - TRAILER_BYTES);
      if (cut > 0) take(all.subarray(0, cut));
      held = Buffer.from(all.subarray(cut));
    }
    let wantBytes = bytes ?? -1;
    let wantSha = sha ?? "";
    const trailer = trailerMode ? parseTrailer(held) : undefined;
    if (trailer) {
      wantBytes = trailer.bytes;
      wantSha = trailer.sha256;
    }
    const digest = hash.digest("hex");
    verify(path, wantBytes, wantSha, got, digest);
    if (padTo !== undefined && padTo > got) writeAll(tmpFd, Buffer.alloc(padTo - got), got);
    fsyncSync(tmpFd);
    fd = undefined;
    closeSync(tmpFd);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    removeQuietly(tmp);
    throw ioError("cannot write", path, err);
  }
  try {
    return commitTemp(tmp, path, exclusive);
  } catch (err) {
    removeQuietly(tmp);
    throw ioError("cannot write", path, err);
  }
}

/** fsyncs every file and folder under `root` (rsync writes but never fsyncs). */
export function fsyncTree(root: string): { files: number; bytes: number } {
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
      },
      { skipVanished: false, leave: (dir) => fsyncDir(dir) },
    );
    fsyncDir(dirname(root));
  } catch (err) {
    throw ioError("cannot fsync", root, err);
  }
  return stats;
}

/**
 * Receives a tree in the fallback format (when rsync is missing on either side): frames of a
 * 4-byte big-endian header length, a JSON header {p: relative path, d: folder?, s: size}, then
 * `s` bytes of content. A header with `end` closes the stream; without it nothing counts.
 */
async function receiveTree(dest: string): Promise<{ files: number; bytes: number }> {
  mkdirPrivate(dest);
  let buf = Buffer.alloc(0);
  let fd: number | undefined;
  let left = 0;
  let header: { p?: string; d?: boolean; s?: number; end?: boolean } | undefined;
  let ended = false;
  const stats = { files: 0, bytes: 0 };
  const safe = (rel: string): string => {
    if (rel.split("/").some((c) => c === ".." || c === "") || rel.startsWith("/") || rel.includes("\0")) {
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
  for await (const chunk of process.stdin) {
    buf = Buffer.concat([buf, chunk as Buffer]);
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
      header = JSON.parse(buf.subarray(4, 4 + len).toString("utf8")) as typeof header;
      buf = buf.subarray(4 + len);
      if (!header) continue;
      if (header.end) {
        ended = true;
        continue;
      }
      const p = safe(header.p ?? "");
      if (header.d) {
        mkdirPrivate(p);
        continue;
      }
      fd = openSync(p, "w", 0o600);
      inheritOwner(fd, dirname(p));
      left = header.s ?? 0;
      stats.files++;
      stats.bytes += left;
      if (left === 0) finishFile();
    }
  }
  finishFile();
  if (!ended || left > 0) {
    throw new IoError(`tree stream into ${dest} was cut short`, "retry the backup: the connection was interrupted");
  }
  fsyncTree(dest);
  return stats;
}

async function runVerb(verb: string, args: string[], log: Logger): Promise<ExitCodeValue> {
  const local = new LocalDriver();
  const tree = requireFeature(local, "tree");
  switch (verb) {
    case "xprobe": {
      const r = spawnSync("rsync", ["--version"], { stdio: "ignore" });
      out({ rsync: r.status === 0, pid: process.pid });
      return ExitCode.OK;
    }
    case "xstat":
      out((await local.info(arg(args, 0, "path"))) ?? null);
      return ExitCode.OK;
    case "xmanifest": {
      const dir = arg(args, 0, "directory");
      out((await local.info(dir))?.isDirectory ? await tree.manifest(dir) : null);
      return ExitCode.OK;
    }
    case "xlist":
      out((await local.list(arg(args, 0, "directory"))) ?? null);
      return ExitCode.OK;
    case "xread": {
      // Streamed: a segment of any size costs this helper constant memory.
      const data = await local.newRead(arg(args, 0, "path"));
      if (data === undefined) return ExitCode.NOT_AVAILABLE;
      await pipeline(data, process.stdout, { end: false });
      return ExitCode.OK;
    }
    case "xput": {
      const path = arg(args, 0, "path");
      // LENGTH and SHA256 "-": the body ends with a trailer (see put); PADTO optional.
      const trailer = args[2] === "-";
      const padTo = args[4] === undefined || args[4] === "-" ? undefined : num(args[4], "padding");
      out({
        stored: await put(
          path,
          args[1] === "1",
          trailer ? undefined : num(args[2], "length"),
          trailer ? undefined : arg(args, 3, "sha256"),
          padTo,
        ),
      });
      return ExitCode.OK;
    }
    case "xpublish": {
      const path = arg(args, 0, "path");
      const data = await readStdin();
      verify(path, num(args[3], "length"), arg(args, 4, "sha256"), data.length, sha(data));
      const padTo = args[2] === "" || args[2] === "-" ? undefined : num(args[2], "padding");
      out({
        stored: writeFileDurable(path, data, { exclusive: args[1] === "1", ...(padTo ? { padTo } : {}) }),
      });
      return ExitCode.OK;
    }
    case "xwriteat": {
      const path = arg(args, 0, "path");
      const data = await readStdin();
      verify(path, num(args[2], "length"), arg(args, 3, "sha256"), data.length, sha(data));
      writeAtDurable(path, num(args[1], "offset"), data);
      return ExitCode.OK;
    }
    case "xremove":
      out({ removed: removeDurable(arg(args, 0, "path")) });
      return ExitCode.OK;
    case "xrmtree": {
      const p = arg(args, 0, "path");
      await tree.removeTree(p);
      log.info(`removed ${p} (for the master)`);
      return ExitCode.OK;
    }
    case "xmkdir": {
      const p = arg(args, 0, "path");
      await local.pathCreate(p);
      return ExitCode.OK;
    }
    case "xrename": {
      const from = arg(args, 0, "source path");
      const to = arg(args, 1, "target path");
      await tree.renameDir(from, to);
      log.info(`renamed ${from} to ${to} (for the master)`);
      return ExitCode.OK;
    }
    case "xfsynctree":
      out(fsyncTree(arg(args, 0, "path")));
      return ExitCode.OK;
    case "xputtree":
      out(await receiveTree(arg(args, 0, "path")));
      return ExitCode.OK;
    case "xunlock": {
      // Removes a lock file only when it names this holder (pid and host): never another's lock.
      const p = arg(args, 0, "path");
      let removed = false;
      try {
        const held = JSON.parse(readFileSync(p, "utf8")) as { pid?: number; host?: string };
        if (String(held.pid) === args[1] && held.host === args[2]) removed = removeDurable(p);
      } catch {
        // not ours, or already gone
      }
      if (removed) log.info(`released ${p} (for the master)`);
      out({ removed });
      return ExitCode.OK;
    }
    default:
      throw new UsageError(`helper: unknown verb ${JSON.stringify(verb)}`);
  }
}

/** Entry of the helper (from wal-ctl, before its normal argument parsing). Exits when done. */
export function helperMain(argv: string[]): void {
  const [configFile = "-", verb = "", ...args] = argv;
  const log = new Logger({ verbosity: -1, jobName: "wal-ctl helper" });
  (async (): Promise<ExitCodeValue> => {
    if (configFile !== "-") {
      const config = loadConfig(configFile);
      const logfile = config.path("logfile");
      log.configure({ jobName: `${config.jobName} (helper)`, ...(logfile ? { logfile } : {}) });
    }
    return runVerb(verb, args, log);
  })().then(
    (code) => {
      log.close();
      process.exit(code);
    },
    (err: unknown) => {
      const code = err instanceof WalmgrError ? err.exitCode : ExitCode.INTERNAL;
      const text =
        err instanceof WalmgrError
          ? err.message + (err.hint ? `\nHINT: ${err.hint}` : "")
          : `internal error: ${(err as Error)?.stack ?? String(err)}`;
      writeStderr(`${text}\n`);
      log.error(text);
      log.close();
      process.exit(code);
    },
  );
}
