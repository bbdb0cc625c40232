/**
 * The framed protocol between the master (the ssh driver) and the helper on the slave host
 * (`wal-ctl SLAVE_CONFIG xhelper`), shared by both ends. One helper process serves many
 * requests, one after the other, over ssh's stdin/stdout.
 *
 * On the wire:
 * - The helper starts by writing HELPER_MAGIC. Anything before it (a login script that echoes)
 *   is junk: the master refuses the session and names what it saw.
 * - Then frames, in both directions: 1 byte type, 4 bytes big-endian payload length, payload.
 *     H  header: a JSON object (a request, or the answer to one)
 *     D  body data: raw bytes (at most MAX_CHUNK per frame)
 *     E  end of body: JSON {bytes, sha256} of all D payloads since the header
 *     A  abort of body: JSON {message}; the sender gave up mid-body
 *     P  progress (helper to master only, before the answer of a long request): JSON {done: n},
 *        the items (files hashed, fsynced or removed) that request has done so far
 * - A request is an H {v: verb, a: [string args], b?: 1} and, when b is 1, a body (D… then E or
 *   A). The answer is an H {ok: 1, r: result, b?: 1} (a body follows when b is 1) or
 *   {ok: 0, code, msg, hint?} with a code from the one exit-code table (errors.ts).
 * - The hello (protocol 2 on): the master writes `{v: "hello", a: [], h: helloOf()}` as soon as
 *   ssh starts, before it has read anything, and the helper answers it first, right after the
 *   magic: `{ok: 1, r: helloOf()}` (this shape never changes). So the two ends learn each other's
 *   protocol, version and request table in the same trip as the magic, and the master sends
 *   nothing else until they agree. A helper of protocol 1 answers the hello as an unknown verb;
 *   a protocol-2 helper refuses (exit code 6, naming both versions) every request of a master
 *   that did not say hello first or said another version, without running it.
 * - A receiver checks the body's length and sha256 at E before it uses it: a body cut short
 *   (EOF before E, an A frame, or a trailer that does not match) is never published under a final
 *   name. A receiver that fails while a body is coming keeps reading to its end, so the two sides
 *   stay in step and the session goes on.
 *
 * Every parse of input from the other side is guarded: malformed frames are a ProtocolError
 * (a TransportError, exit 6), never an internal error.
 */
import { releaseGarbage } from "../gc";
import { newSha256 } from "../sha256";
import type { Readable, Writable } from "node:stream";
import { ExitCode, IoError, TransportError, WalmgrError, type ExitCodeValue } from "../../errors";
import { VERSION } from "../../version";
import { HELPER_VERBS } from "./verbs";

/**
 * What the helper writes first, so that the master can tell our protocol from login-script noise.
 * Frozen: a master of protocol 1 checks exactly these bytes, and gets as far as its first request
 * (which a newer helper refuses with a message naming both versions) only when they match.
 */
export const HELPER_MAGIC = "walmgr-helper 1\n";

/**
 * The helper protocol's number: 1 was the framing alone (no hello); 2 added the hello and the
 * P frames. Bump it for any change of the framing; a change of the requests changes
 * `requestsId` by itself.
 */
export const HELPER_PROTOCOL = 2;

/** The verb of the hello request (never in HELPER_VERBS: every protocol from 2 on knows it). */
export const HELLO_VERB = "hello";

/** What each end says of itself in the hello. */
export interface Hello {
  protocol: number;
  /** walmgr-ts's version (package.json). */
  version: string;
  /** A digest of the request table (names, arguments, bodies): two builds with other requests differ. */
  requests: string;
}

let ownHello: Hello | undefined;

/** This build's hello. */
export function helloOf(): Hello {
  if (ownHello === undefined) {
    const table = Object.entries(HELPER_VERBS).map(([v, spec]) => [v, spec.args, spec.body]);
    const requests = newSha256().update(JSON.stringify(table)).digest("hex").slice(0, 8);
    ownHello = { protocol: HELPER_PROTOCOL, version: VERSION, requests };
  }
  return ownHello;
}

/** A hello as the other end sent it, or undefined when `v` is not one. */
export function readHello(v: unknown): Hello | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const h = v as Record<string, unknown>;
  if (typeof h.protocol !== "number" || typeof h.version !== "string" || typeof h.requests !== "string") {
    return undefined;
  }
  return { protocol: h.protocol, version: h.version.slice(0, 64), requests: h.requests.slice(0, 64) };
}

/** Do two hellos agree (same protocol, same requests)? The version string alone may differ. */
export function helloAgrees(a: Hello, b: Hello): boolean {
  return a.protocol === b.protocol && a.requests === b.requests;
}

