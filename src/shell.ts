/**
 * The shell, the one place that speaks to it: words quoted for /bin/sh, and the commands the
 * operator configured run through /bin/sh -c as written.
 */
import type { SettingOfKind } from "./config/settings";
import { childProcess } from "./lazy";
import type { Context } from "./context";
import { ExitCode, WalmgrError } from "./errors";

/** Quotes a word for /bin/sh when it needs it; safe for any content. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs a command the operator configured (master_restart_cmd, slave_start_cmd …) through
 * /bin/sh -c exactly as written; nothing is substituted into it (safety rule 5). Extra
 * arguments, when given, are passed as $1, $2 … and never spliced into the string.
 */
export function runConfigured(ctx: Context, key: SettingOfKind<"command">, command: string, args: string[] = []): void {
  ctx.log.info(`running ${key}: ${command}${args.length ? ` (with $1=${args.join(" ")})` : ""}`);
  const res = childProcess().spawnSync("/bin/sh", ["-c", command, "walmgr-ts", ...args], {
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (res.error) {
    throw new WalmgrError(`${key} could not be started: ${res.error.message}`, ExitCode.INTERNAL);
  }
  if (res.status !== 0) {
    const how = res.signal ? `was killed by ${res.signal}` : `exited with status ${res.status ?? "?"}`;
    throw new WalmgrError(
      `${key} (${command}) ${how}`,
      ExitCode.IO,
      `check the command in ${ctx.config.where(key)} by running it by hand`,
    );
  }
}
