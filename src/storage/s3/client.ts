/**
 * A small S3 client: SigV4 signing by `aws4` (zero dependencies, loads in milliseconds: the
 * archive_command starts once per segment, and @aws-sdk/client-s3 costs 0.2-0.4 s to load and
 * warns on stderr, PostgreSQL's log, on Node 20) over Node's own http/https with keep-alive.
 * Requests that fail with 5xx/408/429 or a network error are retried with backoff. Every
 * attempt is bounded as a whole (sent, answered and its body read), never only while it is
 * idle: a peer that trickles a byte a second is cut off like one that says nothing. The call's
 * deadline (deadline.ts: wal-restore, wal-archive, check) bounds the attempts and the retries
 * together. When they are spent, the failure is a TransportError (exit 6) naming endpoint,
 * bucket and key, never the secret. XML answers are checked to be the document asked for
 * (xml.ts): a 200 that is not one is a TransportError, never an empty result.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import aws4 from "aws4";
import { callDeadline, callTimeLeft, formatSeconds } from "../../deadline";
import { TransportError } from "../../errors";
import type { Credentials } from "./credentials";
import { describeBody, parseDocument, parseError, parseListing, type ListPage, type S3Document } from "./xml";

export { parseError } from "./xml";

export interface S3Target {
  endpoint: URL;
  region: string;
  bucket: string;
  /** endpoint/bucket/key (path style) or bucket.endpoint/key (virtual host). */
  pathStyle: boolean;
  /**
   * Milliseconds one attempt of a request may take as a whole: sent, answered and its body
   * read. A streamed download gets this much for every `paceBytes` of its announced size.
   */
  timeoutMs: number;
  /** The setting `timeoutMs` comes from, for messages (default "s3_timeout"). */
  timeoutSetting?: string;
  /** Bytes of a streamed body that each `timeoutMs` covers (s3_part_size: the pace an upload of parts keeps too). */
  paceBytes?: number;
  /** Retries after the first attempt (within the call's deadline, when it has one). */
  retries: number;
  credentials: () => Credentials;
}

export interface S3Request {
  method: "GET" | "HEAD" | "PUT" | "POST" | "DELETE";
  /** Object key (no leading slash); "" for the bucket itself. */
  key: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Buffer;
  /** Hex sha256 of `body`, when the caller has it (saves hashing it twice). */
  bodySha256?: string;
  /** Resolve with the body as a stream on 200/206 instead of reading it (GET). */
  stream?: boolean;
}

export interface S3Response {
  status: number;
  headers: IncomingHttpHeaders;
  /** The body read whole (error documents, listings); empty for a streamed answer. */
  body: Buffer;
  /** The body, for `stream` requests answered 200/206. Errors (never just ends) when its attempt's time runs out. */
  stream?: IncomingMessage;
}

/** Error documents and listings are small; anything past this is cut (messages only). */
const BODY_LIMIT = 8 << 20;
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const DEFAULT_PACE = 16 << 20;
const IMPOSTOR_HINT =
  "something other than the object store answered (a proxy, a captive portal, a load balancer sending elsewhere?): check s3_endpoint and the network path to it";

