/**
 * The S3 driver: the slave directory as keys under a prefix of a bucket (`slave =
 * s3://bucket/prefix`), walmgr's layout kept (`prefix/logs.complete/NAME`, `prefix/data.master/…`).
 * Folders are key prefixes; `pathCreate` leaves an empty `dir/` marker object so that an empty
 * folder (a fresh logs.complete, PostgreSQL's empty pg_* folders in a backup) exists too.
 *
 * Promises kept: an object appears under its name complete or not at all (a single PUT, or a
 * multipart upload that becomes visible only when completed), and durable once the store
 * answered 200. Exclusive create is *checked*, not atomic (see `exclusiveCreate`): S3 engines
 * without conditional writes (Swift's s3api answers `If-None-Match: *` with 501) cannot refuse
 * a second writer, so writers publish claims on the name first and only one goes on (see
 * `S3Write.claim`).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { Readable, Writable } from "node:stream";
import type { IncomingMessage } from "node:http";
import { join, posix } from "node:path";
import { IoError, TransportError } from "../../errors";
import type { FileInfo, ReadStream, StorageDriver, StorageFeatures, WriteHandle, WriteOptions } from "../driver";
import { hashStream, newSha256, sha256 } from "../sha256";
import { chunks } from "../files";
import { isOwnMetadata, type Manifest } from "../manifest";
import { readBytes } from "../bytes";
import { judgeHolder, lockBody, parseLockInfo, selfLockInfo } from "../../holder";
import { WALMGR_PROGRAMS } from "../../proc";
import { S3Client, type S3Request } from "./client";
import { childText, type ListPage } from "./xml";
import { eachLimit } from "../../parallel";
import { isSafeName } from "../rel-path";
import { s3GetTree, s3PutTree } from "./tree";

/** Folder (beside the objects) of the claims that make exclusive creates exclusive. */
const CLAIMS = ".walmgr-claims";
/** How long a writer that stepped back waits for the other writer's object. */
const CLAIM_WAIT_MS = 30_000;
/** Rounds of claiming when claims keep colliding (each round backs off at random). */
const CLAIM_ROUNDS = 8;
/** A claim older than this is ignored: no upload of ours takes that long. */
const CLAIM_TTL_MS = 10 * 60_000;
/** Below this, a write is kept as small copies; above, one part-size buffer is taken. */
const SMALL = 64 * 1024;
const PARALLEL = 16;

export interface S3DriverOptions {
  client: S3Client;
  /** Bytes per part of a multipart upload; also what one upload holds in memory. */
  partSize: number;
}

export class S3Driver implements StorageDriver {
  readonly description: string;
  readonly features: StorageFeatures;
  /**
   * "checked": no conditional create on the engine; exclusive writes are made exclusive by
   * claims, which rely on read-after-write consistent listings. Locks built on it re-check
   * after a pause as a second guard.
   */
  readonly exclusiveCreate = "checked" as const;
  readonly client: S3Client;
  readonly partSize: number;
  /** Digests of what this process stored (path → size, sha256): a backup's manifest without reading it back. */
  readonly written = new Map<string, { size: number; sha256: string }>();

  constructor(opts: S3DriverOptions) {
    this.client = opts.client;
    this.partSize = opts.partSize;
    this.description = `S3 ${opts.client.target.endpoint.origin} bucket ${opts.client.target.bucket}`;
    this.features = {
      tree: {
        manifest: (dir) => this.manifest(dir),
        removeTree: (path) => this.removeTree(path),
        renameDir: (from, to) => this.renameDir(from, to),
        putTree: (src, dest, keep, opts) => s3PutTree(this, src, dest, keep, opts?.onProgress),
        getTree: (src, dest, expect, opts) => s3GetTree(this, src, dest, expect, opts?.onProgress),
      },
      releaseNow: {
        releaseLockSync: (lockPath, pid, host) => this.releaseLockSync(lockPath, pid, host),
        removeTreeSync: (path) => this.removeTreeSync(path),
      },
    };
  }

