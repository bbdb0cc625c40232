import type { Client } from "pg";
import type { Config } from "../config/load";
import { DatabaseError } from "../errors";
import { describeConn, parseConninfo } from "./conninfo";

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
  const cfg = parseConninfo(conninfo, config.where("master_db"));
  const where = describeConn(cfg);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const pg = require("pg") as typeof import("pg");
  const client: Client = new pg.Client({ ...cfg, application_name: cfg.application_name ?? "walmgr-ts" });
  client.on("error", () => {
    // reported through the failing query instead
  });
  try {
    await client.connect();
  } catch (err) {
    throw new DatabaseError(
      `cannot connect to the master (${where}): ${(err as Error).message}`,
      `check master_db in ${config.file} and that the server is running`,
    );
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
