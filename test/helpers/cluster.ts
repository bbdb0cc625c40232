/** Real PostgreSQL clusters for the integration tests: initdb in a temp folder, socket in it. */
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { Client } from "pg";
import { pgBin, run } from "./env";

/** A TCP port nobody listens on right now (the servers use unix sockets, but ports name them). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolvePort(addr.port) : reject(new Error("no port"))));
    });
  });
}

export class Cluster {
  constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly socketDir: string,
    readonly logFile: string,
  ) {}

  /**
   * initdb a new cluster under `base`/`name` (superuser "postgres", trust auth on the socket);
   * `initdbArgs` go last (`--wal-segsize=1`: 1 MiB segments, for tests that switch many).
   */
  static async create(base: string, name: string, initdbArgs: string[] = []): Promise<Cluster> {
    const port = await freePort();
    const c = new Cluster(join(base, name), port, base, join(base, `${name}.log`));
    const res = run(pgBin("initdb"), [
      "-D",
      c.dataDir,
      "-U",
      "postgres",
      "-A",
      "trust",
      "--no-sync",
      "-E",
      "UTF8",
      "--locale=C",
      ...initdbArgs,
    ]);
    if (res.status !== 0) throw new Error(`initdb failed: ${res.stderr}`);
    appendFileSync(
      join(c.dataDir, "postgresql.conf"),
      [
        "",
        `port = ${port}`,
        `unix_socket_directories = '${base}'`,
        "listen_addresses = ''",
        "fsync = off",
        "shared_buffers = 16MB",
        "max_wal_size = 256MB",
        "log_min_messages = info",
        "",
      ].join("\n"),
    );
    return c;
  }

  /** The command that starts this cluster (also what slave_start_cmd runs). */
  startCommand(dataDir = this.dataDir): string {
    return `${pgBin("pg_ctl")} -D '${dataDir}' -w -t 120 -l '${this.logFile}' -o '-p ${this.port} -k ${this.socketDir}' start`;
  }

  start(): void {
    const res = run("/bin/sh", ["-c", this.startCommand()]);
    if (res.status !== 0) throw new Error(`pg_ctl start failed: ${res.stdout}${res.stderr}\n${this.log()}`);
  }

  stop(mode: "fast" | "immediate" = "fast"): void {
    if (!existsSync(join(this.dataDir, "postmaster.pid"))) return;
    run(pgBin("pg_ctl"), ["-D", this.dataDir, "-w", "-m", mode, "stop"]);
  }

  log(): string {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-40).join("\n");
    } catch {
      return "";
    }
  }

  get conninfo(): string {
    return `host=${this.socketDir} port=${this.port} dbname=postgres user=postgres`;
  }

  async query<T extends Record<string, unknown> = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
  ): Promise<T[]> {
    const client = new Client({ host: this.socketDir, port: this.port, user: "postgres", database: "postgres" });
    await client.connect();
    try {
      return (await client.query(sql, params)).rows as T[];
    } finally {
      await client.end();
    }
  }

  async value<T>(sql: string, params: unknown[] = []): Promise<T> {
    const rows = await this.query(sql, params);
    const row = rows[0];
    if (!row) throw new Error(`no row from ${sql}`);
    return Object.values(row)[0] as T;
  }

  pgbench(args: string[]): void {
    const res = run(pgBin("pgbench"), [
      "-h",
      this.socketDir,
      "-p",
      String(this.port),
      "-U",
      "postgres",
      ...args,
      "postgres",
    ]);
    if (res.status !== 0) throw new Error(`pgbench ${args.join(" ")} failed: ${res.stderr}`);
  }
}
