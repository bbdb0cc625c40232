import { hostname } from "node:os";
import { existsSync } from "node:fs";
import { posix } from "node:path";
import type { Context } from "../../context";
import { ExitCode, type ExitCodeValue } from "../../errors";
import { slaveLayout } from "../../slavedir/layout";
import { BACKUP_INFO, leftoverPid, listSets, parseBackupInfo } from "../../slavedir/backup-sets";
import { readBytes } from "../../storage/bytes";
import { runningRestore } from "../restore/journal";
import { restoreHolds, type RestoreHold } from "../../slavedir/pending-restores";

interface Row {
  name: string;
  path: string;
  startTime: string;
  label: string;
  startWal: string;
  bytes: number | null;
  /** Why the set's metadata could not be read (the set is listed, marked damaged). */
  problem?: string;
  /** Not a set any more: taken by a restore that has not finished (its WAL is kept meanwhile). */
  pendingRestore?: PendingRow;
  /** "plain" (a data directory) or "repo" (a set of the block repository). */
  format?: "plain" | "repo";
  /** repo: the last WAL segment the set needs (its backup's end). */
  stopWal?: string;
  /** repo: bytes this set's backup wrote into the repository (compressed: what it cost). */
  storedBytes?: number;
  /** repo: raw bytes of blocks this set's backup stored (the rest was already there). */
  newBytes?: number;
  /** repo: new bytes / stored bytes. */
  compressionRatio?: number | null;
}

interface PendingRow {
  /** The set as it was listed when the restore began (undefined: unknown, an earlier version's claim). */
  set?: string;
  into?: string;
  journal?: string;
  claimed?: string;
  host?: string;
  pid?: number;
  startedAt?: string;
  /** The command that finishes it. */
  command?: string;
  /** A restore into it runs now (true), none does (false), unknown from here (null: another host). */
  running: boolean | null;
  /** Its journal is gone (the operator abandoned it): no rerun can finish it. */
  abandoned?: boolean;
}

/** A pending restore as a row (its path: the record, or the claimed set that has none). */
function pendingRow(h: RestoreHold): Row {
  const r = h.record;
  let running: boolean | null = null;
  let abandoned: boolean | undefined;
  if (r !== undefined && r.host === hostname()) {
    running = runningRestore(r.dst) !== undefined;
    abandoned = !running && !existsSync(r.journal);
  }
  const row: Row = {
    name: posix.basename(h.path),
    path: h.path,
    startTime: r?.startTime ?? "",
    label: r?.label ?? "",
    startWal: h.startWal ?? "",
    bytes: r?.bytes ?? null,
    pendingRestore: {
      ...(r !== undefined
        ? {
            set: r.set,
            into: r.dst,
            journal: r.journal,
            ...(r.claimed !== undefined ? { claimed: r.claimed } : {}),
            host: r.host,
            pid: r.pid,
            startedAt: r.startedAt,
            command: r.command,
          }
        : h.kind === "claimed"
          ? { claimed: h.path }
          : {}),
      running,
      ...(abandoned === true ? { abandoned } : {}),
    },
  };
  if (h.problem !== undefined) row.problem = h.problem;
  return row;
}

