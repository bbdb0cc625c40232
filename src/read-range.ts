import { closeSync, openSync, readSync } from "node:fs";
import { ioError } from "./errors";

/** Reads `length` bytes at `position` of a file; fewer only if the file is shorter. */
export function readRange(path: string, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    let got = 0;
    while (got < length) {
      const n = readSync(fd, buf, got, length - got, position + got);
      if (n === 0) break;
      got += n;
    }
    return got === length ? buf : buf.subarray(0, got);
  } catch (err) {
    throw ioError("cannot read", path, err);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
