import type { Context } from "../../context";
import { setCallDeadline } from "../../deadline";
import { UsageError, type ExitCodeValue } from "../../errors";
import { writeStdout } from "../../log";
import { masterChecks } from "./master";
import { exitCodeOf, formatNagios, formatText, type CheckItem, type CheckReport } from "./report";
import { slaveChecks } from "./slave";

/** How long the master's check waits for the switched segment to arrive, by default (s). */
export const DEFAULT_CHECK_TIMEOUT = 60;

/** --timeout SECONDS: a positive number. */
function timeoutOf(ctx: Context): number {
  const raw = ctx.options.get("timeout");
  if (raw === undefined) return DEFAULT_CHECK_TIMEOUT;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0)
    throw new UsageError(`--timeout must be a positive number of seconds, not ${JSON.stringify(raw)}`);
  return n;
}

/**
 * `wal-ctl CONFIG check`: proves the setup works, one item a line (OK, WARN, FAIL, SKIP) with
 * the reason and the fix. On the master: the slave directory takes a durable write, the
 * database's archive settings run this config, the archiver is not failing or behind, and a
 * forced WAL switch arrives in completed_wals within --timeout. On the slave: the layout, the
 * standby's restore_command, the newest backup's WAL chain, BACKUPLOCK, and replay.
 * Exit 0 when nothing is WARN or FAIL, else the exit code of the first failure's kind;
 * --nagios: one line and the Nagios codes 0/1/2 (3 when the config cannot be read);
 * --json: the report (schemas/check.schema.json).
 */
export async function check(ctx: Context): Promise<ExitCodeValue> {
  const nagios = ctx.options.get("nagios") === "true";
  if (nagios && ctx.json) throw new UsageError("--json and --nagios cannot be used together");
  const timeout = timeoutOf(ctx);
  // --timeout is the deadline of the whole check (deadline.ts), not only of the wait for the
  // switched segment: a monitoring system waits for the check, and an S3 endpoint that trickles
  // or never answers must not hold it longer. (Database waits keep their own limits.)
  setCallDeadline(timeout, "--timeout");
  const checks: CheckItem[] = [];
  const warnings = ctx.config.warnings;
  checks.push(
    warnings.length === 0
      ? { name: "config", status: "OK", detail: `${ctx.config.file} is valid (${ctx.config.role})` }
      : {
          name: "config",
          status: "WARN",
          detail: `${ctx.config.file}: ${warnings.join("; ")}`,
          fix: "correct or remove the keys named (a misspelt key is silently not used)",
          code: 3,
        },
  );
  checks.push(...(ctx.config.role === "master" ? await masterChecks(ctx, timeout) : await slaveChecks(ctx)));
  const report: CheckReport = { ok: exitCodeOf(checks) === 0, role: ctx.config.role, config: ctx.config.file, checks };
  if (nagios) {
    const { line, code } = formatNagios(report);
    writeStdout(`${line}\n`);
    // Nagios' 0-3 are the plugin protocol's own meanings (OK, WARNING, CRITICAL, UNKNOWN), not the
    // exit table's; the numbers are all in the table's range, and --nagios asks for exactly these.
    return code as ExitCodeValue;
  }
  ctx.out(ctx.json ? JSON.stringify(report, null, 2) : formatText(report));
  return exitCodeOf(checks);
}
