import { posix } from "node:path";
import type { Context } from "../../context";
import { ExitCode, type ExitCodeValue } from "../../errors";
import { slaveLayout } from "../../slavedir/layout";
import { BACKUP_INFO, leftoverPid, listSets, parseBackupInfo } from "./sets";
import { readBytes } from "../../storage/bytes";

interface Row {
  name: string;
  path: string;
  startTime: string;
  label: string;
  startWal: string;
  bytes: number | null;
  /** Why the set's metadata could not be read (the set is listed, marked damaged). */
  problem?: string;
}

function fromLabel(text: string): Partial<Row> {
  const get = (re: RegExp): string | undefined => re.exec(text)?.[1];
  return {
    startTime: get(/START TIME: (.*)/) ?? "",
    label: get(/LABEL: (.*)/) ?? "",
    startWal: get(/START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)/) ?? "",
  };
}

/**
 * `listbackups`: the backup sets in the slave directory, newest first. A set whose metadata is
 * damaged is still listed, marked DAMAGED (from its backup_label where possible), the damage is
 * logged naming the file, and the command exits 9 after listing every set.
 */
export async function listBackups(ctx: Context): Promise<ExitCodeValue> {
  const layout = slaveLayout(ctx.config, "listbackups");
  const full = ctx.config.requireLocation("full_backup", "listbackups");
  const rows: Row[] = [];
  for (const set of await listSets(layout.driver, full.path)) {
    const infoRaw = await readBytes(layout.driver, posix.join(set, BACKUP_INFO));
    const row: Row = { name: posix.basename(set), path: set, startTime: "", label: "", startWal: "", bytes: null };
    let parsed = false;
    if (infoRaw) {
      try {
        const info = parseBackupInfo(infoRaw.toString("utf8"), posix.join(set, BACKUP_INFO));
        Object.assign(row, {
          startTime: info.startTime,
          label: info.label,
          startWal: info.startWal,
          bytes: info.bytes,
        });
        parsed = true;
      } catch (err) {
        row.problem = (err as Error).message;
        ctx.log.error(row.problem);
      }
    }
    if (!parsed) {
      const label = await readBytes(layout.driver, posix.join(set, "backup_label"));
      if (label) Object.assign(row, fromLabel(label.toString("utf8")));
      else if (!row.problem) continue; // not a usable set
    }
    rows.push(row);
  }
  // Hidden leftovers of backups that did not finish: not sets, but the operator should know.
  const dir = posix.dirname(full.path);
  for (const name of (await layout.driver.list(dir)) ?? []) {
    if (leftoverPid(full.path, name) === undefined) continue;
    ctx.log.warn(
      `${posix.join(dir, name)} is left over from a backup that did not finish: the next backup puts it in place if it is complete and newer than the sets, otherwise removes it`,
    );
  }
  const code = rows.some((r) => r.problem) ? ExitCode.IO : ExitCode.OK;
  if (ctx.json) {
    ctx.out(JSON.stringify(rows, null, 2));
    return code;
  }
  if (rows.length === 0) {
    ctx.out(`no backup sets in ${posix.dirname(full.path)}`);
    return code;
  }
  const table = [["NAME", "START TIME", "LABEL", "START WAL", "SIZE"]];
  for (const r of rows) {
    table.push([
      r.problem ? `${r.name} (DAMAGED ${BACKUP_INFO})` : r.name,
      r.startTime,
      r.label,
      r.startWal,
      r.bytes === null ? "?" : `${(r.bytes / 1048576).toFixed(1)} MiB`,
    ]);
  }
  const widths = (table[0] ?? []).map((_, i) => Math.max(...table.map((row) => (row[i] ?? "").length)));
  ctx.out(
    table
      .map((row) =>
        row
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join("  ")
          .trimEnd(),
      )
      .join("\n"),
  );
  return code;
}
