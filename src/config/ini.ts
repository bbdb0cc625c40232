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
 * How deep values holding `%` may nest, counting the key being read as 1: Python's
 * `configparser.MAX_INTERPOLATION_DEPTH`, so a file walmgr.py read is read the same here and a
 * file it refused is refused here too.
 */
export const MAX_INTERPOLATION_DEPTH = 10;

/**
 * Longest value interpolation may build (characters). A real setting is a path, a command or a
 * connection string; without a cap a few lines of `k2 = %(k1)s%(k1)s` double a value per line and
 * ran a process out of memory (V8 aborts with 134, which PostgreSQL takes as fatal to recovery).
 */
export const MAX_INTERPOLATED_LENGTH = 64 * 1024;

/** A `%(name)s` reference, matched where the `%` is (sticky). */
const REF_RE = /%\(([^)]+)\)s/y;

interface Expanded {
  value: string;
  /** Nesting height: 0 for a value without `%`, else 1 + the highest value it refers to. */
  height: number;
  /** The deepest reference chain below this key, this key first (for messages). */
  path: string[];
}

/**
 * Expands `%(name)s` references. `lookup` returns the raw value of a key in the same section
 * (falling back to [DEFAULT]) or undefined. A cycle or an unknown name is an error naming both
 * the key being expanded and the key it refers to; nesting deeper than MAX_INTERPOLATION_DEPTH
 * or a result longer than MAX_INTERPOLATED_LENGTH is an error naming the key.
 *
 * Returns a function of the key; it remembers every expansion, so each value is expanded once
 * however often it is referred to (work is linear in the file, not exponential in its depth).
 */
export function makeInterpolator(lookup: (name: string) => string | undefined): (key: string) => string {
  const done = new Map<string, Expanded>();
  const tooDeep = (top: string, path: string[]): InterpolationError =>
    new InterpolationError(
      `'${top}' nests %(name)s references more than ${MAX_INTERPOLATION_DEPTH} deep ` +
        `(${path.slice(0, MAX_INTERPOLATION_DEPTH + 2).join(" -> ")}${path.length > MAX_INTERPOLATION_DEPTH + 2 ? " -> …" : ""}): ` +
        "write the value out instead of referring to a reference",
      top,
    );

  // `chain`: the keys being expanded, the top-level key first; its length is this key's depth - 1.
  const expand = (name: string, chain: string[]): Expanded => {
    const top = chain[0] ?? name;
    const memo = done.get(name);
    if (memo) {
      // The memo was built at another depth: check how deep it reaches from here.
      if (memo.height > 0 && chain.length + memo.height > MAX_INTERPOLATION_DEPTH) {
        throw tooDeep(top, [...chain, ...memo.path]);
      }
      return memo;
    }
    const raw = lookup(name);
    if (raw === undefined) {
      const from = chain[chain.length - 1] ?? name;
      throw new InterpolationError(`'${from}' refers to unknown setting '${name}' in %(${name})s`, from);
    }
    if (!raw.includes("%")) {
      const plain = { value: raw, height: 0, path: [name] };
      done.set(name, plain);
      return plain;
    }
    // Checked on the way down too, so a long chain never recurses deeper than the limit.
    if (chain.length + 1 > MAX_INTERPOLATION_DEPTH) throw tooDeep(top, [...chain, name]);
    const here = [...chain, name];
    let out = "";
    let height = 1;
    let path = [name];
    const append = (text: string, at: string): void => {
      out += text;
      if (out.length > MAX_INTERPOLATED_LENGTH) {
        throw new InterpolationError(
          `'${top}' expands to more than ${MAX_INTERPOLATED_LENGTH} characters` +
            `${at === top ? "" : ` (while expanding '${at}')`}: interpolation is for paths and commands, not bulk text`,
          top,
        );
      }
    };
    let i = 0;
    while (i < raw.length) {
      const pct = raw.indexOf("%", i);
      if (pct === -1) {
        append(raw.slice(i), name);
        break;
      }
      if (pct > i) append(raw.slice(i, pct), name);
      i = pct;
      if (raw[i + 1] === "%") {
        append("%", name);
        i += 2;
        continue;
      }
      REF_RE.lastIndex = i;
      const m = REF_RE.exec(raw);
      if (!m) {
        throw new InterpolationError(
          `'${name}' has a bare '%' at position ${i + 1}: write '%%' for a literal percent sign`,
          name,
        );
      }
      const ref = (m[1] ?? "").toLowerCase();
      if (here.includes(ref)) {
        throw new InterpolationError(
          `'${name}' and '${ref}' refer to each other (interpolation cycle: ${[...here, ref].join(" -> ")})`,
          name,
        );
      }
      const sub = expand(ref, here);
      append(sub.value, name);
      if (sub.height + 1 > height) {
        height = sub.height + 1;
        path = [name, ...sub.path];
      }
      i += m[0].length;
    }
    const result = { value: out, height, path };
    done.set(name, result);
    return result;
  };
  return (key) => expand(key, []).value;
}
