import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isErrno } from "../errors";
import { processAlive } from "../storage/durable";

export interface PostmasterInfo {
  pid: number;
  dataDir: string;
  port: number;
  socketDir: string;
  /** "starting", "stopping", "ready" or "standby" (PostgreSQL 10+). */
  status: string;
}

/** Reads postmaster.pid; undefined when no postmaster is running for `dataDir`. */
export function readPostmaster(dataDir: string): PostmasterInfo | undefined {
  let text: string;
  try {
    text = readFileSync(join(dataDir, "postmaster.pid"), "utf8");
  } catch (err) {
    if (isErrno(err, "ENOENT")) return undefined;
    throw err;
  }
  const lines = text.split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0 || !processAlive(pid)) return undefined;
  return {
    pid,
    dataDir: lines[1] ?? dataDir,
    port: Number.parseInt(lines[3] ?? "5432", 10),
    socketDir: lines[4] ?? "",
    status: (lines[7] ?? "").trim(),
  };
}

/** PG_VERSION of a data directory as a major number (15), or undefined. */
export function dataDirVersion(dataDir: string): number | undefined {
  try {
    return Number.parseInt(readFileSync(join(dataDir, "PG_VERSION"), "utf8").trim(), 10);
  } catch {
    return undefined;
  }
}

/** The owner of a path (uid, gid), for running as root on behalf of the postgres user. */
export function ownerOf(path: string): { uid: number; gid: number } {
  const st = statSync(path);
  return { uid: st.uid, gid: st.gid };
}
