/**
 * Whether `rel`, a relative path that came from outside (a bucket listing, a manifest, a remote
 * peer's answer), may be joined to a local folder: it then names something inside that folder
 * and nothing else. Refused: an empty path, an absolute one, an empty, `.` or `..` component
 * (posix.join would fold those, and `a/../../x` leaves the folder), a NUL byte (which the
 * file system APIs refuse anyway), and a backslash (a separator for a Windows peer, a plain
 * character here: never written by this project). S3 keys are opaque strings, so a listing may
 * hold any of these.
 */
export function isSafeRelPath(rel: string): boolean {
  if (rel === "" || rel.startsWith("/") || rel.includes("\0") || rel.includes("\\")) return false;
  return rel.split("/").every((part) => part !== "" && part !== "." && part !== "..");
}

/**
 * Whether `name`, an entry of a folder listing that came from outside (a remote helper's answer),
 * is one plain name that may be joined to that folder: not empty, not `.` or `..`, without a
 * `/` or a NUL byte. A real directory listing never holds anything else, so an answer that does
 * comes from a broken or hostile peer. (A backslash is an ordinary character in a name here.)
 */
export function isSafeName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && !name.includes("/") && !name.includes("\0");
}