/** A hello for messages: "protocol 2 (version 0.1.0, requests 1a2b3c4d)". */
export function describeHello(h: Hello): string {
  return `protocol ${h.protocol} (version ${h.version}, requests ${h.requests})`;
}

/** The hint of every version mismatch. */
export const MISMATCH_HINT =
  "install the same walmgr-ts version on both hosts (`wal-ctl --version` on each; on the slave host, the wal-ctl that slave_wal_ctl names)";
/** Largest header the reader accepts (a manifest of a big tree is the largest answer). */
export const MAX_HEADER = 256 << 20;
/** Largest data frame the reader accepts; writers send at most WRITE_CHUNK. */
export const MAX_CHUNK = 4 << 20;
const WRITE_CHUNK = 1 << 20;

export type FrameType = "H" | "D" | "E" | "A" | "P";
const TYPES = new Set(["H", "D", "E", "A", "P"]);

export interface Frame {
  type: FrameType;
  payload: Buffer;
}

/** Malformed or cut protocol input: a transport failure (exit 6). */
export class ProtocolError extends TransportError {}

/** The two ends do not speak the same protocol or requests (exit 6): the message names both. */
export class VersionMismatchError extends ProtocolError {}

/** The 5-byte prefix of a frame. */
function prefix(type: FrameType, length: number): Buffer {
  const p = Buffer.allocUnsafe(5);
  p.write(type, 0, "latin1");
  p.writeUInt32BE(length, 1);
  return p;
}

export function encodeFrame(type: FrameType, payload: Buffer): Buffer {
  return Buffer.concat([prefix(type, payload.length), payload]);
}

export function encodeJson(type: "H" | "E" | "A" | "P", value: unknown): Buffer {
  return encodeFrame(type, Buffer.from(JSON.stringify(value), "utf8"));
}

/** An answer frame for an error, with the error's exit code and hint. */
export function errorAnswer(err: unknown): Buffer {
  if (err instanceof WalmgrError) {
    return encodeJson("H", { ok: 0, code: err.exitCode, msg: err.message, ...(err.hint ? { hint: err.hint } : {}) });
  }
  const e = err as Error | undefined;
  return encodeJson("H", { ok: 0, code: ExitCode.INTERNAL, msg: `internal error: ${e?.stack ?? String(err)}` });
}

/** The error an `{ok: 0}` answer stands for, with its exit code (unknown codes become I/O errors). */
export function answerError(a: { code: number; msg: string; hint?: string }, where: string): WalmgrError {
  const valid = Object.values(ExitCode) as number[];
  const code = (valid.includes(a.code) ? a.code : ExitCode.IO) as ExitCodeValue;
  return new WalmgrError(`${where}: ${a.msg}`, code, a.hint);
}

/** Shows up to 200 characters of unexpected bytes, printable, for an error message. */
export function showJunk(data: Buffer): string {
  return JSON.stringify(data.subarray(0, 200).toString("utf8"));
}

