/**
 * The parts of README.md made from the code's own declarations, so that the manual and the code
 * never say two things: the list of wal-ctl commands (src/cli/commands.ts) and the table of
 * settings in the configuration reference (src/config/settings.ts). Each part stands
 * between marker comments in README.md:
 *
 *     <!-- generated:NAME: npm run readme -->
 *     …
 *     <!-- end generated:NAME -->
 *
 * `npm run readme` rewrites them (and formats the file with prettier, as `npm run lint` wants
 * it); test/unit/readme.test.ts fails while README.md differs from what this would write.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CTL_COMMANDS, type CommandSpec, type DocumentedCommand } from "../src/cli/commands";
import { SETTINGS, type SettingSpec } from "../src/config/settings";
import { HELPER_COMMAND } from "../src/storage/ssh/verbs";

/** `- \`restore [SET [DST]]\`: restore a backup set…`, one line per command, in the record's order. */
function commandList(): string {
  return (Object.entries(CTL_COMMANDS) as [DocumentedCommand, CommandSpec][])
    .map(([name, spec]) => {
      const internal =
        spec.internal !== true ? "" : name === HELPER_COMMAND ? " (internal)" : " (internal, walmgr.py's)";
      return `- \`${`${name} ${spec.args}`.trimEnd()}\`${internal}: ${spec.summary}`;
    })
    .join("\n");
}

/** The configuration reference's table: key, role, default, meaning; one row per setting. */
function settingsTable(): string {
  const rows = (Object.entries(SETTINGS) as [string, SettingSpec][]).map(([key, spec]) => {
    const shown = spec.shownDefault ?? spec.default ?? "—";
    return `| \`${key}\` | ${spec.role} | ${shown} | ${spec.doc.replace(/\|/g, "\\|")} |`;
  });
  return ["| key | role | default | meaning |", "| --- | --- | --- | --- |", ...rows].join("\n");
}

/** Every generated part of README.md, by the NAME its markers carry. */
export const GENERATED: Readonly<Record<string, () => string>> = {
  commands: commandList,
  settings: settingsTable,
};

/**
 * `text` (README.md as it is) with every generated part made afresh, formatted with the repository's
 * prettier settings. Throws when a part's markers are missing or out of order.
 */
export async function renderReadme(text: string, file = "README.md"): Promise<string> {
  let out = text;
  for (const [name, make] of Object.entries(GENERATED)) {
    const open = new RegExp(`^<!-- generated:${name}\\b[^\\n]*-->\\n`, "m").exec(out);
    const close = new RegExp(`^<!-- end generated:${name} -->$`, "m").exec(out);
    if (!open || !close || close.index < open.index) {
      throw new Error(`${file}: no <!-- generated:${name} --> … <!-- end generated:${name} --> markers`);
    }
    out = `${out.slice(0, open.index + open[0].length)}\n${make()}\n\n${out.slice(close.index)}`;
  }
  // prettier 3 is ESM with a CommonJS entry; loaded here only, never by the executables.
  const prettier = await import("prettier");
  const options = (await prettier.resolveConfig(file)) ?? {};
  return prettier.format(out, { ...options, parser: "markdown" });
}

/** The repository's README.md. */
export const README = join(__dirname, "..", "..", "README.md");

if (require.main === module) {
  void (async () => {
    const before = readFileSync(README, "utf8");
    const after = await renderReadme(before, README);
    if (after !== before) writeFileSync(README, after);
    process.stdout.write(after !== before ? "README.md: generated parts rewritten\n" : "README.md: up to date\n");
  })();
}