/** RFC 3986 encoding of one path segment or query value, as SigV4 wants it. */
export function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export class S3Client {
  private readonly agent: http.Agent;
  private readonly lib: typeof http | typeof https;
  /** The last failed attempt of this process ("S3 GET …: why"): said again when the call's time is up. */
  private lastFailure: string | undefined;

  constructor(readonly target: S3Target) {
    const tls = target.endpoint.protocol === "https:";
    this.lib = tls ? https : http;
    // Keep-alive: a batch of segments, a backup's thousands of files reuse one connection.
    this.agent = new this.lib.Agent({ keepAlive: true, maxSockets: 16 });
  }

  /** `s3://bucket/key`, for messages. */
  url(key: string): string {
    return `s3://${this.target.bucket}/${key}`;
  }

  /** Closes idle connections (a one-shot command then exits at once). */
  close(): void {
    this.agent.destroy();
  }

  /** "S3 GET s3://bucket/key at http://host:port", for messages. */
  private what(req: S3Request): string {
    return `S3 ${req.method} ${this.url(req.key)} at ${this.target.endpoint.origin}`;
  }

  /**
   * Sends `req`, retrying what is worth retrying, and resolves with the final answer, whatever
   * its status (the caller judges it; `fail` words the error). Rejects with a TransportError
   * when no answer came after the retries, or the call's deadline left no time for another.
   */
  async send(req: S3Request): Promise<S3Response> {
    // Outside the retries: missing or unsafe credentials are the config's error (exit 3).
    const creds = this.target.credentials();
    let lastErr: Error | undefined;
    let attempts = 0;
    let outOfTime = false;
    for (let attempt = 0; attempt <= this.target.retries; attempt++) {
      if (attempt > 0) {
        const wait = backoffMs(attempt);
        if (callTimeLeft() <= wait) {
          outOfTime = true;
          break;
        }
        await new Promise((r) => setTimeout(r, wait));
      }
      if (callTimeLeft() <= 0) {
        outOfTime = true;
        break;
      }
      attempts++;
      try {
        const res = await this.once(req, creds);
        const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
        if (!retryable || attempt >= this.target.retries) return res;
        res.stream?.destroy();
        lastErr = new Error(`HTTP ${res.status}${describeError(res.body)}`);
      } catch (err) {
        lastErr = err as Error;
      }
      this.lastFailure = `${this.what(req)}: ${lastErr.message}`;
    }
    const deadline = callDeadline();
    if (attempts === 0) {
      throw new TransportError(
        `${this.what(req)} not sent: this call's time is up (${deadline?.what ?? "?"})${this.lastFailure ? `; the last failure: ${this.lastFailure}` : ""}`,
        "the endpoint answered too slowly for this call: check it and the network (s3_endpoint), or allow more time",
      );
    }
    throw new TransportError(
      `${this.what(req)} failed after ${attempts} attempt(s)${outOfTime && deadline ? ` (no time left for another within ${deadline.what})` : ""}: ${lastErr?.message ?? "?"}`,
      "check that the endpoint is up and reachable (s3_endpoint), and s3_timeout/s3_retries",
    );
  }

  /** Throws the TransportError for an unexpected answer to `req`. */
  fail(req: S3Request, res: S3Response): never {
    const { code, message } = parseError(res.body);
    const what = this.what(req);
    const creds = this.target.credentials();
    if (res.status === 403 || code === "SignatureDoesNotMatch" || code === "InvalidAccessKeyId") {
      throw new TransportError(
        `${what}: access denied (${code || `HTTP ${res.status}`}${message ? `: ${message}` : ""}) for access key ${creds.accessKeyId} from ${creds.source}`,
        "check the key pair (s3_access_key/s3_secret_key, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or ~/.aws/credentials) and its rights on the bucket",
      );
    }
    if (code === "NoSuchBucket") {
      throw new TransportError(
        `${what}: the bucket ${this.target.bucket} does not exist`,
        "create the bucket, or fix the bucket in 'slave = s3://BUCKET/PREFIX'",
      );
    }
    if (code !== "") throw new TransportError(`${what}: HTTP ${res.status} ${code}${message ? `: ${message}` : ""}`);
    // No S3 error document: say what came instead (an HTML page from a proxy, say).
    const came = res.body.length > 0 ? `, not an S3 answer: ${describeBody(contentType(res), res.body)}` : "";
    throw new TransportError(`${what}: HTTP ${res.status}${came}`, came ? IMPOSTOR_HINT : undefined);
  }

  /**
   * The answer to `req` as the S3 document `root` (InitiateMultipartUploadResult …). Anything
   * else is a TransportError: an error status or an Error document (even with 200, as S3 sends
   * for a failed completion or copy) through `fail`; a 200 with another body (HTML, another
   * document, a cut one) naming what came.
   */
  document(req: S3Request, res: S3Response, root: string): S3Document {
    if (res.status !== 200) this.fail(req, res);
    const doc = parseDocument(res.body);
    if (doc?.root === "Error") this.fail(req, res);
    if (doc?.root !== root) {
      throw new TransportError(
        `${this.what(req)}: HTTP 200, but the answer is not an S3 ${root}: ${describeBody(contentType(res), res.body)}`,
        IMPOSTOR_HINT,
      );
    }
    return doc;
  }

  /**
   * The answer to the ListObjectsV2 request `req` for `prefix`, checked (xml.ts parseListing):
   * anything but a complete, consistent page of that listing is a TransportError naming what
   * came, never an empty page.
   */
  listing(req: S3Request, res: S3Response, prefix: string): ListPage {
    if (res.status !== 200) this.fail(req, res);
    const page = parseListing(res.body, prefix);
    if (typeof page !== "string") return page;
    if (parseDocument(res.body)?.root === "Error") this.fail(req, res);
    throw new TransportError(
      `${this.what(req)} (a listing of ${JSON.stringify(prefix)}): HTTP 200, but the answer is ${page}: ${describeBody(contentType(res), res.body)}`,
      IMPOSTOR_HINT,
    );
  }

  private once(req: S3Request, creds: Credentials): Promise<S3Response> {
    const t = this.target;
    const keyPath = req.key === "" ? "" : `/${req.key.split("/").map(encodeRfc3986).join("/")}`;
    const query = Object.entries(req.query ?? {})
      .map(([k, v]) => (v === "" ? encodeRfc3986(k) : `${encodeRfc3986(k)}=${encodeRfc3986(v)}`))
      .join("&");
    const host = t.pathStyle ? t.endpoint.host : `${t.bucket}.${t.endpoint.host}`;
    const base = t.endpoint.pathname.replace(/\/+$/, "");
    const path = `${base}${t.pathStyle ? `/${t.bucket}` : ""}${keyPath || (t.pathStyle ? "" : "/")}${query ? `?${query}` : ""}`;
    const headers: Record<string, string> = {
      ...(req.headers ?? {}),
      "x-amz-content-sha256": req.bodySha256 ?? (req.body ? "" : EMPTY_SHA256),
    };
    if (headers["x-amz-content-sha256"] === "") delete headers["x-amz-content-sha256"]; // aws4 hashes the body
    if (req.body) {
      headers["content-length"] = String(req.body.length);
      headers["content-type"] ??= "application/octet-stream"; // aws4 would say form-urlencoded
    } else if (req.method === "PUT" || req.method === "POST") headers["content-length"] = "0";
    const opts = aws4.sign(
      {
        host,
        path,
        method: req.method,
        service: "s3",
        region: t.region,
        headers,
        ...(req.body ? { body: req.body } : {}),
      },
      {
        accessKeyId: creds.accessKeyId,
        secretAccessKey: creds.secretAccessKey,
        ...(creds.sessionToken ? { sessionToken: creds.sessionToken } : {}),
      },
    );
    // The attempt's time: its own limit, or what is left of the call's, whichever ends first.
    const started = Date.now();
    const own = t.timeoutMs;
    const left = callTimeLeft(started);
    const cut = (limitMs: number, what: string, perPart = false): string =>
      limitMs >= left
        ? `${what} within ${formatSeconds(limitMs / 1000)}, all the time left of ${callDeadline()?.what ?? "the call's"}`
        : `${what} within ${formatSeconds(limitMs / 1000)} (${t.timeoutSetting ?? "s3_timeout"}${perPart ? " per s3_part_size of it" : ""})`;
    return new Promise<S3Response>((resolve, reject) => {
      let res: IncomingMessage | undefined;
      let timer: NodeJS.Timeout | undefined;
      /** (Re)arms the attempt's cut-off `limitMs` after it started. */
      const arm = (limitMs: number, message: string): void => {
        clearTimeout(timer);
        timer = setTimeout(
          () => {
            const err = new Error(message);
            reject(err); // (no effect once the answer was handed over: the stream errors instead)
            res?.destroy(err);
            r.destroy(err);
          },
          Math.max(0, started + limitMs - Date.now()),
        );
      };
      const done = (): void => clearTimeout(timer);
      const r = this.lib.request(
        {
          protocol: t.endpoint.protocol,
          hostname: t.pathStyle ? t.endpoint.hostname : `${t.bucket}.${t.endpoint.hostname}`,
          port: t.endpoint.port || undefined,
          method: req.method,
          path,
          headers: opts.headers as http.OutgoingHttpHeaders,
          agent: this.agent,
        },
        (answer) => {
          res = answer;
          answer.once("close", done);
          const status = answer.statusCode ?? 0;
          if (req.stream && (status === 200 || status === 206)) {
            // A download's body gets `own` for every paceBytes of it: a 1 GiB relation file is
            // not cut at s3_timeout, a peer that trickles is cut at the same pace.
            const size = Number(answer.headers["content-length"]);
            const parts = Number.isSafeInteger(size) && size > 0 ? Math.ceil(size / (t.paceBytes ?? DEFAULT_PACE)) : 1;
            const limit = Math.min(own * Math.max(1, parts), left);
            arm(
              limit,
              cut(limit, `not all of the ${Number.isSafeInteger(size) ? `${size}-byte ` : ""}object`, parts > 1),
            );
            resolve({ status, headers: answer.headers, body: Buffer.alloc(0), stream: answer });
            return;
          }
          const chunks: Buffer[] = [];
          let size = 0;
          answer.on("data", (c: Buffer) => {
            if (size < BODY_LIMIT) chunks.push(c);
            size += c.length;
          });
          answer.on("end", () => resolve({ status, headers: answer.headers, body: Buffer.concat(chunks) }));
          answer.on("error", reject);
          answer.on("aborted", () => reject(new Error("the connection closed in the middle of the answer")));
        },
      );
      arm(Math.min(own, left), cut(Math.min(own, left), "no complete answer"));
      r.on("error", (err: NodeJS.ErrnoException) => {
        if (res === undefined) done();
        reject(new Error(err.code && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message));
      });
      r.end(req.body);
    });
  }
}

function backoffMs(attempt: number): number {
  return Math.min(2000, 100 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
}

function contentType(res: S3Response): string | undefined {
  const ct = res.headers["content-type"];
  return typeof ct === "string" ? ct : undefined;
}

function describeError(body: Buffer): string {
  const { code, message } = parseError(body);
  return code ? ` ${code}${message ? `: ${message}` : ""}` : "";
}
