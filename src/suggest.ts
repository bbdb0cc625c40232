/**
 * "Did you mean": the closest of the known names to what was typed, for unknown options and
 * help topics (yargs' recommendCommands does the same for wal-ctl's commands, with the same
 * distance, but does not export it).
 */

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
export function editDistance(a: string, b: string): number {
  // Optimal string alignment: a swapped pair (stauts → status) counts as one edit, as people type.
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  const at = (i: number, j: number): number => d[i]?.[j] ?? Number.POSITIVE_INFINITY;
  for (let i = 1; i <= a.length; i++) {
    const row = d[i] ?? [];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      row[j] = best;
    }
  }
  return at(a.length, b.length);
}

/**
 * The known name closest to `typed`: within 3 edits (yargs' threshold for commands) and at most
 * half its length (so `-x` is not taken for `-q`), or else the only one that starts with it
 * (`prom` → `prometheus`). Undefined when nothing is close.
 */
export function closest(typed: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.min(3, Math.floor(typed.length / 2)) + 1;
  for (const name of known) {
    const dist = editDistance(typed, name);
    if (dist < bestDistance) {
      best = name;
      bestDistance = dist;
    }
  }
  if (best !== undefined) return best;
  const prefixed = typed.length >= 3 ? known.filter((name) => name.startsWith(typed)) : [];
  return prefixed.length === 1 ? prefixed[0] : undefined;
}
