/**
 * The directories a restore makes (or takes, when empty) for its tablespaces, claimed so that no
 * other restore takes the same one and so that a rerun of an interrupted restore only ever
 * writes into a directory it made itself.
 *
 * A claim is a directory created exclusively (mkdir: EEXIST means someone else's), or an
 * existing empty directory (a mount point) taken by creating a marker file in it exclusively;
 * the marker names the restore (a random token its journal holds). The journal records the
 * directory's identity (dev:ino). A rerun writes into (and removes partial copies from) a
 * directory only when its identity matches and, while the restore's files are still being moved
 * in, its marker names this restore. Anything else at that path is left as it is.
 */
import { chownSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { ioError, isErrno } from "../../errors";
import { fsyncDir, removeStaleTemps, TMP_PREFIX, writeFileDurable } from "../../storage/durable";
import { mkdirPrivate } from "../../storage/local/driver";

/** The marker file in a claimed directory, removed once the tablespace's files are in it. */
export const CLAIM_MARKER = ".walmgr-restore.claim";

/** A new random token naming one restore (kept in its journal). */
export function newClaimToken(): string {
  return randomBytes(16).toString("hex");
}

/** `dev:ino` of the directory at `path` (not followed if a link); undefined when it is not a directory. */
export function dirIdentity(path: string): string | undefined {
  try {
    const st = lstatSync(path, { bigint: true });
    return st.isDirectory() ? `${st.dev}:${st.ino}` : undefined;
  } catch (err) {
    if (isErrno(err, "ENOENT") || isErrno(err, "ENOTDIR")) return undefined;
    throw ioError("cannot stat", path, err);
  }
}

/** The token in the marker of `dir`; undefined when there is none (or it is not a restore's). */
function markerToken(dir: string): string | undefined {
  try {
    const v = JSON.parse(readFileSync(join(dir, CLAIM_MARKER), "utf8")) as { token?: unknown };
    return typeof v.token === "string" ? v.token : undefined;
  } catch {
    return undefined;
  }
}

function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch (err) {
    throw ioError("cannot list", path, err);
  }
}

/**
 * Claims `path` for the restore whose token is `token`: creates it (with missing parents), or
 * takes it when it is an empty directory, or when it already holds only this restore's marker (a
 * rerun after a crash before the claim was journaled). Returns the directory's identity, or
 * undefined when the path is taken (anything else is there, or another restore won the race);
 * nothing that was there is changed. `about` goes into the marker for people who find it.
 */
export function claimDir(path: string, token: string, about: Record<string, string>): string | undefined {
  mkdirPrivate(dirname(path));
  let created = false;
  try {
    mkdirSync(path, { mode: 0o700 });
    created = true;
  } catch (err) {
    if (!isErrno(err, "EEXIST")) throw ioError("cannot create directory", path, err);
  }
  if (created) {
    // As root, on behalf of the owner of the parent (the restored tree is chowned later anyway).
    if (process.getuid?.() === 0) {
      const parent = statSync(dirname(path));
      if (parent.uid !== 0) chownSync(path, parent.uid, parent.gid);
    }
    fsyncDir(dirname(path));
  }
  if (dirIdentity(path) === undefined) return undefined; // a file or a link: not ours to take
  removeStaleTemps(path, CLAIM_MARKER); // a marker write a killed run did not finish
  const names = listDir(path);
  const onlyOurs = names.length === 1 && names[0] === CLAIM_MARKER && markerToken(path) === token;
  if (names.length > 0 && !onlyOurs) return undefined;
  if (!onlyOurs) {
    const body = Buffer.from(`${JSON.stringify({ token, ...about, pid: process.pid })}\n`);
    const wrote = writeFileDurable(join(path, CLAIM_MARKER), body, { exclusive: true, mode: 0o644 });
    // Another restore claimed it at the same moment: its marker, its directory.
    if (!wrote && markerToken(path) !== token) return undefined;
  }
  // Something else may have put files there while we looked: then it is not free after all.
  const after = listDir(path).filter((n) => !n.startsWith(TMP_PREFIX));
  if (after.length !== 1 || markerToken(path) !== token) {
    if (markerToken(path) === token) dropClaimMarker(path, token);
    return undefined;
  }
  return dirIdentity(path);
}

/**
 * Whether the directory at `path` is the one this restore claimed: the identity it recorded, and
 * the marker naming this restore (`markerGone`: the marker may be removed already, because
 * everything was moved in).
 */
export function ownsDir(path: string, id: string, token: string, markerGone: boolean): boolean {
  if (dirIdentity(path) !== id) return false;
  return markerGone || markerToken(path) === token;
}

/** Removes this restore's marker from `dir` (never another restore's). */
export function dropClaimMarker(dir: string, token: string): void {
  if (markerToken(dir) !== token) return;
  try {
    unlinkSync(join(dir, CLAIM_MARKER));
  } catch (err) {
    if (!isErrno(err, "ENOENT")) throw ioError("cannot remove", join(dir, CLAIM_MARKER), err);
  }
  fsyncDir(dir);
}
