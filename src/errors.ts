/**
 * The one exit-code table. Every process exit in this project comes from here and stays at or
 * below 125: PostgreSQL treats higher codes from restore_command as fatal to recovery.
 */
export const ExitCode = {
  OK: 0,
  /** restore: no such WAL yet (PostgreSQL retries), or nothing to do. */
  NOT_AVAILABLE: 1,
  USAGE: 2,
  CONFIG: 3,
  LOCK_HELD: 4,
  TRANSPORT: 6,
  DATABASE: 7,
  /** An archived file of the same name holds other content. */
  ARCHIVE_CONFLICT: 8,
  /** Disk full, permissions, unreadable or corrupt files. */
  IO: 9,
  INTERNAL: 70,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** An error a user can act on: it carries its exit code and, ideally, what to do next. */
export class WalmgrError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue,
    readonly hint?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class UsageError extends WalmgrError {
  constructor(message: string, hint = "see --help") {
    super(message, ExitCode.USAGE, hint);
  }
}

export class ConfigError extends WalmgrError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.CONFIG, hint);
  }
}

export class LockHeldError extends WalmgrError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.LOCK_HELD, hint);
  }
}

export class TransportError extends WalmgrError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.TRANSPORT, hint);
  }
}

export class DatabaseError extends WalmgrError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.DATABASE, hint);
  }
}

export class ArchiveConflictError extends WalmgrError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.ARCHIVE_CONFLICT, hint);
  }
}

export class IoError extends WalmgrError {
  constructor(message: string, hint?: string) {
    super(message, ExitCode.IO, hint);
  }
}

const IO_HINTS: Record<string, string> = {
  ENOSPC: "the disk is full: free space at the destination and retry",
  EDQUOT: "the disk quota is exhausted: free space or raise the quota",
  EACCES: "check the owner and mode of the path (the command runs as the database's OS user)",
  EPERM: "check the owner and mode of the path (the command runs as the database's OS user)",
  ENOENT: "check that the path exists",
  EROFS: "the file system is read-only",
  EIO: "the storage reported an I/O error: check the disk",
};

/** Turns a Node.js system error into an IoError that names the action and the path. */
export function ioError(action: string, path: string, err: unknown): WalmgrError {
  if (err instanceof WalmgrError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? "";
  const reason = (err as Error | undefined)?.message ?? String(err);
  return new IoError(`${action} ${path}: ${reason}`, IO_HINTS[code]);
}

export function isErrno(err: unknown, code: string): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === code;
}

/**
 * Formats an error for stderr, and its exit code: what failed, and what to do next. Anything
 * that is not a WalmgrError is a bug (exit 70, with its stack). Used by the single entry point
 * (cli/entry.ts) and by the ssh helper, which answers the master with the same text and code.
 */
export function describeError(err: unknown): { text: string; code: ExitCodeValue } {
  if (err instanceof WalmgrError) {
    return { text: err.message + (err.hint ? `\nHINT: ${err.hint}` : ""), code: err.exitCode };
  }
  const e = err as Error;
  return {
    text: `internal error: ${e?.stack ?? String(err)}\nHINT: this is a bug in walmgr-ts; please report it with the lines above`,
    code: ExitCode.INTERNAL,
  };
}
