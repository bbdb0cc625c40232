/**
 * The deadline of this process's whole call, for the commands something waits on: wal-restore
 * (PostgreSQL's startup process: restore_timeout), wal-archive (the archiver: s3_timeout ×
 * (s3_retries + 1)) and `check` (a monitoring system: --timeout). Transports bound every
 * request by what is left of it, so a peer that answers slowly, or trickles a byte at a time,
 * cannot hold the call past it. Commands without one (backups, restore, daemons) run as long as
 * their work takes; each request is still bounded on its own.
 */

export interface CallDeadline {
  /** Epoch milliseconds. */
  at: number;
  /** The seconds and the setting that set it, for messages: "restore_timeout = 5 s". */
  what: string;
}

let current: CallDeadline | undefined;

/**
 * Sets this call's deadline `seconds` from now, named by `setting` in messages. A deadline set
 * earlier in the call stays when it is sooner: a call is never given more time than it had.
 */
export function setCallDeadline(seconds: number, setting: string): void {
  const at = Date.now() + Math.max(0, seconds) * 1000;
  if (current !== undefined && current.at <= at) return;
  current = { at, what: `${setting} = ${formatSeconds(seconds)}` };
}

/** This call's deadline, or undefined when it has none. */
export function callDeadline(): CallDeadline | undefined {
  return current;
}

/** Milliseconds left until this call's deadline (Infinity without one; 0 once passed). */
export function callTimeLeft(now = Date.now()): number {
  return current === undefined ? Infinity : Math.max(0, current.at - now);
}

/** For tests: forget the deadline. */
export function clearCallDeadline(): void {
  current = undefined;
}

/** "5 s", "0.5 s": seconds for messages. */
export function formatSeconds(s: number): string {
  return `${Number.isInteger(s) ? s : Number(s.toFixed(2))} s`;
}
