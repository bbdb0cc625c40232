import { resolve } from "node:path";

/** Absolute path of one of this package's executables (bin/NAME), for archive/restore_command. */
export function binPath(name: string): string {
  // dist/src/paths.js → package root
  return resolve(__dirname, "..", "..", "bin", name);
}
