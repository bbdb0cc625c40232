/** What the benchmark scripts share: medians, quoting, and driving PostgreSQL's archiver. */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { Cluster } from "../test/helpers/cluster";

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

/** A single-quoted SQL literal. */
export const literal = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** Single-quoted for /bin/sh (PostgreSQL runs archive_command and restore_command through it). */
export const sh = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** How many WAL files PostgreSQL has marked ready for archiving. */
export function ready(c: Cluster): number {
  return readdirSync(join(c.dataDir, "pg_wal", "archive_status")).filter((n) => n.endsWith(".ready")).length;
}

/** Sets archive_command and reloads. */
export async function setArchiveCommand(c: Cluster, command: string): Promise<void> {
  await c.query(`ALTER SYSTEM SET archive_command = ${literal(command)}`);
  await c.query("SELECT pg_reload_conf()");
}
