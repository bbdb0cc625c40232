import { ExitCode, WalmgrError } from "../errors";

/** Parses a PostgreSQL size setting as current_setting() shows it ("16MB", "8192"). */
export function parseSize(text: string): number {
  const m = /^(\d+)\s*(B|kB|MB|GB)?$/.exec(text.trim());
  if (!m) throw new WalmgrError(`cannot parse size ${JSON.stringify(text)}`, ExitCode.DATABASE);
  const mult: Record<string, number> = { B: 1, kB: 1024, MB: 1024 * 1024, GB: 1024 * 1024 * 1024 };
  return Number.parseInt(m[1] ?? "0", 10) * (mult[m[2] ?? "B"] ?? 1);
}