/**
 * Pulls frames from a byte stream, one at a time. `where` names the other side in messages
 * ("the helper on slavehost", "the master").
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private done = false;
  private readonly it: AsyncIterator<Buffer>;

  constructor(
    source: Readable | AsyncIterable<Buffer>,
    readonly where: string,
  ) {
    this.it = (source as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  }

  /** Reads more input; false at end of stream. */
  private async more(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    this.chunks.push(b);
    this.buffered += b.length;
    return true;
  }

  private take(n: number): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      // Join only the chunks that hold the n bytes.
      let k = 0;
      for (let got = 0; got < n; k++) got += this.chunks[k]?.length ?? 0;
      const all = Buffer.concat(this.chunks.slice(0, k));
      out = all.subarray(0, n);
      this.chunks = all.length > n ? [all.subarray(n), ...this.chunks.slice(k)] : this.chunks.slice(k);
    }
    this.buffered -= n;
    return out;
  }

  /** Up to `n` bytes as they are buffered (never joined); undefined at the end of the stream. */
  private async some(n: number): Promise<Buffer | undefined> {
    if (this.buffered === 0 && !(await this.more())) return undefined;
    const first = this.chunks[0];
    return this.take(Math.min(n, first?.length ?? 0));
  }

  /** Exactly `n` bytes; undefined when the stream ends first (the bytes seen are `partial`). */
  private async exact(n: number): Promise<Buffer | undefined> {
    while (this.buffered < n) if (!(await this.more())) return undefined;
    return this.take(n);
  }

  /** What is buffered (for messages about junk). */
  pending(): Buffer {
    return Buffer.concat(this.chunks);
  }

  /**
   * Waits for HELPER_MAGIC. Resolves "eof" when the stream ends before any byte arrives (the
   * caller then looks at how the process ended); throws a ProtocolError naming anything else.
   */
  async expectMagic(): Promise<"ok" | "eof"> {
    const magic = Buffer.from(HELPER_MAGIC, "latin1");
    while (this.buffered < magic.length) {
      const got = this.pending();
      if (!magic.subarray(0, got.length).equals(got)) break;
      if (!(await this.more())) break;
    }
    const got = this.pending();
    if (got.length >= magic.length && got.subarray(0, magic.length).equals(magic)) {
      this.take(magic.length);
      return "ok";
    }
    if (got.length === 0 && this.done) return "eof";
    throw new ProtocolError(
      `${this.where} sent ${showJunk(got)} before the protocol started: something on the slave host (a login script such as ~/.bashrc or ~/.profile of the ssh user) writes to stdout`,
      'make non-interactive logins of the slave\'s ssh user print nothing (e.g. return early in ~/.bashrc when the shell is not interactive: [ -z "$PS1" ] && return)',
    );
  }

  /** The next frame; undefined at a clean end of stream between frames. */
  async next(): Promise<Frame | undefined> {
    const head = await this.nextHead();
    if (head === undefined) return undefined;
    const payload = await this.exact(head.length);
    if (payload === undefined) {
      throw new ProtocolError(`${this.where}: the stream ended inside a frame (the connection was cut)`);
    }
    return { type: head.type, payload };
  }

  /** The type and length of the next frame (its payload follows); undefined at a clean end. */
  private async nextHead(): Promise<{ type: FrameType; length: number } | undefined> {
    const head = await this.exact(5);
    if (head === undefined) {
      if (this.buffered === 0) return undefined;
      throw new ProtocolError(`${this.where}: the stream ended inside a frame (the connection was cut)`);
    }
    const type = head.toString("latin1", 0, 1);
    const length = head.readUInt32BE(1);
    if (!TYPES.has(type)) {
      throw new ProtocolError(
        `${this.where} sent something that is not a protocol frame: ${showJunk(Buffer.concat([head, this.pending()]))}`,
        "something on the slave host writes to the helper's stdout; check the ssh user's login scripts",
      );
    }
    if (length > (type === "H" ? MAX_HEADER : MAX_CHUNK)) {
      throw new ProtocolError(
        `${this.where} sent a frame of ${length} bytes (type ${type}): too large, not our protocol`,
      );
    }
    return { type: type as FrameType, length };
  }

  /** The JSON of a frame's payload, parsed with a guard. */
  json(frame: Frame): Record<string, unknown> {
    let v: unknown;
    try {
      v = JSON.parse(frame.payload.toString("utf8"));
    } catch {
      throw new ProtocolError(`${this.where} sent a malformed ${frame.type} frame: ${showJunk(frame.payload)}`);
    }
    if (typeof v !== "object" || v === null || Array.isArray(v)) {
      throw new ProtocolError(
        `${this.where} sent a ${frame.type} frame that is not an object: ${showJunk(frame.payload)}`,
      );
    }
    return v as Record<string, unknown>;
  }

  /**
   * The next frame, which must be a header; undefined at a clean end of stream. Progress frames
   * before it go to `onProgress` (with their count of items done), when one is given.
   */
  async header(onProgress?: (done: number) => void): Promise<Record<string, unknown> | undefined> {
    for (;;) {
      const f = await this.next();
      if (f === undefined) return undefined;
      if (f.type === "P" && onProgress) {
        const done = this.json(f).done;
        if (typeof done === "number") onProgress(done);
        continue;
      }
      if (f.type !== "H") throw new ProtocolError(`${this.where} sent a ${f.type} frame where a header belongs`);
      return this.json(f);
    }
  }

  /**
   * The body that follows a header, chunk by chunk. Ends normally only at an E frame whose
   * length and sha256 match what came; throws an IoError (verification failed, or the sender
   * aborted) or a ProtocolError (the stream ended or broke). `what` names the file for messages.
   * After an IoError the session is still in step; after a ProtocolError it is not.
   */
  async *body(what: string): AsyncGenerator<Buffer, { bytes: number; sha256: string }> {
    const hash = newSha256();
    let bytes = 0;
    let sinceGc = 0;
    const cut = (): ProtocolError =>
      new ProtocolError(`${this.where}: the connection ended in the middle of ${what} after ${bytes} bytes`);
    for (;;) {
      const head = await this.nextHead();
      if (head === undefined) throw cut();
      if (head.type === "D") {
        // Data is passed on as the pipe delivered it, never joined into whole frames: nothing
        // is copied, and the garbage is released as it goes (releaseGarbage).
        for (let left = head.length; left > 0;) {
          const piece = await this.some(left);
          if (piece === undefined) throw cut();
          left -= piece.length;
          hash.update(piece);
          bytes += piece.length;
          yield piece;
          sinceGc += piece.length;
          if (sinceGc >= GC_EVERY) {
            sinceGc = 0;
            releaseGarbage();
          }
        }
        continue;
      }
      const payload = await this.exact(head.length);
      if (payload === undefined) throw cut();
      const f: Frame = { type: head.type, payload };
      if (f.type === "A") {
        const j = this.json(f);
        throw new IoError(`${what}: the sender gave up after ${bytes} bytes: ${String(j.message)}; nothing was stored`);
      }
      if (f.type !== "E") throw new ProtocolError(`${this.where} sent a ${f.type} frame in the middle of ${what}`);
      const j = this.json(f);
      const sha256 = hash.digest("hex");
      if (j.bytes !== bytes || j.sha256 !== sha256) {
        throw new IoError(
          `${what}: received ${bytes} bytes (sha256 ${sha256.slice(0, 16)}…), expected ${String(j.bytes)} (sha256 ${String(j.sha256).slice(0, 16)}…): the transfer was cut short or damaged; nothing was stored`,
          "retry: the connection was probably interrupted",
        );
      }
      return { bytes, sha256 };
    }
  }

  /** Reads a body to its end, discarding it; errors of the body itself are returned, not thrown. */
  async drain(gen: AsyncGenerator<Buffer, unknown>): Promise<void> {
    try {
      for (;;) if ((await gen.next()).done) return;
    } catch (err) {
      if (err instanceof ProtocolError) throw err;
    }
  }
}

