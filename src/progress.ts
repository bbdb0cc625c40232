/**
 * Progress of the long commands (backup, restore, verify). At a terminal one line on stderr is
 * redrawn in place: the stage, bytes and files done of the totals, the recent rate and the time
 * left. Anywhere else (cron, a service manager, a pipe into a file) a redrawn line is noise
 * that garbles logs, so there each stage is one INFO log line and the end one summary line,
 * and nothing is written per file or per chunk.
 */
import { isTerminal } from "./colour";
import type { Logger, StderrOverlay } from "./log";

/** What a long command reports as it goes (see `startProgress`). */
export interface Progress {
  /** A new stage ("copying files", "waiting for WAL", "fsync"): on a TTY the line's label changes; otherwise one INFO log line. */
  stage(name: string, totals?: { bytes?: number; files?: number }): void;
  /** Work done since the last call. Cheap: called per chunk. */
  add(bytes: number, files?: number): void;
  /** Ends the display (clears/finishes the TTY line) and logs one summary line (bytes, files, time, rate). */
  done(summary?: string): void;
}

/** Options of `startProgress`. */
export interface ProgressOptions {
  /** --json: the output is for a program; no progress line even at a terminal. */
  json?: boolean;
  /** Where the progress line goes (default stderr); for tests, a fake with `isTTY` and `columns`. */
  stream?: NodeJS.WriteStream;
  /** Clock in ms (default Date.now); tests inject one to check throttling and rates. */
  now?: () => number;
}

/** At most this often is the line redrawn (10 a second), however often `add` is called. */
const REDRAW_MS = 100;
/** The timer that redraws the line when no `add` comes (waiting stages: elapsed time moves on). */
const TICK_MS = 250;
/** The rate is measured over about this long: steady enough to read, recent enough for an ETA. */
const RATE_WINDOW_MS = 5000;
/** One rate sample per this long: a bounded number of samples (flat memory, however long the run). */
const SAMPLE_MS = 250;
/** No rate (nor ETA) is shown before a stage has run this long: the first chunks say little. */
const RATE_MIN_MS = 1000;

const CLEAR_LINE = "\r\x1b[K";

/**
 * Starts reporting the progress of `what` (the command: "backup", "restore", "verify"). The
 * line is drawn only when the stream (stderr) is a terminal, -q was not given (the logger's
 * verbosity is above 0), --json was not given and TERM is not dumb (no cursor control there);
 * otherwise stages and the summary are log lines. While the line is shown, a log line first
 * clears it (the logger's overlay hook) and the line comes back at the next redraw.
 */
export function startProgress(what: string, log: Logger, opts: ProgressOptions = {}): Progress {
  // Asked of fd 2 first: process.stderr is a stream object built on first touch, needed only at a terminal.
  const stream = opts.stream ?? (isTerminal(2) ? process.stderr : undefined);
  const now = opts.now ?? Date.now;
  const live = stream?.isTTY === true && log.verbosity > 0 && opts.json !== true && process.env.TERM !== "dumb";
  return live && stream ? new LiveProgress(what, log, stream, now) : new LoggedProgress(what, log, now);
}

/** The counts both kinds of report keep: the whole run's, and the current stage's. */
class Counts {
  bytes = 0;
  files = 0;
  stageName = "";
  stageBytes = 0;
  stageFiles = 0;
  stageTotals: { bytes?: number; files?: number } = {};
  stageStart: number;
  readonly start: number;
  ended = false;

  constructor(
    readonly what: string,
    readonly log: Logger,
    readonly now: () => number,
  ) {
    this.start = now();
    this.stageStart = this.start;
  }

  newStage(name: string, totals: { bytes?: number; files?: number } = {}): void {
    this.stageName = name;
    this.stageTotals = totals;
    this.stageBytes = 0;
    this.stageFiles = 0;
    this.stageStart = this.now();
  }

  count(bytes: number, files: number): void {
    this.bytes += bytes;
    this.files += files;
    this.stageBytes += bytes;
    this.stageFiles += files;
  }

  /** The one log line of a stage: "backup: copying data directory (1234 files, 45.2 MiB)". */
  stageLine(): string {
    return `${this.what}: ${this.stageName}${describeTotals(this.stageTotals)}`;
  }

  /** The summary: "backup done in 3.2 s: 1234 files, 45.2 MiB (14.1 MiB/s); <summary>". */
  summaryLine(summary: string | undefined): string {
    return formatSummary(this.what, this.now() - this.start, this.bytes, this.files, summary);
  }
}