  /**
   * Synchronous cleanup for a signal handler (feature releaseNow): a child process does the
   * requests (dist/bin/wal-s3-release.js) while this one waits, for at most a minute.
   */
  removeTreeSync(path: string): void {
    this.releaseInChild({ tree: path });
  }

  releaseLockSync(lockPath: string, pid: number, host: string): void {
    this.releaseInChild({ lock: { path: lockPath, pid, host } });
  }

  private releaseInChild(what: { tree?: string; lock?: { path: string; pid: number; host: string } }): void {
    const t = this.client.target;
    const job = {
      target: { ...t, endpoint: t.endpoint.href, credentials: undefined },
      credentials: t.credentials(),
      partSize: this.partSize,
      ...what,
    };
    spawnSync(process.execPath, [join(__dirname, "wal-s3-release.js")], {
      input: JSON.stringify(job),
      stdio: ["pipe", "ignore", "inherit"],
      timeout: 60_000,
    });
  }

  /** The object key of a slave-directory path ("/a/b" → "a/b"). */
  key(path: string): string {
    return posix.normalize(`/${path}`).replace(/^\/+/, "").replace(/\/+$/, "");
  }

  async info(path: string): Promise<FileInfo | undefined> {
    const key = this.key(path);
    if (key === "") return { size: 0, mtimeMs: 0, isDirectory: true };
    const req: S3Request = { method: "HEAD", key };
    const res = await this.client.send(req);
    if (res.status === 200) {
      return {
        size: Number(res.headers["content-length"] ?? 0),
        mtimeMs: Date.parse(String(res.headers["last-modified"] ?? "")) || 0,
        isDirectory: false,
        isFile: true,
      };
    }
    if (res.status !== 404) this.client.fail(req, res);
    const page = await this.listPage(`${key}/`, undefined, undefined, 1);
    return page.keys.length + page.prefixes.length > 0 ? { size: 0, mtimeMs: 0, isDirectory: true } : undefined;
  }

  /**
   * The names directly under `dir` (objects and common prefixes). S3 keys are opaque strings, so a
   * bucket may hold keys no walmgr-ts writer makes (`…/..`, `…//x`): a name that is not one plain
   * name (rel-path.ts isSafeName) is left out, never handed to a caller that joins it to a path.
   */
  async list(dir: string): Promise<string[] | undefined> {
    const key = this.key(dir);
    const prefix = key === "" ? "" : `${key}/`;
    const names: string[] = [];
    let any = false;
    let token: string | undefined;
    do {
      const page = await this.listPage(prefix, "/", token);
      for (const k of page.keys) {
        any = true;
        const n = k.slice(prefix.length);
        if (isSafeName(n)) names.push(n);
      }
      for (const p of page.prefixes) {
        any = true;
        const n = p.slice(prefix.length).replace(/\/$/, "");
        if (isSafeName(n)) names.push(n);
      }
      token = page.next;
    } while (token !== undefined);
    return any || key === "" ? names : undefined;
  }

  /** Every key below `dir` (recursive), relative to it, folder markers included (ending in /). */
  async listAll(dir: string): Promise<{ rel: string; size: number }[]> {
    const key = this.key(dir);
    const prefix = key === "" ? "" : `${key}/`;
    const out: { rel: string; size: number }[] = [];
    let token: string | undefined;
    do {
      const page = await this.listPage(prefix, undefined, token);
      page.keys.forEach((k, i) => out.push({ rel: k.slice(prefix.length), size: page.sizes[i] ?? 0 }));
      token = page.next;
    } while (token !== undefined);
    return out;
  }

