import { colour } from "../../colour";
import { ExitCode, type ExitCodeValue } from "../../errors";

/** OK: as it should be; WARN: works, but needs a look; FAIL: broken; SKIP: not applicable or not reachable because of an earlier failure. */
export type CheckState = "OK" | "WARN" | "FAIL" | "SKIP";

/** One line of `wal-ctl CONFIG check` (`--json`: schemas/check.schema.json). */
export interface CheckItem {
  /** A short stable name, e.g. "archive_command", "slave directory writable". */
  name: string;
  status: CheckState;
  /** What was found, in one sentence. */
  detail: string;
  /** What to do about it (WARN and FAIL). */
  fix?: string;
  /** The exit code of the kind of failure (exit table in errors.ts); only WARN and FAIL. */
  code?: ExitCodeValue;
  /** Numbers for monitoring (perfdata with --nagios), e.g. ready: 12. */
  metrics?: Record<string, number>;
}

export interface CheckReport {
  ok: boolean;
  role: "master" | "slave";
  config: string;
  checks: CheckItem[];
}

/** The exit code of a report: 0 when nothing is WARN or FAIL; else the first FAIL's kind, or the first WARN's. */
export function exitCodeOf(checks: CheckItem[]): ExitCodeValue {
  const bad = checks.find((c) => c.status === "FAIL") ?? checks.find((c) => c.status === "WARN");
  return bad === undefined ? ExitCode.OK : (bad.code ?? ExitCode.IO);
}

const STATE_COLOUR = { OK: "ok", WARN: "warn", FAIL: "fail", SKIP: "dim" } as const;

/** One item a line (`OK   name: detail`), the fix on the next line; colour only on a terminal. */
export function formatText(rep: CheckReport): string {
  const width = Math.max(...rep.checks.map((c) => c.name.length));
  const lines: string[] = [];
  for (const c of rep.checks) {
    lines.push(`${colour(STATE_COLOUR[c.status], c.status.padEnd(4))} ${`${c.name}:`.padEnd(width + 1)} ${c.detail}`);
    if (c.fix !== undefined && (c.status === "WARN" || c.status === "FAIL")) {
      lines.push(`${" ".repeat(5 + width + 2)}fix: ${c.fix}`);
    }
  }
  const failed = rep.checks.filter((c) => c.status === "FAIL").length;
  const warned = rep.checks.filter((c) => c.status === "WARN").length;
  lines.push(
    failed + warned === 0
      ? `all ${rep.checks.filter((c) => c.status === "OK").length} checks passed (${rep.role}, ${rep.config})`
      : `${failed} check(s) failed, ${warned} warning(s) (${rep.role}, ${rep.config})`,
  );
  return lines.join("\n");
}

/** Nagios plugin states and their exit codes (Nagios plugin guidelines). */
export const NAGIOS = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;

/** A perfdata label: quoted when it holds anything but letters, digits and _ (guidelines: '' doubles a quote). */
function perfLabel(name: string): string {
  return /^[A-Za-z0-9_]+$/.test(name) ? name : `'${name.replace(/'/g, "''")}'`;
}

/**
 * The Nagios plugin line: `WALMGR STATE - summary | perfdata`, one line, and its exit code
 * (0 OK, 1 WARNING, 2 CRITICAL). The summary names what failed, most severe first.
 */
export function formatNagios(rep: CheckReport): { line: string; code: number } {
  const failed = rep.checks.filter((c) => c.status === "FAIL");
  const warned = rep.checks.filter((c) => c.status === "WARN");
  const state = failed.length > 0 ? "CRITICAL" : warned.length > 0 ? "WARNING" : "OK";
  const oneLine = (s: string): string => s.replace(/\s*[\r\n|]+\s*/g, " ");
  const summary =
    state === "OK"
      ? `${rep.checks.filter((c) => c.status === "OK").length} checks passed (${rep.role})`
      : [...failed, ...warned].map((c) => `${c.name}: ${c.detail}`).join("; ");
  const perf = [
    `checks=${rep.checks.length};;;0`,
    `failed=${failed.length};;1;0`,
    `warnings=${warned.length};1;;0`,
    ...rep.checks.flatMap((c) => Object.entries(c.metrics ?? {}).map(([k, v]) => `${perfLabel(k)}=${v}`)),
  ];
  return { line: `WALMGR ${state} - ${oneLine(summary)} | ${perf.join(" ")}`, code: NAGIOS[state] };
}
