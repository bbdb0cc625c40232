/**
 * Edits postgresql.conf the way a DBA would by hand: the last active assignment of a setting is
 * rewritten in place, every other line and comment is kept, and a setting with no active line
 * is added after its commented-out default (or at the end).
 */
import { shellQuote } from "../shell";

export function quoteConfValue(value: string): string {
  // PostgreSQL reads a backslash in a quoted value as an escape: double it to keep it.
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "''")}'`;
}

function lineRe(key: string): RegExp {
  return new RegExp(`^\\s*${key}(\\s*=\\s*|\\s+)(.*)$`, "i");
}

/** The value of an active line's right-hand side: unquoted, comment stripped. */
export function parseConfValue(rhs: string): string {
  const s = rhs.trim();
  if (s.startsWith("'")) {
    let out = "";
    for (let i = 1; i < s.length; i++) {
      const c = s[i];
      if (c === "'" && s[i + 1] === "'") {
        out += "'";
        i++;
      } else if (c === "\\" && i + 1 < s.length) {
        out += s[i + 1] ?? "";
        i++;
      } else if (c === "'") {
        break;
      } else {
        out += c;
      }
    }
    return out;
  }
  const hash = s.indexOf("#");
  return (hash === -1 ? s : s.slice(0, hash)).trim();
}

/** The active value of `key` in the file text, or undefined. */
export function getConfValue(text: string, key: string): string | undefined {
  const re = lineRe(key);
  let found: string | undefined;
  for (const line of text.split("\n")) {
    const m = re.exec(line);
    if (m) found = parseConfValue(m[2] ?? "");
  }
  return found;
}

export interface ConfEdit {
  text: string;
  /** Keys whose value changed, with the old value (undefined when the key was absent). */
  changed: { key: string; from: string | undefined; to: string }[];
}

export function setConfValues(text: string, values: Record<string, string>, marker: string): ConfEdit {
  const lines = text.split("\n");
  const changed: ConfEdit["changed"] = [];
  for (const [key, value] of Object.entries(values)) {
    const re = lineRe(key);
    let last = -1;
    let commented = -1;
    lines.forEach((line, i) => {
      if (re.test(line)) last = i;
      else if (new RegExp(`^\\s*#\\s*${key}\\s*=`, "i").test(line)) commented = i;
    });
    const newLine = `${key} = ${quoteConfValue(value)}\t\t# ${marker}`;
    if (last >= 0) {
      const m = re.exec(lines[last] ?? "");
      const old = parseConfValue(m?.[2] ?? "");
      if (old === value) continue;
      lines[last] = newLine;
      changed.push({ key, from: old, to: value });
    } else {
      if (commented >= 0) lines.splice(commented + 1, 0, newLine);
      else {
        if (lines.length > 0 && lines[lines.length - 1] === "") lines.splice(lines.length - 1, 0, newLine);
        else lines.push(newLine);
      }
      changed.push({ key, from: undefined, to: value });
    }
  }
  return { text: lines.join("\n"), changed };
}

/**
 * An archive_command or restore_command: each of `words` shell-quoted, then every `%` in them
 * doubled, because PostgreSQL replaces %p, %f and %r anywhere in the command (a config file in
 * a folder named `a%pb` would otherwise get the WAL path spliced into it) and reads `%%` as one
 * `%`; `placeholders` (such as "%p %f") follow as they are.
 */
export function pgCommandLine(words: string[], placeholders: string): string {
  return `${words.map((w) => shellQuote(w).replace(/%/g, "%%")).join(" ")} ${placeholders}`;
}

/**
 * Comments out every active assignment of `keys` (postgresql.auto.conf overrides that must go),
 * keeping the old line visible after `# `; returns the new text and the keys it touched.
 */
export function commentOutSettings(text: string, keys: string[], note: string): { text: string; keys: string[] } {
  const touched = new Set<string>();
  const lines = text.split("\n").map((line) => {
    for (const key of keys) {
      if (lineRe(key).test(line)) {
        touched.add(key);
        return `# ${line}\t# ${note}`;
      }
    }
    return line;
  });
  return { text: lines.join("\n"), keys: [...touched] };
}