/** Not at a terminal: one log line per stage and the summary, nothing else. */
class LoggedProgress extends Counts implements Progress {
  stage(name: string, totals?: { bytes?: number; files?: number }): void {
    if (this.ended) return;
    this.newStage(name, totals);
    this.log.info(this.stageLine());
  }

  add(bytes: number, files = 0): void {
    this.count(bytes, files);
  }

  done(summary?: string): void {
    if (this.ended) return;
    this.ended = true;
    this.log.info(this.summaryLine(summary));
  }
}

/** At a terminal: one line redrawn in place, at most every REDRAW_MS. */
class LiveProgress extends Counts implements Progress, StderrOverlay {
  private shown = false;
  private lastDraw = -Infinity;
  private lastText = "";
  /** (time, stage bytes) samples, oldest first; the first is the rate's base. */
  private samples: { t: number; b: number }[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly onExit = (): void => this.hide();

  constructor(
    what: string,
    log: Logger,
    private readonly stream: NodeJS.WriteStream,
    now: () => number,
  ) {
    super(what, log, now);
    log.setOverlay(this);
    // unref: the timer never keeps the process alive, even if done() is never reached.
    this.timer = setInterval(() => this.maybeDraw(this.now()), TICK_MS);
    this.timer.unref();
    // An error ends the process with process.exit(), past done(): leave a clean line behind.
    process.on("exit", this.onExit);
  }

  stage(name: string, totals?: { bytes?: number; files?: number }): void {
    if (this.ended) return;
    this.newStage(name, totals);
    this.samples = [{ t: this.stageStart, b: 0 }];
    // The terminal shows it on the line; the logfile, read later, still gets the stage.
    this.log.fileOnly("INFO", this.stageLine());
    this.draw(this.stageStart);
  }

  add(bytes: number, files = 0): void {
    this.count(bytes, files);
    if (!this.ended) this.maybeDraw(this.now());
  }

  done(summary?: string): void {
    if (this.ended) return;
    this.ended = true;
    clearInterval(this.timer);
    process.removeListener("exit", this.onExit);
    this.log.setOverlay(undefined);
    this.hide();
    this.log.info(this.summaryLine(summary));
  }

  /** Clears the line (before a log line, and at the end); the next redraw brings it back. */
  hide(): void {
    if (!this.shown) return;
    this.stream.write(CLEAR_LINE);
    this.shown = false;
  }

  private maybeDraw(t: number): void {
    // Nothing to show before the first stage (a backup's lock and rotation come first).
    if (this.ended || this.stageName === "" || t - this.lastDraw < REDRAW_MS) return;
    this.draw(t);
  }

  private draw(t: number): void {
    this.sample(t);
    this.lastDraw = t;
    // Never as wide as the terminal: a line that wraps cannot be redrawn with \r.
    const text = this.render(t, Math.max(20, (this.stream.columns || 80) - 1));
    if (this.shown && text === this.lastText) return;
    this.stream.write(`\r${text}\x1b[K`);
    this.shown = true;
    this.lastText = text;
  }

  private sample(t: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last === undefined || t - last.t >= SAMPLE_MS) this.samples.push({ t, b: this.stageBytes });
    // Keep as base the newest sample that is at least a window old.
    while (this.samples.length > 1 && t - (this.samples[1]?.t ?? t) >= RATE_WINDOW_MS) this.samples.shift();
  }

  /** Bytes a second over the last few seconds of this stage; undefined until it means something. */
  private rate(t: number): number | undefined {
    const base = this.samples[0];
    if (base === undefined || t - this.stageStart < RATE_MIN_MS || t <= base.t) return undefined;
    return ((this.stageBytes - base.b) * 1000) / (t - base.t);
  }

