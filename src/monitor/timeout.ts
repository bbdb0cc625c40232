/**
 * Time limits for the monitoring reads: status (and check) must answer even when the database
 * or the slave directory does not, so every wait they make is raced against a timer.
 */
import { TransportError } from "../errors";

/** How long status waits for a database (connect and queries together). */
export const DB_TIMEOUT_MS = 15_000;
/** Per-request timeout (seconds) of the drivers status opens for ssh and S3 slave directories. */
export const STORAGE_TIMEOUT_S = 10;
/** How long status waits for all its reads of one slave directory (or repository) together. */
export const STORAGE_BUDGET_MS = 30_000;

/** What `withTimeout` rejects with. */
export class TimeoutError extends Error {}

/**
 * Resolves or rejects as `work` does, or rejects after `ms` with an error saying that `what`
 * did not answer. `onLate` receives a value that arrives after the timeout (to close a
 * connection nobody will use). The timer never keeps the process alive.
 */
export async function withTimeout<T>(
  work: Promise<T>,
  ms: number,
  what: string,
  onLate?: (value: T) => void,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      timedOut = true;
      reject(new TimeoutError(`${what} did not answer within ${(ms / 1000).toFixed(1)} s`));
    }, ms);
    timer.unref();
  });
  work.then(
    (v) => {
      if (timedOut) onLate?.(v);
    },
    () => undefined, // the race below reports it
  );
  try {
    return await Promise.race([work, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A shared time budget for a sequence of reads of one storage: each `run` gets what is left of
 * it, and once the storage has not answered (a timeout, a transport error) the reads after it
 * are skipped at once, so a storage that is down costs one timeout, not one per read.
 */
export class Budget {
  private readonly end: number;
  private down: Error | undefined;

  constructor(
    ms: number,
    private readonly what: string,
  ) {
    this.end = Date.now() + ms;
  }

  /** `fn()` within what is left of the budget (rejects at once when none is left, or the storage is down). */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.down) throw new Error(`skipped: ${this.down.message}`);
    const left = this.end - Date.now();
    if (left <= 0) throw new TimeoutError(`${this.what} did not answer in time (skipped)`);
    try {
      return await withTimeout(fn(), left, this.what);
    } catch (err) {
      if (err instanceof TimeoutError || err instanceof TransportError) this.down = err;
      throw err;
    }
  }
}

/** The message of an error (or of whatever was thrown), for a status field. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Seconds from `ms` (epoch milliseconds) to `now`, at 0.1 s; never negative (clocks differ). */
export function ageSeconds(ms: number, now: number): number {
  return Math.round(Math.max(0, now - ms) / 100) / 10;
}
