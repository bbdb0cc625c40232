/**
 * restore's --target-* options: each value checked before anything is written (a bad one would
 * only show when the restored server fails to start), turned into PostgreSQL's recovery_target_*
 * settings.
 */
import { UsageError } from "../../errors";
import { tryParseLsn } from "../../wal/names";

const TARGET_ACTIONS = new Set(["promote", "pause", "shutdown"]);

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A time zone PostgreSQL surely knows: Z/UTC/GMT, a numeric offset, or an IANA name. */
function knownZone(zone: string): boolean {
  if (/^(Z|UTC|GMT)$/i.test(zone)) return true;
  const off = /^[+-](\d{2})(?::?(\d{2}))?$/.exec(zone);
  if (off) return Number(off[1]) <= 15 && Number(off[2] ?? 0) <= 59;
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(zone) || !zone.includes("/")) return false;
  try {
    new Intl.DateTimeFormat("en", { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/**
 * Why `value` is not a --target-time PostgreSQL surely accepts (undefined when it is): ISO-like
 * `YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][ ZONE]` with real calendar values. PostgreSQL reads more
 * forms, but a value it rejects is only found when the restored server fails to start.
 */
export function badTargetTime(value: string): string | undefined {
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?)?(?: ?([A-Za-z][A-Za-z0-9_+\-/]*|[+-][0-9:]+))?$/.exec(
      value,
    );
  if (!m) return "expected YYYY-MM-DD HH:MM:SS[.ffffff][ZONE], e.g. '2024-05-01 12:00:00+00'";
  const [, , mon = "", day = "", hh = "0", mm = "0", ss = "0", zone] = m;
  const month = Number(mon);
  if (month < 1 || month > 12) return `no month ${mon}`;
  const year = Number(m[1]);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days = month === 2 && !leap ? 28 : (DAYS_IN_MONTH[month - 1] ?? 31);
  if (Number(day) < 1 || Number(day) > days) return `no day ${day} in ${m[1]}-${mon}`;
  if (Number(hh) > 23 || Number(mm) > 59 || Number(ss) > 60) return "no such time of day";
  if (zone !== undefined && !knownZone(zone))
    return `unknown time zone ${JSON.stringify(zone)} (use Z, UTC, a numeric offset such as +02 or -05:30, or a name such as Europe/Berlin)`;
  return undefined;
}

/** Checks each --target-* value before anything is written: a bad one only shows when the server fails to start. */
function checkTargetValue(opt: string, value: string): void {
  let why: string | undefined;
  switch (opt) {
    case "target-time":
      why = badTargetTime(value);
      break;
    case "target-lsn":
      if (tryParseLsn(value) === undefined) why = "expected an LSN such as 0/3000028";
      break;
    case "target-xid":
      if (!/^[1-9]\d{0,19}$/.test(value) || BigInt(value) >= 2n ** 64n)
        why = "expected a transaction id (a positive integer without leading zeros)";
      break;
    case "target-name":
      if (value === "") why = "it is empty";
      // eslint-disable-next-line no-control-regex
      else if (/[\x00-\x1f\x7f]/.test(value)) why = "it holds a line break or another control character";
      else if (Buffer.byteLength(value) > 63) why = "restore point names are at most 63 bytes";
      break;
  }
  if (why !== undefined) throw new UsageError(`--${opt} ${JSON.stringify(value)} is not valid: ${why}`);
}

/** Recovery target settings from --target-* options, validated; empty when replaying to the end. */
export function recoveryTarget(options: Map<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  const targets: [string, string][] = [
    ["target-time", "recovery_target_time"],
    ["target-lsn", "recovery_target_lsn"],
    ["target-xid", "recovery_target_xid"],
    ["target-name", "recovery_target_name"],
  ];
  for (const [opt, setting] of targets) {
    const v = options.get(opt);
    if (v !== undefined) out[setting] = v;
  }
  if (Object.keys(out).length > 1)
    throw new UsageError("give at most one of --target-time, --target-lsn, --target-xid, --target-name");
  for (const [opt] of targets) {
    const v = options.get(opt);
    if (v !== undefined) checkTargetValue(opt, v);
  }
  const action = options.get("target-action");
  if (action !== undefined) {
    if (!TARGET_ACTIONS.has(action))
      throw new UsageError(`--target-action must be promote, pause or shutdown, not ${JSON.stringify(action)}`);
    if (Object.keys(out).length === 0) throw new UsageError("--target-action needs one of the --target-* options");
  }
  if (options.has("target-exclusive") && Object.keys(out).length === 0) {
    throw new UsageError("--target-exclusive needs one of the --target-* options");
  }
  if (Object.keys(out).length > 0) {
    out.recovery_target_action = action ?? "promote";
    if (options.has("target-exclusive")) out.recovery_target_inclusive = "off";
  }
  return out;
}
