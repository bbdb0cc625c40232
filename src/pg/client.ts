import type { Client } from "pg";
import type { Config } from "../config/load";
import { ConfigError, DatabaseError } from "../errors";
import { readFileSync, statSync } from "node:fs";
import { describeConn, parseConninfo, withLibpqDefaults, type PgConnectionConfig } from "./conninfo";
import { readPostmaster } from "./server";

/** A thin, lazily loaded wrapper over node-pg: only the commands that talk to a database load it. */
export interface Db {
  query<T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  one<T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T>;
  serverVersion: number;
  close(): Promise<void>;
  where: string;
}

/** Connects to master_db; errors are DatabaseError naming where it tried and what to check. */
export async function connectMaster(config: Config, why: string): Promise<Db> {
  const conninfo = config.require("master_db", why);
  return connect(
    parseConninfo(conninfo, config.where("master_db")),
    "the master",
    `check master_db in ${config.file} and that the server is running`,
    config.where("master_db"),
  );
}

/**
 * Connects to the standby running in slave_data: `slave_db` when set, otherwise the socket and
 * port its postmaster.pid names, as the data directory's owner (the usual superuser name).
 */
export async function connectStandby(config: Config, why: string): Promise<Db> {
  const explicit = config.get("slave_db");
  if (explicit)
    return connect(
      parseConninfo(explicit, config.where("slave_db")),
      "the standby",
      `check slave_db in ${config.file}`,
      config.where("slave_db"),
    );
  const dataDir = config.requirePath("slave_data", why);
  const pm = readPostmaster(dataDir);
  if (!pm) {
    throw new DatabaseError(
      `no server is running in ${dataDir}`,
      "start the standby (a slave backup is taken from the running standby)",
    );
  }
  const socketDir = pm.socketDir.split(",")[0]?.trim() || "/var/run/postgresql";
  const owner = process.env.PGUSER ?? userNameOf(statSync(dataDir).uid) ?? "postgres";
  return connect(
    withLibpqDefaults({ host: socketDir, port: pm.port, user: owner, database: "postgres" }),
    "the standby",
    `set slave_db in ${config.file} to a connection string for the standby`,
    config.where("slave_data"),
  );
}

function userNameOf(uid: number): string | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[2] === String(uid)) return f[0];
    }
  } catch {
    // no passwd file
  }
  return undefined;
}

/** `source`: the setting the connection string came from (`file [section] key`), for errors. */
async function connect(cfg: PgConnectionConfig, who: string, hint: string, source: string): Promise<Db> {
  const where = describeConn(cfg);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pg = require("pg") as typeof import("pg");
  let client: Client;
  try {
    // node-pg parses a URL here, synchronously: a malformed one throws (TypeError: Invalid URL).
    client = new pg.Client({ ...cfg, application_name: cfg.application_name ?? "walmgr-ts" });
  } catch (err) {
    throw new ConfigError(
      `${source}: cannot use connection string ${where}: ${(err as Error).message}`,
      "in a postgresql:// URL, percent-encode special characters of the user name and password " +
        "('/' is %2F, '@' is %40, ':' is %3A, '?' is %3F, '#' is %23; in the config file each % is " +
        "written %%, so '/' is %%2F), or use the key=value form: host=HOST port=PORT dbname=NAME " +
        "user=USER password='…'",
    );
  }
  client.on("error", () => {
    // reported through the failing query instead
  });
  try {
    await client.connect();
  } catch (err) {
    throw new DatabaseError(`cannot connect to ${who} (${where}): ${(err as Error).message}`, hint);
  }
  const run = async <T extends Record<string, unknown>>(sql: string, params: unknown[] = []): Promise<T[]> => {
    try {
      const res = await client.query(sql, params);
      return res.rows as T[];
    } catch (err) {
      throw new DatabaseError(`query failed on ${where}: ${(err as Error).message} (SQL: ${sql.split("\n")[0] ?? ""})`);
    }
  };
  const [ver] = await run<{ v: string }>("SELECT current_setting('server_version_num') AS v");
  return {
    where,
    serverVersion: Number.parseInt(ver?.v ?? "0", 10),
    query: run,
    one: async <T extends Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T> => {
      const rows = await run<T>(sql, params);
      const row = rows[0];
      if (!row) throw new DatabaseError(`query returned no row on ${where}: ${sql}`);
      return row;
    },
    close: async () => {
      try {
        await client.end();
      } catch {
        // already closed
      }
    },
  };
}
