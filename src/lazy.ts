/**
 * Node modules loaded on first use. wal-archive and wal-restore start once per WAL segment, and
 * their start-up is measured against bare `node -e ''` (`npm run bench`): node:child_process
 * costs about 2.5 ms to load and node:crypto about 1.6 ms, which most calls never need (a
 * restore_command asked for a segment that is not there yet answers 1 without hashing anything;
 * only `~user` in a config or an operator's command spawns a process). Loaded once, cached by
 * require like any module.
 */
import type * as ChildProcess from "node:child_process";
import type * as Crypto from "node:crypto";

/* eslint-disable @typescript-eslint/no-require-imports -- the point of this file is a deferred require */

/** node:child_process, loaded on the first call. */
export function childProcess(): typeof ChildProcess {
  return require("node:child_process") as typeof ChildProcess;
}

/** node:crypto, loaded on the first call. */
export function crypto(): typeof Crypto {
  return require("node:crypto") as typeof Crypto;
}
