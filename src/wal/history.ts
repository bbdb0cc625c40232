import { parseLsn } from "./names";

/** One line of a timeline history file: timeline `parent` ended at `switchpoint`. */
export interface TimelineSwitch {
  parent: number;
  switchpoint: bigint;
  reason: string;
}

/**
 * Parses a `TLI.history` file as PostgreSQL writes it (timeline.c): one line per ancestor,
 * "parentTLI <tab> switchpoint <tab> reason", oldest first; blank lines and `#` comments are
 * skipped. The history of timeline N therefore lists every timeline before it and where each
 * ended. A line that does not parse throws, naming `file`: a damaged history file must not be
 * read as a shorter history.
 */
export function parseHistory(text: string, file: string): TimelineSwitch[] {
  const out: TimelineSwitch[] = [];
  for (const [i, raw] of text.split("\n").entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})\s*(.*)$/.exec(line);
    if (!m) throw new Error(`${file} line ${i + 1} is not "timeline switchpoint reason": ${JSON.stringify(line)}`);
    const parent = Number(m[1]);
    const prev = out[out.length - 1];
    if (prev !== undefined && parent <= prev.parent) throw new Error(`${file} line ${i + 1}: timelines out of order`);
    out.push({ parent, switchpoint: parseLsn(m[2] ?? ""), reason: m[3] ?? "" });
  }
  return out;
}
