/**
 * File-tree helpers the tests share: what a tree looks like (to prove a command changed nothing)
 * and the bytes at the start of a file.
 *
 * These are the tests' own, written independently of the code under test (src/command/sync.ts
 * has its own readRange): an oracle that shares the code it checks would agree with its bugs.
 */
import { closeSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";

/**
 * Every path under `dir`, sorted, each with its size, mode and mtime: any change to a file, a
 * folder or a permission shows when two snapshots are compared.
 */
export function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const st = statSync(p);
      out.push(`${p} ${st.size} ${st.mode.toString(8)} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out;
}

/** The first `length` bytes of `path` (fewer when the file is shorter), read in as many calls as it takes. */
export function readPrefix(path: string, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(path, "r");
  try {
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, got);
      if (n === 0) break;
      got += n;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}
