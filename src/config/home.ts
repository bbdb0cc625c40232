/**
 * `~` in a config file's paths, as skytools expanded its file names (Python's
 * os.path.expanduser): `~` and `~/…` are the running user's home, `~name` and `~name/…` the home
 * of user `name`. Anything else is returned as it is.
 */
import { childProcess } from "../lazy";
import { readFileSync } from "node:fs";
import { homedir } from "node:os";

/** `~` or `~name`, then the end or a `/`. */
const TILDE = /^~([^/]*)(?=\/|$)/;

/**
 * The home folder of user `name` from the passwd database (getent, so that LDAP or other NSS
 * users count, with /etc/passwd where getent is missing); undefined for an unknown user.
 */
function homeOf(name: string): string | undefined {
  // A user name as useradd accepts it; anything else (a leading '-' would be an option to getent) is no user.
  if (!/^[A-Za-z0-9._][A-Za-z0-9._-]*\$?$/.test(name)) return undefined;
  let line: string | undefined;
  try {
    line = childProcess().execFileSync("getent", ["passwd", name], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch (err) {
    // getent exits 2 for an unknown user; only a missing getent sends us to /etc/passwd.
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") return undefined;
    try {
      line = readFileSync("/etc/passwd", "utf8")
        .split("\n")
        .find((l) => l.split(":")[0] === name);
    } catch {
      return undefined;
    }
  }
  const home = line?.trim().split(":")[5];
  return home === undefined || home === "" ? undefined : home;
}

/**
 * `value` with a leading `~` or `~name` replaced by that user's home (the running user's: $HOME,
 * else the passwd entry, as Python does). Throws an Error naming the user when `~name` names
 * none: skytools would have kept the text, and then the path would quietly be a folder named
 * `~name` beside the config file.
 */
export function expandHome(value: string): string {
  const m = TILDE.exec(value);
  if (!m) return value;
  const name = m[1] ?? "";
  let home: string | undefined;
  try {
    home = name === "" ? homedir() : homeOf(name);
  } catch {
    home = undefined; // no $HOME and no passwd entry for our uid
  }
  if (home === undefined) {
    throw new Error(
      name === "" ? "the running user has no home folder for '~'" : `there is no user '${name}' for '~${name}'`,
    );
  }
  // A home of "/" must not turn "~/x" into "//x".
  return home.replace(/\/+$/, "") + value.slice(m[0].length) || "/";
}