  /**
   * The line, at most `width` characters: what matters least goes first when it is too long
   * (the files count, then the percentage, then the rate); the label and the bytes stay.
   */
  private render(t: number, width: number): string {
    const { bytes: totalBytes, files: totalFiles } = this.stageTotals;
    let bytes: string[] = [];
    if (totalBytes !== undefined && totalBytes > 0) {
      const of = `${formatBytes(this.stageBytes)} / ${formatBytes(totalBytes)}`;
      const pct = Math.min(100, Math.floor((this.stageBytes * 100) / totalBytes));
      bytes = [`${of} (${pct}%)`, of];
    } else if (this.stageBytes > 0) bytes = [formatBytes(this.stageBytes)];
    let files: string[] = [];
    if (totalFiles !== undefined) files = [`${this.stageFiles}/${totalFiles} files`, ""];
    else if (this.stageFiles > 0) files = [`${this.stageFiles} files`, ""];
    const rate = this.rate(t);
    const rateText = rate !== undefined && this.stageBytes > 0 ? [`${formatBytes(rate)}/s`, ""] : [];
    const eta = rate === undefined ? undefined : etaSeconds(this.stageBytes, totalBytes, rate);
    const time = eta === undefined ? formatClock((t - this.stageStart) / 1000) : `ETA ${formatClock(eta)}`;
    // Each part's variants, most detailed first; `dropOrder` says which part gives way next.
    const parts = [[`${this.what}: ${this.stageName}`], bytes, files, rateText, [time]];
    const chosen = parts.map(() => 0);
    const join = (): string =>
      parts
        .map((v, i) => v[chosen[i] ?? 0] ?? "")
        .filter((x) => x !== "")
        .join("  ");
    let line = join();
    for (const i of [2, 1, 3]) {
      const variants = parts[i] ?? [];
      while (line.length > width && (chosen[i] ?? 0) < variants.length - 1) {
        chosen[i] = (chosen[i] ?? 0) + 1;
        line = join();
      }
    }
    return line.slice(0, width);
  }
}

/** Seconds left at `rate` bytes/s to reach `total`; undefined without a total or a rate. */
export function etaSeconds(done: number, total: number | undefined, rate: number): number | undefined {
  if (total === undefined || total <= 0 || !(rate > 0)) return undefined;
  return Math.max(0, (total - done) / rate);
}

/** How formatBytes writes a size (the defaults are the progress line's). */
export interface BytesFormat {
  /** The unit of a size below 1 KiB: "B" ("512 B") or "bytes" ("512 bytes", as status prints). */
  small?: "B" | "bytes";
  /**
   * Digits after the point: "adaptive" (1 below GiB, 2 from GiB on, and a unit up rather than
   * "1024.0") or "one" (always 1, the unit chosen by the exact size, as status prints).
   */
  digits?: "adaptive" | "one";
}

/**
 * Bytes in binary units, as the rest of the project counts them: "512 B", "3.0 KiB", "45.2 MiB",
 * "1.50 GiB" (status: "512 bytes", "1.5 GiB"). The one size formatter: each caller keeps its
 * look through `format`.
 */
export function formatBytes(n: number, format: BytesFormat = {}): string {
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  if (!(n >= 1024)) return `${Math.max(0, Math.round(n))} ${format.small ?? "B"}`;
  let v = n / 1024;
  let i = 0;
  const adaptive = format.digits !== "one";
  // GiB and up get two decimals: 0.1 GiB is 100 MiB, too coarse to see a copy move.
  const digits = (): number => (adaptive && i >= 2 ? 2 : 1);
  // Up a unit also when rounding would show 1024.0 (a rate of 1048575.9 B/s is "1.0 MiB/s").
  const shown = (): number => (adaptive ? Number(v.toFixed(digits())) : v);
  while (i < units.length - 1 && shown() >= 1024) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(digits())} ${units[i] ?? "PiB"}`;
}

/** A duration as a clock, "0:07", "12:34", "1:02:03" (seconds rounded up: never "0:00" left while work is). */
export function formatClock(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

/** " (1234 files, 45.2 MiB)" for a stage's totals; "" when it has none. */
function describeTotals(totals: { bytes?: number; files?: number }): string {
  const parts: string[] = [];
  if (totals.files !== undefined) parts.push(`${totals.files} files`);
  if (totals.bytes !== undefined) parts.push(formatBytes(totals.bytes));
  return parts.length === 0 ? "" : ` (${parts.join(", ")})`;
}

/**
 * The end-of-command line: "backup done in 3.2 s: 1234 files, 45.2 MiB (14.1 MiB/s); WAL …".
 * Counts that stayed zero are left out (a restore that renamed a set copied nothing).
 */
export function formatSummary(what: string, elapsedMs: number, bytes: number, files: number, summary?: string): string {
  const secs = Math.max(0, elapsedMs) / 1000;
  const counts: string[] = [];
  if (files > 0) counts.push(`${files} files`);
  if (bytes > 0) counts.push(formatBytes(bytes));
  const rate = bytes > 0 && secs > 0 ? ` (${formatBytes(bytes / secs)}/s)` : "";
  const took = secs < 60 ? `${secs.toFixed(1)} s` : formatClock(secs);
  return `${what} done in ${took}${counts.length > 0 ? `: ${counts.join(", ")}${rate}` : ""}${summary ? `; ${summary}` : ""}`;
}