  /**
   * One page of ListObjectsV2 (keys with sizes and modification times, common prefixes). An
   * answer that is not a complete page of this listing is a TransportError, never an empty
   * page: purge and cleanup decide what to delete from listings.
   */
  async listPage(
    prefix: string,
    delimiter: string | undefined,
    token: string | undefined,
    max = 1000,
  ): Promise<ListPage> {
    const req: S3Request = {
      method: "GET",
      key: "",
      query: {
        "list-type": "2",
        prefix,
        "max-keys": String(max),
        ...(delimiter !== undefined ? { delimiter } : {}),
        ...(token !== undefined ? { "continuation-token": token } : {}),
      },
    };
    return this.client.listing(req, await this.client.send(req), prefix);
  }

  /** True when an object is stored under `key` (one HEAD; a folder prefix does not count). */
  async has(key: string): Promise<boolean> {
    const req: S3Request = { method: "HEAD", key };
    const res = await this.client.send(req);
    if (res.status === 200) return true;
    if (res.status !== 404) this.client.fail(req, res);
    return false;
  }

  async remove(path: string): Promise<boolean> {
    const key = this.key(path);
    if (!(await this.has(key))) return false;
    await this.deleteKey(key);
    this.written.delete(path);
    return true;
  }

  async deleteKey(key: string): Promise<void> {
    const req: S3Request = { method: "DELETE", key };
    const res = await this.client.send(req);
    if (res.status !== 204 && res.status !== 200 && res.status !== 404) this.client.fail(req, res);
  }

  async pathCreate(dir: string): Promise<void> {
    const key = this.key(dir);
    if (key === "") return;
    const req: S3Request = { method: "PUT", key: `${key}/`, body: Buffer.alloc(0) };
    const res = await this.client.send(req);
    if (res.status !== 200) this.client.fail(req, res);
  }

  async newRead(path: string): Promise<ReadStream | undefined> {
    const req: S3Request = { method: "GET", key: this.key(path), stream: true };
    const res = await this.client.send(req);
    if (res.status === 404) return undefined;
    if (!res.stream) this.client.fail(req, res);
    const size = Number(res.headers["content-length"] ?? -1);
    return new S3Read(res.stream, size, this.client.url(req.key));
  }

  async newWrite(path: string, opts: WriteOptions = {}): Promise<WriteHandle> {
    return new S3Write(this, path, opts);
  }

  private async manifest(dir: string): Promise<Manifest> {
    const files: Manifest["files"] = {};
    for (const { rel } of await this.listAll(dir)) {
      if (rel === "" || rel.endsWith("/") || isOwnMetadata(rel)) continue;
      const path = posix.join(dir, rel);
      let got = this.written.get(path);
      if (got === undefined) {
        // Not stored by this process: read it back and hash it where it is.
        const stream = await this.newRead(path);
        if (stream === undefined) continue; // removed meanwhile
        const { sha256, bytes } = await hashStream(chunks(stream));
        got = { size: bytes, sha256 };
      }
      files[rel] = got;
    }
    return { files };
  }

  private async removeTree(path: string): Promise<void> {
    const key = this.key(path);
    const all = await this.listAll(path);
    // The metadata of a set (top-level dot files) goes first: a half-removed set is never listed as complete.
    const order = [...all].sort((a, b) => Number(isSetMetadata(b.rel)) - Number(isSetMetadata(a.rel)));
    await eachLimit(order, PARALLEL, async ({ rel }) => {
      await this.deleteKey(`${key}/${rel}`);
      this.written.delete(posix.join(path, rel));
    });
    await this.deleteKey(`${key}/`);
  }