/** One line per pending restore, in words: what it holds, and what finishes or abandons it. */
function describePending(row: Row): string {
  const p = row.pendingRestore;
  const wal = row.startWal ? `keeps the WAL from ${row.startWal} on` : "keeps all WAL (its start WAL cannot be read)";
  if (p?.into === undefined) {
    return `  ${row.path}: ${row.problem ?? "a set claimed by a restore of an earlier version"}; ${wal}`;
  }
  const who = `begun ${p.startedAt ?? "?"} by pid ${p.pid ?? "?"} on ${p.host ?? "?"}`;
  const state =
    p.abandoned === true
      ? `abandoned (its journal ${p.journal ?? "?"} is gone): remove ${row.path}${p.claimed !== undefined && existsSync(p.claimed) ? ` and put back or remove the claimed set ${p.claimed}` : ""} to let its WAL go (a new restore into ${p.into} removes the record)`
      : p.running === true
        ? "running now"
        : p.running === false
          ? `not running: finish it with ${p.command ?? "the same restore command"}`
          : `on another host: finish it there with ${p.command ?? "the same restore command"}`;
  return `  ${posix.basename(p.set ?? "?")} into ${p.into} (${row.path}), ${who}; ${wal}; ${state}`;
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
  for (const r of rows) r.format = "plain";
  // Then the block repository's, newest first (a slave directory may hold both after
  // backup_format changed).
  rows.push(...(await repoRows(ctx)).reverse());
  // Hidden leftovers of backups that did not finish: not sets, but the operator should know.
  const dir = posix.dirname(full.path);
  for (const name of (await layout.driver.list(dir)) ?? []) {
    if (leftoverPid(full.path, name) === undefined) continue;
    ctx.log.warn(
      `${posix.join(dir, name)} is left over from a backup that did not finish: the next backup puts it in place if it is complete and newer than the sets, otherwise removes it`,
    );
  }
  // Sets taken by restores that have not finished: not restorable, but their WAL is kept.
  const pending = (await restoreHolds(layout.driver, full.path)).map(pendingRow);
  for (const r of pending) if (r.problem) ctx.log.error(r.problem);
  const code = [...rows, ...pending].some((r) => r.problem) ? ExitCode.IO : ExitCode.OK;
  if (ctx.json) {
    ctx.out(JSON.stringify([...rows, ...pending], null, 2));
    return code;
  }
  const pendingText =
    pending.length === 0
      ? ""
      : `\npending restores (not restorable; their WAL is kept until they finish, README "An interrupted restore"):\n${pending.map(describePending).join("\n")}`;
  if (rows.length === 0) {
    ctx.out(`no backup sets in ${posix.dirname(full.path)}${pendingText}`);
    return code;
  }
  // The repository's columns only where it has sets: a plain slave directory's table is as it was.
  const repo = rows.some((r) => r.format === "repo");
  const table = [["NAME", "START TIME", "LABEL", "START WAL", "SIZE", ...(repo ? ["STORED", "FORMAT"] : [])]];
  for (const r of rows) {
    table.push([
      r.problem ? `${r.name} (DAMAGED ${r.format === "repo" ? "manifest" : BACKUP_INFO})` : r.name,
      r.startTime,
      r.label,
      r.startWal,
      r.bytes === null ? "?" : `${(r.bytes / 1048576).toFixed(1)} MiB`,
      ...(repo
        ? [
            r.format === "repo"
              ? `${((r.storedBytes ?? 0) / 1048576).toFixed(1)} MiB${r.compressionRatio ? ` (${r.compressionRatio.toFixed(1)}×)` : ""}`
              : "",
            r.format ?? "",
          ]
        : []),
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
      .join("\n") + pendingText,
  );
  return code;
}

/** The block repository's sets as rows (none when it does not exist); a damaged one is listed with its problem. */
async function repoRows(ctx: Context): Promise<Row[]> {
  const loc = ctx.config.location("backup_repo");
  if (loc === undefined) return [];
  const { openRepo } = await import("./repo.js");
  const { listRepoSets, repoSetInfo } = await import("../../repo/sets.js");
  const { driver, layout } = openRepo(ctx);
  const out: Row[] = [];
  for (const set of await listRepoSets(driver, layout)) {
    const row: Row = {
      name: set,
      path: layout.manifestPath(set),
      startTime: "",
      label: "",
      startWal: "",
      bytes: null,
      format: "repo",
    };
    try {
      const info = await repoSetInfo(driver, layout, set);
      const str = (k: string): string => (typeof info?.[k] === "string" ? info[k] : "");
      const num = (k: string): number | undefined => (typeof info?.[k] === "number" ? info[k] : undefined);
      Object.assign(row, { startTime: str("startTime"), label: str("label"), startWal: str("startWal") });
      row.bytes = num("bytes") ?? null;
      if (str("stopWal")) row.stopWal = str("stopWal");
      const stored = num("storedBytes");
      const fresh = num("newBytes");
      if (stored !== undefined) row.storedBytes = stored;
      if (fresh !== undefined) row.newBytes = fresh;
      row.compressionRatio = stored && fresh ? Math.round((fresh / stored) * 100) / 100 : null;
    } catch (err) {
      row.problem = (err as Error).message;
      ctx.log.error(row.problem);
    }
    out.push(row);
  }
  return out;
}
