/**
 * A loopback HTTP proxy in front of the test Swift (test/helpers/swift.ts) that misbehaves on
 * command, for the S3 tests of answers that are not what they claim to be and of peers that
 * trickle: it forwards every request unchanged (the Host header too, so SigV4 signatures made
 * for the proxy's address still verify), except that it can
 *  - answer the listings (GET ?list-type=2) whose prefix matches with HTTP 200 and an HTML page,
 *    as a captive portal or a misrouted load balancer does (`htmlForListings`);
 *  - send answers a byte (or a few) at a time, status line and headers included, or only the
 *    body after the head went out at once (`trickle`).
 * It runs in the test process: whatever goes through it must be spawned (spawnBin), never run
 * with spawnSync, or the proxy cannot answer. Also `blackHole`: a port that accepts connections
 * and never answers.
 */
import {
  createServer as createHttpServer,
  request as httpRequest,
  STATUS_CODES,
  type IncomingMessage,
  type Server,
} from "node:http";
import { createServer as createNetServer, type Socket } from "node:net";

export const PORTAL_PAGE = `<!DOCTYPE html>
<html><head><title>Network login</title></head>
<body><h1>Welcome</h1><p>Please sign in to use this network.<br>
<form method="post" action="/login"><input name="user"></form></p></body></html>
`;

export class S3Proxy {
  /** Listings whose prefix matches get the portal page (undefined: forwarded). */
  htmlForListings: RegExp | undefined;
  /**
   * Answers (those `match` picks, default all) go out one byte (or `bytes`) per `everyMs`: all
   * of it, or with `bodyOnly` the status line and headers at once and then the body (undefined:
   * all at once).
   */
  trickle:
    | { everyMs: number; bytes?: number; bodyOnly?: boolean; match?: (method: string, url: string) => boolean }
    | undefined;
  /** Listings answered with the portal page so far (prefixes). */
  readonly portalServed: string[] = [];
  /** Requests seen so far ("GET /bucket?…"). */
  readonly seen: string[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly upstreamPort: number,
  ) {}

  /** http://127.0.0.1:PORT */
  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts a proxy to 127.0.0.1:`upstreamPort` on a free loopback port. */
  static async start(upstreamPort: number): Promise<S3Proxy> {
    const server = createHttpServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const addr = server.address();
    if (addr === null || typeof addr === "string") throw new Error("the proxy has no port");
    const proxy = new S3Proxy(server, addr.port, upstreamPort);
    server.on("connection", (s: Socket) => {
      proxy.sockets.add(s);
      s.on("close", () => proxy.sockets.delete(s));
    });
    server.on("request", (req: IncomingMessage) => {
      const url = new URL(req.url ?? "/", "http://proxy");
      proxy.seen.push(`${req.method ?? "?"} ${req.url ?? ""}`);
      const prefix = url.searchParams.get("prefix") ?? "";
      if (
        req.method === "GET" &&
        url.searchParams.get("list-type") === "2" &&
        proxy.htmlForListings !== undefined &&
        proxy.htmlForListings.test(prefix)
      ) {
        proxy.portalServed.push(prefix);
        req.resume();
        proxy.answer(req.socket, req, 200, ["Content-Type", "text/html; charset=utf-8"], Buffer.from(PORTAL_PAGE));
        return;
      }
      const up = httpRequest(
        {
          host: "127.0.0.1",
          port: proxy.upstreamPort,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent: false,
        },
        (upRes) => {
          const chunks: Buffer[] = [];
          upRes.on("data", (c: Buffer) => chunks.push(c));
          upRes.on("end", () => {
            const raw: string[] = [];
            for (let i = 0; i + 1 < upRes.rawHeaders.length; i += 2) {
              const name = upRes.rawHeaders[i] ?? "";
              if (/^(connection|keep-alive|transfer-encoding|content-length)$/i.test(name)) continue;
              raw.push(name, upRes.rawHeaders[i + 1] ?? "");
            }
            // A HEAD answer keeps the object's Content-Length; others get their body's (answer()).
            const length = req.method === "HEAD" ? (upRes.headers["content-length"] ?? "0") : undefined;
            if (length !== undefined) raw.push("Content-Length", String(length));
            proxy.answer(req.socket, req, upRes.statusCode ?? 502, raw, Buffer.concat(chunks));
          });
          upRes.on("error", () => req.socket.destroy());
        },
      );
      up.on("error", () => req.socket.destroy());
      req.pipe(up);
    });
    return proxy;
  }

  /**
   * Writes an answer straight to the client's socket (then closes it): at once, or trickled one
   * byte at a time (see `trickle`).
   */
  private answer(socket: Socket, req: IncomingMessage, status: number, headers: string[], body: Buffer): void {
    const head = req.method === "HEAD";
    const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}`];
    for (let i = 0; i + 1 < headers.length; i += 2) lines.push(`${headers[i] ?? ""}: ${headers[i + 1] ?? ""}`);
    if (!head) lines.push(`Content-Length: ${body.length}`);
    lines.push("Connection: close", "", "");
    const top = Buffer.from(lines.join("\r\n"), "latin1");
    const rest = head ? Buffer.alloc(0) : body;
    const t = this.trickle;
    if (t === undefined || !(t.match?.(req.method ?? "", req.url ?? "") ?? true)) {
      socket.end(Buffer.concat([top, rest]));
      return;
    }
    socket.on("error", () => undefined);
    let bytes: Buffer = Buffer.concat([top, rest]);
    if (t.bodyOnly) {
      socket.write(top);
      bytes = rest;
    }
    let at = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || at >= bytes.length) {
        clearInterval(timer);
        this.timers.delete(timer);
        if (!socket.destroyed) socket.end();
        return;
      }
      const n = t.bytes ?? 1;
      socket.write(bytes.subarray(at, at + n));
      at += n;
    }, t.everyMs);
    this.timers.add(timer);
  }

  /** Back to forwarding everything at once. */
  behave(): void {
    this.htmlForListings = undefined;
    this.trickle = undefined;
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** A loopback port that accepts connections and never answers (nor closes them). */
export async function blackHole(): Promise<{ port: number; endpoint: string; stop: () => Promise<void> }> {
  const held = new Set<Socket>();
  const server = createNetServer((s) => {
    held.add(s);
    s.on("error", () => undefined);
    s.on("close", () => held.delete(s));
    s.resume(); // read and drop whatever comes
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("the black hole has no port");
  return {
    port: addr.port,
    endpoint: `http://127.0.0.1:${addr.port}`,
    stop: async () => {
      for (const s of held) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