  /**
   * No rename in S3: each object is copied server-side, the set's metadata (top-level dot files)
   * last, then the sources are removed, metadata first. Killed in between, the source stays
   * whole (its metadata goes first only once the copy is complete) and a rerun resumes: a
   * destination without metadata counts as an unfinished copy, not as an existing set.
   */
  private async renameDir(from: string, to: string): Promise<void> {
    const src = this.key(from);
    const dst = this.key(to);
    const have = await this.listAll(to);
    if (have.some((e) => isSetMetadata(e.rel))) {
      throw new IoError(`cannot rename ${this.client.url(src)} to ${this.client.url(dst)}: the destination exists`);
    }
    const all = await this.listAll(from);
    if (all.length === 0) throw new IoError(`cannot rename ${this.client.url(src)}: it does not exist`);
    const meta = all.filter((e) => isSetMetadata(e.rel));
    const body = all.filter((e) => !isSetMetadata(e.rel));
    const copy = async ({ rel }: { rel: string }): Promise<void> => {
      const req: S3Request = {
        method: "PUT",
        key: `${dst}/${rel}`,
        headers: {
          "x-amz-copy-source": `/${this.client.target.bucket}/${`${src}/${rel}`.split("/").map(encodeURIComponent).join("/")}`,
        },
      };
      // S3 may answer 200 and report the failure in the body: only a CopyObjectResult is a copy.
      this.client.document(req, await this.client.send(req), "CopyObjectResult");
      const w = this.written.get(posix.join(from, rel));
      if (w) this.written.set(posix.join(to, rel), w);
    };
    await eachLimit(body, PARALLEL, copy);
    for (const e of meta) await copy(e);
    await this.pathCreate(to);
    await this.removeTree(from);
  }
}

/** A set's metadata (top-level dot files): copied last and removed first, so a half-moved set is never complete. */
function isSetMetadata(rel: string): boolean {
  return rel !== "" && !rel.includes("/") && rel.startsWith(".");
}

/** A GET's body that errors (never just ends) when fewer bytes came than announced. */
class S3Read extends Readable implements ReadStream {
  private got = 0;

  constructor(
    private readonly res: IncomingMessage,
    private readonly size: number,
    private readonly url: string,
  ) {
    super({ highWaterMark: 1 << 20 });
    // (The client bounds the download as a whole: past its time, `res` errors.)
    res.on("data", (c: Buffer) => {
      this.got += c.length;
      if (!this.push(c)) res.pause();
    });
    res.on("end", () => {
      if (this.size >= 0 && this.got !== this.size) {
        this.destroy(new TransportError(`reading ${url}: the answer ended after ${this.got} of ${this.size} bytes`));
      } else this.push(null);
    });
    const fail = (err: Error): void => {
      this.destroy(new TransportError(`reading ${this.url}: ${err.message}`, "check that the S3 endpoint is up"));
    };
    res.on("error", fail);
    // (A download the client cut off is destroyed with its reason: that reason, not "closed".)
    res.on("aborted", () => fail(res.errored ?? new Error("the connection closed in the middle of the object")));
  }

  override _read(): void {
    this.res.resume();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.res.destroy();
    cb(err);
  }
}

/**
 * An upload: bytes gather in one part-size buffer; a full buffer becomes a part of a multipart
 * upload (the write callback fires once it is stored, so the buffer is reused, never piled up);
 * `commit` sends what is left as one PUT (the whole object, when it fits one part) or the last
 * part and completes the upload. Nothing is visible under the name before that answer.
 */
class S3Write extends Writable implements WriteHandle {
  private small: Buffer[] = [];
  private buf: Buffer | undefined;
  private fill = 0;
  private total = 0;
  private readonly hash = newSha256();
  private uploadId: string | undefined;
  private readonly parts: string[] = [];
  private readonly token = randomBytes(12).toString("hex");
  private done = false;
  private claimed = false;
  private readonly key: string;

  constructor(
    private readonly driver: S3Driver,
    private readonly path: string,
    private readonly opts: WriteOptions,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.key = driver.key(path);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.add(chunk).then(() => cb(), cb);
  }

  private async add(chunk: Buffer): Promise<void> {
    this.hash.update(chunk);
    this.total += chunk.length;
    let off = 0;
    while (off < chunk.length) {
      // A full buffer becomes a part only once more bytes come: an object of exactly one part
      // (a 16 MiB segment at the default part size) is then one PUT, not a one-part upload.
      if (this.buf !== undefined && this.fill === this.buf.length) await this.flushPart();
      if (this.buf === undefined && this.fill + chunk.length - off <= SMALL) {
        this.small.push(Buffer.from(chunk.subarray(off)));
        this.fill += chunk.length - off;
        return;
      }
      if (this.buf === undefined) {
        this.buf = Buffer.allocUnsafe(this.driver.partSize);
        this.fill = 0;
        for (const s of this.small) {
          s.copy(this.buf, this.fill);
          this.fill += s.length;
        }
        this.small = [];
      }
      const n = Math.min(this.buf.length - this.fill, chunk.length - off);
      chunk.copy(this.buf, this.fill, off, off + n);
      this.fill += n;
      off += n;
    }
  }

