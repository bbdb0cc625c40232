/**
 * restore's tablespaces (in step "prepare"): each pg_tblspc/OID folder of the set moved out to a
 * directory claimed for it (claim.ts) and linked back, journaled so that a rerun goes on where
 * the last run stopped.
 */
import { existsSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import type { Context } from "../../context";
import { ExitCode, WalmgrError } from "../../errors";
import type { Progress } from "../../progress";
import { isSymlink, removeTreeDurable, renameOrCopyTree } from "../../storage/local/driver";
import { fsyncDir } from "../../storage/durable";
import { crashPoint, writeJournal, type RestoreJournal, type ClaimedDir, type RestorePaths } from "./journal";
import { claimDir, dropClaimMarker, newClaimToken, ownsDir } from "./claim";
import { io, chownTree, isRoot } from "./local-fs";

/**
 * A set holds each tablespace as a folder pg_tblspc/OID and the master's locations in
 * tablespace_map. PostgreSQL would replace those folders with links to the master's paths, so
 * their contents are moved out and linked here instead: to the original path when it is free on
 * this machine (missing or an empty directory, such as a mount point), otherwise beside the
 * data directory (DST_tblspc_OID). Each such directory is claimed when it is chosen (made by this
 * restore, or marked when taken empty: claim.ts) and journaled with its identity, so a
 * second restore never takes it, and a rerun writes only into a directory it made itself:
 * whatever else it finds at a journaled path (another restore's tablespace, say) is left as it
 * is. On another file system the files are copied into place (a mount point itself is kept),
 * then removed from the set. tablespace_map goes last.
 */
export async function relocateTablespaces(
  ctx: Context,
  paths: RestorePaths,
  j: RestoreJournal,
  progress: Progress,
): Promise<void> {
  const tblspc = join(paths.stage, "pg_tblspc");
  const mapFile = join(paths.stage, "tablespace_map");
  if (j.token === undefined) {
    j.token = newClaimToken();
    writeJournal(paths, j);
  }
  const token = j.token;
  if (j.tablespaces === undefined) {
    const decided: Record<string, string> = {};
    const dirs: Record<string, ClaimedDir> = {};
    const text = existsSync(mapFile) ? io("cannot read", mapFile, () => readFileSync(mapFile, "utf8")) : "";
    for (const line of text.split("\n")) {
      const m = /^(\d+) (.+)$/.exec(line);
      if (!m) continue;
      const [, oid = "", original = ""] = m;
      const inSet = join(tblspc, oid);
      if (!existsSync(inSet) || isSymlink(inSet)) continue;
      const place = claimTablespaceDir(j, token, oid, original);
      decided[oid] = place.path;
      dirs[oid] = { id: place.id };
    }
    j.tablespaces = decided;
    j.tablespaceDirs = dirs;
    writeJournal(paths, j);
    crashPoint("tablespaces-claimed");
  }
  const dirs = (j.tablespaceDirs ??= {});
  for (const [oid, decidedPath] of Object.entries(j.tablespaces)) {
    const inSet = join(tblspc, oid);
    if (isSymlink(inSet)) continue;
    let where = decidedPath;
    let dir = dirs[oid];
    const inSetNow = existsSync(inSet) ? io("cannot list", inSet, () => readdirSync(inSet)) : undefined;
    if (dir === undefined || !ownsDir(where, dir.id, token, inSetNow === undefined || inSetNow.length === 0)) {
      if (dir?.moving === true) {
        throw new WalmgrError(
          `${where} is not the directory this restore made for tablespace ${oid} any more (removed or replaced while the restore was interrupted), and part of the tablespace's files had been moved there: it is left as it is`,
          ExitCode.IO,
          `look at ${where}; then restore again from the set (remove ${paths.journal} and ${paths.stage} first)`,
        );
      }
      if (inSetNow === undefined) {
        // Journals of older versions: the folder was renamed to `where` whole.
        if (dir !== undefined || !existsSync(where)) {
          throw new WalmgrError(
            `tablespace ${oid} is neither in ${tblspc} nor in the directory this restore made for it at ${where}`,
            ExitCode.IO,
            `restore again from another set (remove ${paths.journal} first)`,
          );
        }
      } else {
        // Nothing of ours is there: our files are all still in the stage. What is there is
        // never emptied or written into; the tablespace goes to a directory claimed now.
        const place = claimTablespaceDir(j, token, oid, where);
        if (place.path !== where)
          ctx.log.warn(
            `${where} is not the directory this restore made for tablespace ${oid} (something else is there now): it is left as it is, and tablespace ${oid} goes to ${place.path}`,
          );
        where = place.path;
        dir = { id: place.id };
        j.tablespaces[oid] = where;
        dirs[oid] = dir;
        writeJournal(paths, j);
      }
    }
    if (inSetNow !== undefined) {
      if (dir !== undefined && !dir.moving && inSetNow.length > 0) {
        dir.moving = true;
        writeJournal(paths, j);
      }
      for (const name of inSetNow) {
        const from = join(inSet, name);
        const to = join(where, name);
        // The directory is ours: what is at `to` is a partial copy a crash left.
        io("cannot remove", to, () => rmSync(to, { recursive: true, force: true }));
        // On another file system a copy: its bytes count on the progress line.
        const how = await renameOrCopyTree(from, to, undefined, (bytes, files) => progress.add(bytes, files));
        if (how === "copied") {
          crashPoint("tablespace-copied");
          removeTreeDurable(from);
        }
      }
      crashPoint("tablespace-moved");
      dropClaimMarker(where, token);
    }
    removeTreeDurable(inSet); // the emptied folder, or a leftover of an interrupted removal
    if (isRoot() && j.owner.uid !== 0) chownTree(where, j.owner.uid, j.owner.gid);
    io("cannot link", inSet, () => symlinkSync(where, inSet));
    fsyncDir(tblspc);
    ctx.log.info(`tablespace ${oid} restored to ${where}`);
    crashPoint("tablespace-linked");
  }
  if (existsSync(mapFile)) {
    io("cannot remove", mapFile, () => rmSync(mapFile));
    fsyncDir(paths.stage);
  }
}

/** How many DST_tblspc_OID.N names a restore tries before it gives up. */
const MAX_TABLESPACE_CANDIDATES = 100;

/**
 * Claims a directory for tablespace `oid`: `first` (its original path, or the one journaled)
 * when it is free, else DST_tblspc_OID, else DST_tblspc_OID.0, .1 … (claim.ts).
 */
function claimTablespaceDir(
  j: RestoreJournal,
  token: string,
  oid: string,
  first: string,
): { path: string; id: string } {
  const base = `${j.dst}_tblspc_${oid}`;
  const candidates = [first, base, ...Array.from({ length: MAX_TABLESPACE_CANDIDATES }, (_, i) => `${base}.${i}`)];
  const about = { restore: j.dst, tablespace: oid, started: j.startedAt };
  for (const path of new Set(candidates)) {
    const id = claimDir(path, token, about);
    if (id !== undefined) return { path, id };
  }
  throw new WalmgrError(
    `no free directory for tablespace ${oid}: ${first}, ${base} and ${base}.0 … .${MAX_TABLESPACE_CANDIDATES - 1} are all taken`,
    ExitCode.IO,
    `free one of them (empty or missing), then run the restore again`,
  );
}
