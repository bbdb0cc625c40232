/**
 * A reader for the INI dialect of Python's ConfigParser, which walmgr.py used: `key = value` or
 * `key: value`, `#`/`;` comment lines, inline ` ;` comments, indented continuation lines,
 * case-insensitive keys, a `[DEFAULT]` section, and `%(name)s` interpolation with `%%` for `%`.
 * The `ini` npm package parses a different dialect (no `:` delimiter, no continuations, no
 * interpolation), so existing walmgr.ini files would not read the same with it.
 */

export interface RawSection {
  name: string;
  /** Lower-cased key → raw (uninterpolated) value. */
  values: Map<string, string>;
  /** Lower-cased key → 1-based line number, for messages. */
  lines: Map<string, number>;
}

export interface RawIni {
  defaults: RawSection;
  sections: RawSection[];
}

export class IniSyntaxError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message);
  }
}

// Like Python's: only the start of the line must match, so `[wal-slave]  ; comment` is a header.
const SECTION_RE = /^\[([^\]]+)\]/;
const OPTION_RE = /^([^=:\s][^=:]*?)\s*[=:]\s?(.*)$/;

export function parseIni(text: string): RawIni {
  const defaults: RawSection = { name: "DEFAULT", values: new Map(), lines: new Map() };
  const sections: RawSection[] = [];
  let current: RawSection | undefined;
  let lastKey: string | undefined;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i] ?? "";
    const trimmed = raw.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith(";") || /^rem\s/i.test(trimmed)) {
      if (trimmed === "") lastKey = undefined;
      continue;
    }
    if (/^\s/.test(raw) && current && lastKey !== undefined) {
      // Continuation line: Python joins them with a newline.
      const prev = current.values.get(lastKey) ?? "";
      current.values.set(lastKey, prev === "" ? trimmed : `${prev}\n${trimmed}`);
      continue;
    }
    const sec = SECTION_RE.exec(trimmed);
    if (sec) {
      const name = (sec[1] ?? "").trim();
      if (name === "DEFAULT") {
        current = defaults;
      } else {
        current = sections.find((s) => s.name === name);
        if (!current) {
          current = { name, values: new Map(), lines: new Map() };
          sections.push(current);
        }
      }
      lastKey = undefined;
      continue;
    }
    const opt = OPTION_RE.exec(trimmed);
    if (!opt) throw new IniSyntaxError(`cannot parse line: ${JSON.stringify(trimmed)}`, lineNo);
    if (!current) throw new IniSyntaxError("a setting appears before any [section] header", lineNo);
    const key = (opt[1] ?? "").trim().toLowerCase();
    let value = (opt[2] ?? "").trim();
    // Python strips inline comments that start with whitespace + ';'.
    const inline = /\s;/.exec(value);
    if (inline) value = value.slice(0, inline.index).trimEnd();
    current.values.set(key, value);
    current.lines.set(key, lineNo);
    lastKey = key;
  }
  return { defaults, sections };
}

export class InterpolationError extends Error {
  constructor(
    message: string,
    readonly key: string,
  ) {
    super(message);
  }
}

/**
 * Expands `%(name)s` references. `lookup` returns the raw value of a key in the same section
 * (falling back to [DEFAULT]) or undefined. A cycle or an unknown name is an error naming both
 * the key being expanded and the key it refers to.
 */
export function interpolate(key: string, lookup: (name: string) => string | undefined): string {
  const expand = (name: string, chain: string[]): string => {
    const raw = lookup(name);
    if (raw === undefined) {
      const from = chain[chain.length - 1] ?? key;
      throw new InterpolationError(`'${from}' refers to unknown setting '${name}' in %(${name})s`, from);
    }
    let out = "";
    let i = 0;
    while (i < raw.length) {
      const c = raw[i];
      if (c !== "%") {
        out += c;
        i++;
        continue;
      }
      const next = raw[i + 1];
      if (next === "%") {
        out += "%";
        i += 2;
        continue;
      }
      const m = /^%\(([^)]+)\)s/.exec(raw.slice(i));
      if (!m) {
        throw new InterpolationError(
          `'${name}' has a bare '%' at position ${i + 1}: write '%%' for a literal percent sign`,
          name,
        );
      }
      const ref = (m[1] ?? "").toLowerCase();
      if (chain.includes(ref) || ref === name) {
        throw new InterpolationError(
          `'${name}' and '${ref}' refer to each other (interpolation cycle: ${[...chain, name, ref].join(" -> ")})`,
          name,
        );
      }
      out += expand(ref, [...chain, name]);
      i += m[0].length;
    }
    return out;
  };
  return expand(key, []);
}