  private pending(): Buffer {
    return this.buf !== undefined ? this.buf.subarray(0, this.fill) : Buffer.concat(this.small);
  }

  private async flushPart(): Promise<void> {
    const c = this.driver.client;
    if (this.uploadId === undefined) {
      const req: S3Request = {
        method: "POST",
        key: this.key,
        query: { uploads: "" },
      };
      const doc = c.document(req, await c.send(req), "InitiateMultipartUploadResult");
      const id = childText(doc.body, "UploadId");
      if (!id) throw new TransportError(`S3 POST ${c.url(this.key)}?uploads: the answer names no UploadId`);
      this.uploadId = id;
    }
    const body = this.pending();
    const req: S3Request = {
      method: "PUT",
      key: this.key,
      query: { partNumber: String(this.parts.length + 1), uploadId: this.uploadId ?? "" },
      body,
      bodySha256: sha256(body),
    };
    const res = await c.send(req);
    if (res.status !== 200) c.fail(req, res);
    this.parts.push(String(res.headers.etag ?? ""));
    this.fill = 0;
  }

  private exists(): Promise<boolean> {
    return this.driver.has(this.key);
  }

  async commit(): Promise<boolean> {
    if (this.done) throw new Error(`${this.path}: write handle already finished`);
    try {
      if (!this.writableFinished) {
        await new Promise<void>((res, rej) => {
          this.once("error", rej);
          this.end(() => res());
        });
      }
      if (this.opts.padTo !== undefined && this.total < this.opts.padTo) {
        const zeros = Buffer.alloc(Math.min(1 << 20, this.opts.padTo - this.total));
        while (this.total < this.opts.padTo)
          await this.add(zeros.subarray(0, Math.min(zeros.length, this.opts.padTo - this.total)));
      }
      const c = this.driver.client;
      if (this.uploadId === undefined) {
        if (this.opts.exclusive && !(await this.claim())) return this.finish(false);
        const body = this.pending();
        const req: S3Request = {
          method: "PUT",
          key: this.key,
          body,
          bodySha256: sha256(body),
        };
        const res = await c.send(req);
        if (res.status !== 200) c.fail(req, res);
      } else {
        if (this.fill > 0) await this.flushPart();
        if (this.opts.exclusive && !(await this.claim())) {
          await this.abortUpload();
          return this.finish(false);
        }
        const xml = `<CompleteMultipartUpload>${this.parts.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("")}</CompleteMultipartUpload>`;
        const req: S3Request = {
          method: "POST",
          key: this.key,
          query: { uploadId: this.uploadId },
          body: Buffer.from(xml),
        };
        // S3 may answer 200 and still report an error in the body.
        c.document(req, await c.send(req), "CompleteMultipartUploadResult");
        this.uploadId = undefined;
      }
      await this.dropClaim();
      this.driver.written.set(this.path, { size: this.total, sha256: this.hash.digest("hex") });
      return this.finish(true);
    } catch (err) {
      await this.abort();
      await this.dropClaim().catch(() => undefined);
      throw err;
    }
  }

  /** Key of this writer's claim on the name (see `claim`). */
  private claimKey(): string {
    return `${posix.dirname(this.key)}/${CLAIMS}/${posix.basename(this.key)}/${this.token}`;
  }

