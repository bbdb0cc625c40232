/**
 * Who could have written a file of the slave directory. WAL is served to PostgreSQL and backups
 * are restored from what is there, so a file another user could have put there or changed (a
 * segment and its .sha256 planted together match each other) must never be served as ours.
 * A file is ours when its owner is the running user or root, and neither its group nor others
 * may write it; its folder likewise (a folder others may write lets them plant or replace
 * files in it).
 *
 * Running as root (an operator's `wal-ctl`, cron): root can write anything anyway, and the
 * slave directory belongs to the user PostgreSQL and walmgr run as, not to root. So as root a
 * folder's owner is whoever owns it, and a file owned by that owner (or by root) is ours: root
 * reads the postgres user's archive as that user would. A file of a third user in it is refused
 * all the same.
 */
import { readFileSync } from "node:fs";

const euid = typeof process.geteuid === "function" ? process.geteuid() : undefined;

/** Mode bits that let the group or others write. */
const GROUP_OTHER_WRITE = 0o022;
/** The sticky bit: in such a folder only a file's owner may rename or remove it. */
const STICKY = 0o1000;

/** What an owner check needs of a stat. */
export interface Owned {
  uid: number;
  mode: number;
}

let passwd: Map<number, string> | undefined;

/** The login name of `uid` (from /etc/passwd), or `uid N`. */
export function userName(uid: number): string {
  if (passwd === undefined) {
    passwd = new Map();
    try {
      for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
        const f = line.split(":");
        const id = Number.parseInt(f[2] ?? "", 10);
        if (f[0] && Number.isInteger(id) && !passwd.has(id)) passwd.set(id, f[0]);
      }
    } catch {
      // no /etc/passwd: numbers only
    }
  }
  const name = passwd.get(uid);
  return name === undefined ? `uid ${uid}` : `${name} (uid ${uid})`;
}

function mode(m: number): string {
  return (m & 0o7777).toString(8).padStart(4, "0");
}

function writers(m: number): string {
  const g = (m & 0o020) !== 0;
  const o = (m & 0o002) !== 0;
  return g && o ? "its group and all users" : g ? "its group" : "all users";
}

/** No owner checks where there are no owners to check (not POSIX). */
const checking = euid !== undefined;

/** A folder's owner is trusted: the running user, root, and anyone when root runs (see above). */
function trustedFolderOwner(uid: number): boolean {
  return uid === euid || uid === 0 || euid === 0;
}

/** A file's owner is trusted: the running user, root, and (when root runs) its folder's owner. */
function trustedFileOwner(uid: number, folderUid: number | undefined): boolean {
  return uid === euid || uid === 0 || (euid === 0 && uid === folderUid);
}

/**
 * Why another user could have written the file `st` itself (its owner, its mode), in a folder
 * owned by `folderUid`; undefined when nobody else could.
 */
export function foreignFile(st: Owned, folderUid: number | undefined): string | undefined {
  if (!checking) return undefined;
  if (!trustedFileOwner(st.uid, folderUid)) return `owned by ${userName(st.uid)}, mode ${mode(st.mode)}`;
  if ((st.mode & GROUP_OTHER_WRITE) !== 0) return `mode ${mode(st.mode)} lets ${writers(st.mode)} write it`;
  return undefined;
}

/**
 * Why another user could have written into the folder `st` (its owner, its mode); undefined
 * when nobody else could. `forRead`: only what makes the files in it untrustworthy to read (a
 * sticky folder others may write, like /tmp, lets them add files but not touch ours, and the
 * files' own owners are checked); without it, any write bit for the group or others counts
 * (what verify and check report: others could plant WAL under names not archived yet).
 */
export function foreignFolder(st: Owned, forRead = false): string | undefined {
  if (!checking) return undefined;
  if (!trustedFolderOwner(st.uid)) return `owned by ${userName(st.uid)}, mode ${mode(st.mode)}`;
  if ((st.mode & GROUP_OTHER_WRITE) !== 0 && !(forRead && (st.mode & STICKY) !== 0))
    return `mode ${mode(st.mode)} lets ${writers(st.mode)} write in it`;
  return undefined;
}

/** The user files of the slave directory must belong to (for messages): the running user, or as root the folder's owner. */
export function expectedOwner(folderUid: number | undefined): string {
  const uid = euid === 0 && folderUid !== undefined ? folderUid : euid;
  if (uid === undefined) return "the user that runs walmgr";
  const name = userName(uid);
  return name.replace(/ \(uid \d+\)$/, "");
}
