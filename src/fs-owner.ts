import { fchownSync, statSync } from "node:fs";

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/**
 * When root writes into a folder owned by someone else (the postgres user, typically), the new
 * file takes the folder's owner, so the server and the commands it runs can still read it. Below
 * storage and logging, which both create files that way.
 */
export function inheritOwner(fd: number, dir: string): void {
  if (!isRoot) return;
  const st = statSync(dir);
  if (st.uid !== 0 || st.gid !== 0) fchownSync(fd, st.uid, st.gid);
}
