/**
 * Colour for people at a terminal, and only for them. Loaded by log.ts, which every executable
 * loads (wal-archive and wal-restore once per WAL segment), so it loads nothing at start-up:
 * node:tty (about 2 ms: it loads node:net) only once a character device has to be told from a
 * terminal, and never process.stderr (a stream object built on first touch).
 */
import { fstatSync } from "node:fs";

/** What a coloured word means: green, yellow, red, or faint (secondary detail). */
export type ColourKind = "ok" | "warn" | "fail" | "dim";

const SGR: Record<ColourKind, string> = { ok: "32", warn: "33", fail: "31", dim: "2" };

/**
 * Whether the file descriptor `fd` is a terminal. A pipe or a file (PostgreSQL's log) is told
 * by one fstat; only a character device (a terminal, or /dev/null) costs loading node:tty.
 */
export function isTerminal(fd: number): boolean {
  try {
    if (!fstatSync(fd).isCharacterDevice()) return false;
  } catch {
    return false; // closed
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { isatty } = require("node:tty") as typeof import("node:tty");
  return isatty(fd);
}

/** A stream (anything with `isTTY`, as process.stdout) or a file descriptor number. */
export type ColourTarget = { isTTY?: boolean } | number;

/**
 * Whether text written to `target` (default: stdout, where command output goes) may carry
 * colour: only a terminal, and not when NO_COLOR is set (any non-empty value, no-color.org) or
 * TERM is dumb. A pipe or a file (PostgreSQL's log, which gets wal-archive's and wal-restore's
 * stderr; a logfile; a cron mail) always stays plain.
 *
 * FORCE_COLOR is deliberately not honoured: `node --test` exports FORCE_COLOR=1 to everything
 * it starts when run at a terminal, and a variable that leaks that easily into the environment
 * of a PostgreSQL server would put escape codes into its log.
 */
export function colourEnabled(target: ColourTarget = 1, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.TERM === "dumb") return false;
  return typeof target === "number" ? isTerminal(target) : target.isTTY === true;
}

/**
 * `text` in the colour of `kind` when `target` (default: stdout) may carry colour (see
 * `colourEnabled`), else `text` unchanged: callers colour unconditionally and a pipe or a
 * file still gets plain text. `wal-ctl check` colours its OK/WARN/FAIL with it.
 */
export function colour(
  kind: ColourKind,
  text: string,
  target: ColourTarget = 1,
  env: NodeJS.ProcessEnv = process.env,
): string {
  return colourEnabled(target, env) ? paint(kind, text) : text;
}

/** `text` in the colour of `kind`, unconditionally (the caller has decided). */
export function paint(kind: ColourKind, text: string): string {
  return `\x1b[${SGR[kind]}m${text}\x1b[0m`;
}
