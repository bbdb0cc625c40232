import { existsSync } from "node:fs";
import { userInfo } from "node:os";
import { ConfigError } from "../errors";

/** The subset of node-pg's ClientConfig we build from a libpq connection string. */
export interface PgConnectionConfig {
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
  connectionString?: string;
  application_name?: string;
  connectionTimeoutMillis?: number;
  ssl?: boolean;
}

/**
 * Parses a libpq keyword/value connection string (`dbname=x host=/tmp port=5432`, values in
 * single quotes with backslash escapes) as master_db holds it, or passes a postgres:// URL
 * through. Unset host falls back the way libpq's does: PGHOST, then the Debian socket folder.
 */
export function parseConninfo(conninfo: string, where: string): PgConnectionConfig {
  const text = conninfo.trim();
  const cfg: PgConnectionConfig = {};
  if (/^postgres(ql)?:\/\//.test(text)) {
    cfg.connectionString = text;
    return cfg;
  }
  let i = 0;
  const pairs: [string, string][] = [];
  while (i < text.length) {
    while (i < text.length && /\s/.test(text[i] ?? "")) i++;
    if (i >= text.length) break;
    const keyStart = i;
    while (i < text.length && /[A-Za-z_]/.test(text[i] ?? "")) i++;
    const key = text.slice(keyStart, i);
    while (i < text.length && /\s/.test(text[i] ?? "")) i++;
    if (key === "" || text[i] !== "=") {
      throw new ConfigError(
        `${where}: cannot parse connection string ${JSON.stringify(conninfo)} near position ${i + 1}`,
        "use libpq's form: dbname=NAME host=HOST port=PORT user=USER",
      );
    }
    i++;
    while (i < text.length && /\s/.test(text[i] ?? "")) i++;
    let value = "";
    if (text[i] === "'") {
      i++;
      while (i < text.length && text[i] !== "'") {
        if (text[i] === "\\") i++;
        value += text[i] ?? "";
        i++;
      }
      if (text[i] !== "'") throw new ConfigError(`${where}: unterminated quote in connection string`);
      i++;
    } else {
      while (i < text.length && !/\s/.test(text[i] ?? "")) {
        if (text[i] === "\\") i++;
        value += text[i] ?? "";
        i++;
      }
    }
    pairs.push([key, value]);
  }
  for (const [key, value] of pairs) {
    switch (key) {
      case "host":
      case "hostaddr":
        cfg.host = value;
        break;
      case "port":
        cfg.port = Number.parseInt(value, 10);
        break;
      case "dbname":
        cfg.database = value;
        break;
      case "user":
        cfg.user = value;
        break;
      case "password":
        cfg.password = value;
        break;
      case "application_name":
        cfg.application_name = value;
        break;
      case "connect_timeout":
        cfg.connectionTimeoutMillis = Number.parseInt(value, 10) * 1000;
        break;
      case "sslmode":
        cfg.ssl = value === "require" || value === "verify-ca" || value === "verify-full";
        break;
      default:
        break;
    }
  }
  return withLibpqDefaults(cfg);
}

export function withLibpqDefaults(cfg: PgConnectionConfig): PgConnectionConfig {
  const out = { ...cfg };
  out.host ??= process.env.PGHOST ?? (existsSync("/var/run/postgresql") ? "/var/run/postgresql" : "localhost");
  out.port ??= process.env.PGPORT ? Number.parseInt(process.env.PGPORT, 10) : 5432;
  out.user ??= process.env.PGUSER ?? userInfo().username;
  out.database ??= process.env.PGDATABASE ?? out.user;
  out.connectionTimeoutMillis ??= 10_000;
  return out;
}

/** For messages: where we tried to connect (never the password). */
export function describeConn(cfg: PgConnectionConfig): string {
  if (cfg.connectionString) return cfg.connectionString.replace(/:[^:@/]*@/, ":***@");
  return `host=${cfg.host ?? "?"} port=${cfg.port ?? "?"} dbname=${cfg.database ?? "?"} user=${cfg.user ?? "?"}`;
}