/** A body's received bytes between two `releaseGarbage` calls (see gc.ts). */
const GC_EVERY = 2 << 20;

/** Writes `data` and resolves once the stream has handed it on (its write callback). */
export function writeFlushed(out: Writable, data: Buffer): Promise<void> {
  if (out.destroyed || out.writableEnded) return Promise.reject(new ProtocolError("the connection is closed"));
  return new Promise<void>((resolve, reject) => {
    const onClose = (): void => reject(new ProtocolError("the connection closed while sending"));
    out.once("close", onClose);
    out.write(data, (err) => {
      out.off("close", onClose);
      if (err) reject(new ProtocolError(`the connection failed while sending: ${err.message}`));
      else resolve();
    });
  });
}

/** Writes to a stream, waiting when it is full; rejects when the stream closes or fails first. */
export function writeOut(out: Writable, data: Buffer): Promise<void> {
  if (out.destroyed || out.writableEnded) return Promise.reject(new ProtocolError("the connection is closed"));
  if (out.write(data)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      out.off("drain", onDrain);
      out.off("close", onClose);
      out.off("error", onError);
      if (err) reject(err);
      else resolve();
    };
    const onDrain = (): void => done();
    const onClose = (): void => done(new ProtocolError("the connection closed while sending"));
    const onError = (e: Error): void => done(new ProtocolError(`the connection failed while sending: ${e.message}`));
    out.on("drain", onDrain);
    out.on("close", onClose);
    out.on("error", onError);
  });
}

/**
 * Sends `source` as a body (D frames, then E with its length and sha256). When `source` fails,
 * sends an A frame (the receiver discards what it got) and rethrows. `onProgress` hears of each
 * chunk handed on, with its size (the master's request deadline grows with the data sent).
 */
export async function sendBody(
  out: Writable,
  source: AsyncIterable<Buffer | Uint8Array> | Iterable<Buffer | Uint8Array>,
  onProgress?: (bytes: number) => void,
): Promise<{ bytes: number; sha256: string }> {
  const hash = newSha256();
  let bytes = 0;
  try {
    for await (const raw of source) {
      const chunk = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
      for (let off = 0; off < chunk.length; off += WRITE_CHUNK) {
        const part = chunk.subarray(off, Math.min(chunk.length, off + WRITE_CHUNK));
        hash.update(part);
        bytes += part.length;
        await writeOut(out, prefix("D", part.length));
        // Until the pipe has taken it: the caller may reuse its buffer once we ask for more.
        await writeFlushed(out, part);
        onProgress?.(part.length);
      }
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) {
      const message = err instanceof Error ? err.message : String(err);
      await writeOut(out, encodeJson("A", { message })).catch(() => undefined);
    }
    throw err;
  }
  const sha256 = hash.digest("hex");
  await writeOut(out, encodeJson("E", { bytes, sha256 }));
  return { bytes, sha256 };
}
