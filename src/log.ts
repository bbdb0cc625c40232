import { closeSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { colourEnabled, paint } from "./colour";
import { inheritOwner } from "./fs-owner";

export type Level = "ERROR" | "WARNING" | "INFO" | "DEBUG";
const RANK: Record<Level, number> = { ERROR: 0, WARNING: 1, INFO: 2, DEBUG: 3 };

export interface LoggerOptions {
  /** 0 = errors only (-q), 2 = normal, 3 = debug (-v). */
  verbosity: number;
  jobName: string;
  logfile?: string;
}

/**
 * Something drawn on stderr's last line that a log line must not be written into (the progress
 * line of a long command, progress.ts). `hide` is called before each line goes to stderr and
 * clears what is drawn; the overlay draws itself again later, on its own schedule, rather than
 * right after the line: a configured command run next (slave_start_cmd) writes to the same
 * terminal, and its output must start on a clean line too.
 */
export interface StderrOverlay {
  hide(): void;
}

/**
 * Lines go to stderr (which PostgreSQL puts in its own log for archive/restore commands) and,
 * when `logfile` is set, are appended to it in full detail regardless of -q. A logfile that
 * cannot be opened is reported once and otherwise ignored: logging must never fail archiving.
 * On a terminal (see colour.ts) the level words ERROR and WARNING are coloured; the logfile and
 * a stderr that is a pipe or a file (PostgreSQL's log) always get plain text.
 */
export class Logger {
  private fd: number | undefined;
  private fileBroken = false;
  private overlay: StderrOverlay | undefined;
  /**
   * Decided on the first ERROR or WARNING line to stderr, the only ones coloured: the INFO
   * lines of wal-archive and wal-restore (one run per segment) never pay for the question.
   */
  private colourStderr: boolean | undefined;

  constructor(private opts: LoggerOptions) {}

  configure(opts: Partial<LoggerOptions>): void {
    if (opts.logfile !== this.opts.logfile) this.close();
    this.opts = { ...this.opts, ...opts };
  }

  get verbosity(): number {
    return this.opts.verbosity;
  }

  error(msg: string): void {
    this.write("ERROR", msg);
  }
  warn(msg: string): void {
    this.write("WARNING", msg);
  }
  info(msg: string): void {
    this.write("INFO", msg);
  }
  debug(msg: string): void {
    this.write("DEBUG", msg);
  }

  /**
   * A line for the logfile alone (when one is set): what a terminal already shows another way
   * (a progress line's stage) but the logfile, read later, must still tell.
   */
  fileOnly(level: Level, msg: string): void {
    this.toFile(this.format(level, msg), level);
  }

  /** Registers (or, with undefined, removes) the one overlay log lines must not be written into. */
  setOverlay(overlay: StderrOverlay | undefined): void {
    this.overlay = overlay;
  }

  private format(level: Level, msg: string): string {
    const ts = new Date().toISOString().replace("T", " ").replace("Z", "");
    return `${ts} ${process.pid} ${level} ${this.opts.jobName}: ${msg}\n`;
  }

  private write(level: Level, msg: string): void {
    const line = this.format(level, msg);
    if (RANK[level] <= this.opts.verbosity) {
      this.overlay?.hide();
      const kind = level === "ERROR" ? "fail" : level === "WARNING" ? "warn" : undefined;
      if (kind) this.colourStderr ??= colourEnabled(2);
      // The first " LEVEL " is the level word: timestamp and pid before it are digits.
      const shown = kind && this.colourStderr ? line.replace(` ${level} `, ` ${paint(kind, level)} `) : line;
      // writeSync(2) rather than process.stderr: no stream machinery to load on the hot path.
      writeStderr(shown);
    }
    this.toFile(line, level);
  }

  private toFile(line: string, level: Level): void {
    if (!this.opts.logfile || this.fileBroken) return;
    if (level === "DEBUG" && this.opts.verbosity < 3) return;
    try {
      this.fd ??= openLogfile(this.opts.logfile);
      writeSync(this.fd, line);
    } catch (err) {
      this.fileBroken = true;
      this.overlay?.hide();
      writeStderr(`WARNING: cannot write logfile ${this.opts.logfile}: ${(err as Error).message}\n`);
    }
  }

  close(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = undefined;
    }
  }
}

/**
 * Opens the logfile for appending. A file this call creates takes the owner of its folder when
 * running as root (as every other file does), so that a `setup` run as root does not leave a
 * root-owned logfile the postgres user's later runs cannot append to.
 */
function openLogfile(path: string): number {
  try {
    const fd = openSync(path, "ax", 0o600);
    try {
      inheritOwner(fd, dirname(path));
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return fd;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return openSync(path, "a", 0o600);
  }
}

/** Writes all of `text` to a file descriptor synchronously (retrying on EAGAIN for pipes). */
export function writeFd(fd: number, text: string): void {
  const buf = Buffer.from(text);
  let off = 0;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") return;
    }
  }
}

export function writeStderr(text: string): void {
  writeFd(2, text);
}

export function writeStdout(text: string): void {
  writeFd(1, text);
}
