import type { Config } from "../../config/load";

/**
 * Seconds one archive_command call may take in all (its deadline, deadline.ts): s3_timeout ×
 * (s3_retries + 1), what one request may take with every retry. The archiver waits for the
 * call, and a call cut short is retried by PostgreSQL; bounded this way, a peer that trickles
 * cannot hold the archiver (and a fast shutdown) for longer. The background pusher (ahead.ts)
 * has the same bound for its whole run.
 */
export function archiveCallSeconds(config: Config): number {
  return config.float("s3_timeout") * (config.int("s3_retries") + 1);
}