  /**
   * Exclusive create without conditional writes: the writer first publishes a claim on the name
   * (`DIR/.walmgr-claims/NAME/TOKEN`, naming its process), then lists the name's claims. It
   * goes on only when the name is still free and no other live claim is listed; otherwise it
   * withdraws its claim and reports the name taken (the caller compares content, or PostgreSQL
   * retries). Of two writers, the one whose claim became visible second sees the first one's
   * claim in its listing, so at most one goes on: this holds when listings are read-after-write
   * consistent (AWS S3, MinIO, Ceph, and Swift with synchronous container updates). A claim
   * stays until its writer's object is stored; a writer that died leaves one that is ignored at
   * once when it provably belongs to a dead process of this host, else after CLAIM_TTL_MS.
   */
  private async claim(): Promise<boolean> {
    const c = this.driver.client;
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      // (No look before the first claim: callers looked already, and the look after the listing decides.)
      if (round > 0 && (await this.exists())) return false;
      const put: S3Request = { method: "PUT", key: this.claimKey(), body: lockBody(selfLockInfo("claim")) };
      const res = await c.send(put);
      if (res.status !== 200) c.fail(put, res);
      this.claimed = true;
      const other = await this.otherLiveClaim();
      if (other === undefined) {
        // Free when we listed, and nobody can take it now without a claim we would have seen;
        // but a writer that finished before our claim (and withdrew its own) may have stored it.
        if (await this.exists()) {
          await this.dropClaim();
          return false;
        }
        return true;
      }
      // Another writer holds the name: step back and wait for its object (then the caller
      // compares content, as with a name that was taken all along) or for its claim to go.
      await this.dropClaim();
      const deadline = Date.now() + CLAIM_WAIT_MS;
      for (;;) {
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 60));
        if (await this.exists()) return false;
        if ((await this.driver.info(`/${other}`)) === undefined) break; // withdrawn: try again
        if (Date.now() > deadline) return false;
      }
      // Both writers may have stepped back for each other and see each other's claims go at
      // the same moment: a random wait that grows with the rounds keeps them from claiming in
      // step again (without it both gave up after every round, now and then).
      await new Promise((r) => setTimeout(r, Math.random() * 50 * 2 ** round));
    }
    return false;
  }

  /** The key of a live claim on the name other than ours, if any. */
  private async otherLiveClaim(): Promise<string | undefined> {
    const page = await this.driver.listPage(`${posix.dirname(this.claimKey())}/`, undefined, undefined);
    const now = Date.now();
    for (let i = 0; i < page.keys.length; i++) {
      const key = page.keys[i] ?? "";
      if (key === this.claimKey()) continue;
      // A claim whose writer is provably dead (or long gone) is litter: removed, never waited for.
      if (now - (page.modified[i] ?? 0) > CLAIM_TTL_MS || (await this.claimOfDeadWriter(key))) {
        await this.driver.deleteKey(key).catch(() => undefined);
        continue;
      }
      return key;
    }
    return undefined;
  }

  /** True when the claim at `key` names a process of this host that is gone. */
  private async claimOfDeadWriter(key: string): Promise<boolean> {
    const raw = await readBytes(this.driver, `/${key}`);
    if (raw === undefined) return true; // withdrawn meanwhile
    return judgeHolder(parseLockInfo(raw.toString("utf8")), WALMGR_PROGRAMS).state === "stale";
  }

  private async dropClaim(): Promise<void> {
    if (!this.claimed) return;
    this.claimed = false;
    await this.driver.deleteKey(this.claimKey());
  }

  private finish(v: boolean): boolean {
    this.done = true;
    this.small = [];
    this.buf = undefined;
    return v;
  }

  private async abortUpload(): Promise<void> {
    const id = this.uploadId;
    if (id === undefined) return;
    this.uploadId = undefined;
    // Best effort: an unfinished upload is invisible; a bucket lifecycle rule reaps what is left.
    await this.driver.client.send({ method: "DELETE", key: this.key, query: { uploadId: id } }).catch(() => undefined);
  }

  async abort(): Promise<void> {
    if (this.done) return;
    this.finish(false);
    if (!this.destroyed) this.destroy();
    await this.abortUpload();
  }
}
