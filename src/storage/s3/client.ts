/**
 * A small S3 client: SigV4 signing by `aws4` (zero dependencies, loads in milliseconds: the
 * archive_command starts once per segment, and @aws-sdk/client-s3 costs 0.2-0.4 s to load and
 * warns on stderr, PostgreSQL's log, on Node 20) over Node's own http/https with keep-alive.
 * Requests that fail with 5xx/408/429 or a network error are retried with backoff; a request
 * that stalls past the timeout is abandoned and retried; when the retries are spent, the
 * failure is a TransportError (exit 6) naming endpoint, bucket and key, never the secret.
 */
import http, { type IncomingHttpHeaders, type IncomingMessage } from "node:http";
import https from "node:https";
import aws4 from "aws4";
import { TransportError } from "../../errors";
import type { Credentials } from "./credentials";

export interface S3Target {
  endpoint: URL;
  region: string;
  bucket: string;
  /** endpoint/bucket/key (path style) or bucket.endpoint/key (virtual host). */
  pathStyle: boolean;
  /** Milliseconds a request may stall (no answer, no bytes) before it is abandoned. */
  timeoutMs: number;
  /** Retries after the first attempt. */
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
  /** The body, for `stream` requests answered 200/206. */
  stream?: IncomingMessage;
}

/** Error documents and listings are small; anything past this is cut (messages only). */
const BODY_LIMIT = 8 << 20;
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/** RFC 3986 encoding of one path segment or query value, as SigV4 wants it. */
export function encodeRfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export class S3Client {
  private readonly agent: http.Agent;
  private readonly lib: typeof http | typeof https;

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

  /**
   * Sends `req`, retrying what is worth retrying, and resolves with the final answer, whatever
   * its status (the caller judges it; `fail` words the error). Rejects with a TransportError
   * only when no answer came after the retries.
   */
  async send(req: S3Request): Promise<S3Response> {
    // Outside the retries: missing or unsafe credentials are the config's error (exit 3).
    const creds = this.target.credentials();
    let lastErr: Error | undefined;
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await backoff(attempt);
      try {
        const res = await this.once(req, creds);
        const retryable = res.status >= 500 || res.status === 408 || res.status === 429;
        if (!retryable || attempt >= this.target.retries) return res;
        res.stream?.destroy();
        lastErr = new Error(`HTTP ${res.status}${describeError(res.body)}`);
      } catch (err) {
        lastErr = err as Error;
        if (attempt >= this.target.retries) break;
      }
    }
    throw new TransportError(
      `S3 ${req.method} ${this.url(req.key)} at ${this.target.endpoint.origin} failed after ${this.target.retries + 1} attempt(s): ${lastErr?.message ?? "?"}`,
      "check that the endpoint is up and reachable (s3_endpoint), and s3_timeout/s3_retries",
    );
  }

  /** Throws the TransportError for an unexpected answer to `req`. */
  fail(req: S3Request, res: S3Response): never {
    const { code, message } = parseError(res.body);
    const what = `S3 ${req.method} ${this.url(req.key)} at ${this.target.endpoint.origin}`;
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
    throw new TransportError(`${what}: HTTP ${res.status}${code ? ` ${code}` : ""}${message ? `: ${message}` : ""}`);
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
    return new Promise<S3Response>((resolve, reject) => {
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
        (res) => {
          const status = res.statusCode ?? 0;
          if (req.stream && (status === 200 || status === 206)) {
            resolve({ status, headers: res.headers, body: Buffer.alloc(0), stream: res });
            return;
          }
          const parts: Buffer[] = [];
          let size = 0;
          res.on("data", (c: Buffer) => {
            if (size < BODY_LIMIT) parts.push(c);
            size += c.length;
          });
          res.on("end", () => resolve({ status, headers: res.headers, body: Buffer.concat(parts) }));
          res.on("error", reject);
          res.on("aborted", () => reject(new Error("the connection closed in the middle of the answer")));
        },
      );
      r.setTimeout(t.timeoutMs, () => r.destroy(new Error(`no answer within ${t.timeoutMs / 1000} s`)));
      r.on("error", (err: NodeJS.ErrnoException) =>
        reject(new Error(err.code && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message)),
      );
      r.end(req.body);
    });
  }
}

function backoff(attempt: number): Promise<void> {
  const ms = Math.min(2000, 100 * 2 ** (attempt - 1)) * (0.5 + Math.random() / 2);
  return new Promise((r) => setTimeout(r, ms));
}

/** Code and Message of an S3 error document (empty strings when it is none). */
export function parseError(body: Buffer): { code: string; message: string } {
  const text = body.subarray(0, 4096).toString("utf8");
  return { code: xmlText(text, "Code") ?? "", message: xmlText(text, "Message") ?? "" };
}

function describeError(body: Buffer): string {
  const { code, message } = parseError(body);
  return code ? ` ${code}${message ? `: ${message}` : ""}` : "";
}

const ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

/** Decodes XML character data (the five entities and numeric references). */
export function xmlDecode(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|amp|lt|gt|quot|apos);/g, (_, e: string) =>
    e.startsWith("#x")
      ? String.fromCodePoint(Number.parseInt(e.slice(2), 16))
      : e.startsWith("#")
        ? String.fromCodePoint(Number.parseInt(e.slice(1), 10))
        : (ENTITIES[e] ?? ""),
  );
}

/** The text of the first `<tag>` in `xml` (S3's documents are flat enough for this). */
export function xmlText(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m ? xmlDecode(m[1] ?? "") : undefined;
}

/** Every `<tag>…</tag>` block's inner text. */
export function xmlBlocks(xml: string, tag: string): string[] {
  const out: string[] = [];
  const re = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`, "g");
  for (let m = re.exec(xml); m; m = re.exec(xml)) out.push(m[1] ?? "");
  return out;
}
