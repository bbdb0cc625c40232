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
        `${where}: cannot parse connection string ${JSON.stringify(maskConninfo(conninfo))} near position ${i + 1}`,
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

/** Keys whose values are secrets, in key=value strings and URL query parameters. */
const SECRET_KEYS = new Set(["password", "sslpassword"]);

/** A URL query parameter: its value runs on over `&` pieces without `=` (an unencoded `&`). */
const QUERY_PARAM_RE = /(^|&)([^&=]*)=([^&]*(?:&(?![^&=]*=)[^&]*)*)/g;

function decodeKey(key: string): string {
  try {
    return decodeURIComponent(key).trim().toLowerCase();
  } catch {
    return key.trim().toLowerCase();
  }
}

/**
 * Masks the password of a `postgres://` / `postgresql://` URL: the userinfo `user:PASS@` and the
 * query parameters `password=` and `sslpassword=` (keys percent-encoded or not). It errs on the
 * side of hiding: an unencoded `/`, `?`, `@` or `&` in a password (which libpq itself would
 * misread) is hidden with it rather than shown.
 */
export function maskUrl(url: string): string {
  const m = /^(\s*[a-z]+:\/\/)([\s\S]*)$/i.exec(url);
  if (!m) return url;
  let rest = m[2] ?? "";
  const q = rest.indexOf("?");
  if (q !== -1) {
    const query = rest
      .slice(q + 1)
      .replace(QUERY_PARAM_RE, (all: string, amp: string, key: string) =>
        SECRET_KEYS.has(decodeKey(key)) ? `${amp}${key}=***` : all,
      );
    rest = `${rest.slice(0, q + 1)}${query}`;
  }
  // The last '@' ends the userinfo (node-pg's URL parser reads it so); a ':' before it starts the password.
  const at = rest.lastIndexOf("@");
  if (at !== -1) {
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(":");
    if (colon !== -1) rest = `${userinfo.slice(0, colon)}:***${rest.slice(at)}`;
  }
  return `${m[1] ?? ""}${rest}`;
}

/**
 * A connection string with every password replaced by `***`, for messages, logs and output:
 * a URL (see maskUrl), or libpq keyword/value pairs, where `password` and `sslpassword` values
 * are hidden whether bare (with backslash escapes) or single-quoted (with `\'` inside), and a
 * URL given as a value (`dbname=postgresql://…`) is masked too. Works on strings that fail to
 * parse as well: the parse error message must not show the password either.
 */
export function maskConninfo(conninfo: string): string {
  if (/^\s*postgres(ql)?:\/\//i.test(conninfo)) return maskUrl(conninfo);
  return conninfo
    .replace(/postgres(?:ql)?:\/\/[^\s']*/gi, (url) => maskUrl(url))
    .replace(
      /(^|\s)((?:ssl)?password\s*=\s*)('(?:[^'\\]|\\[\s\S])*(?:'|\\?$)|(?:[^\s\\]|\\[\s\S]|\\$)*)/gi,
      (_all: string, lead: string, key: string) => `${lead}${key}***`,
    );
}

/** For messages: where we tried to connect (never the password). */
export function describeConn(cfg: PgConnectionConfig): string {
  if (cfg.connectionString) return maskConninfo(cfg.connectionString);
  return `host=${cfg.host ?? "?"} port=${cfg.port ?? "?"} dbname=${cfg.database ?? "?"} user=${cfg.user ?? "?"}`;
}
