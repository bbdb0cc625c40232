import { read as fsRead, write as fsWrite } from "node:fs";

/**
 * Reads up to `buf.length` bytes at `pos` of the open file `fd`, on the thread pool; fewer only
 * at the end of the file. Errors are the file system's (callers name the file).
 */
export async function readAt(fd: number, buf: Buffer, pos: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await new Promise<number>((res, rej) =>
      fsRead(fd, buf, got, buf.length - got, pos + got, (err, k) => (err ? rej(err) : res(k))),
    );
    if (n === 0) break;
    got += n;
  }
  return got;
}

/**
 * Writes all of `data` to the open file `fd` at `pos` (null: at its current offset), on the
 * thread pool, however many calls that takes. Errors are the file system's.
 */
export async function writeAt(fd: number, data: Buffer, pos: number | null): Promise<void> {
  let off = 0;
  while (off < data.length) {
    off += await new Promise<number>((res, rej) =>
      fsWrite(fd, data, off, data.length - off, pos === null ? null : pos + off, (err, n) => (err ? rej(err) : res(n))),
    );
  }
}
