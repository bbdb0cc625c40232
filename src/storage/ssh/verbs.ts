/**
 * The one list of the helper's verbs (the requests of the session protocol, protocol.ts).
 * helper.ts must handle exactly these (its handler table is typed by this list), the ssh
 * driver sends only these, and `wal-ctl --help` prints them from here. No imports: the help text
 * loads this file.
 */
export const HELPER_VERBS = {
  probe: { args: [], body: "", doc: "is rsync installed on the slave host" },
  stat: { args: ["path"], body: "", doc: "size, time and kind of a file or folder (null: not there)" },
  list: { args: ["dir"], body: "", doc: "names in a folder (null: no such folder)" },
  manifest: { args: ["dir"], body: "", doc: "size and sha256 of every file under a folder" },
  read: { args: ["path"], body: "out", doc: "a regular file's content as a body (null: not there)" },
  put: {
    args: ["path", "exclusive", "padTo"],
    body: "in",
    doc: "store the body at path: temp file, checks, fsync, rename, folder fsync",
  },
  writeat: { args: ["path", "offset"], body: "in", doc: "overwrite bytes of a file in place, fsynced" },
  remove: { args: ["path"], body: "", doc: "remove a file durably" },
  rmtree: { args: ["path"], body: "", doc: "remove a folder tree" },
  mkdir: { args: ["path"], body: "", doc: "create a folder and its parents (0700)" },
  rename: { args: ["from", "to"], body: "", doc: "rename durably; fails when the target exists" },
  fsynctree: { args: ["path"], body: "", doc: "fsync every file and folder of a tree (after rsync)" },
  puttree: { args: ["path"], body: "in", doc: "receive a tree stream (backups without rsync)" },
  unlock: { args: ["path", "pid", "host"], body: "", doc: "remove a lock file only when it names this holder" },
} as const;

export type HelperVerb = keyof typeof HELPER_VERBS;

/** `wal-ctl SLAVE_CONFIG xhelper`: the command line that starts a helper session on the slave. */
export const HELPER_COMMAND = "xhelper";

export function isHelperVerb(v: string): v is HelperVerb {
  return Object.prototype.hasOwnProperty.call(HELPER_VERBS, v);
}
