/**
 * Build step (`npm run build`, `prepare`): writes the V8 code cache of the bundles PostgreSQL
 * starts once per segment (see src/cli/code-cache.ts). Prints each cache's size.
 */
import { join, resolve } from "node:path";
import { writeCodeCache } from "../src/cli/code-cache";

const BIN = resolve(__dirname, "..", "bin"); // dist/scripts/ -> dist/bin
for (const name of ["wal-archive", "wal-archive-ahead", "wal-restore"]) {
  const bytes = writeCodeCache(join(BIN, `${name}.js`));
  process.stdout.write(`code cache: dist/bin/${name}.js.cache (${bytes} bytes)\n`);
}
