/**
 * A V8 code cache for the bundles PostgreSQL starts once per WAL segment (wal-archive,
 * wal-restore). Compiling a 190 KB bundle costs a few milliseconds at every start; V8 can save
 * what it compiled and take it back next time (Node 22's module.enableCompileCache does the same;
 * Node 20 has no such switch). The build writes `BUNDLE.cache` beside each bundle; the front in
 * bin/ runs the bundle through `runCached`, which uses the cache only when it belongs to this
 * very bundle file and V8 accepts it, and otherwise compiles as `require` would. Nothing is
 * written at run time: the server user needs no write access anywhere for this.
 *
 * Imports node built-ins only (it is loaded before any bundle).
 */
import { readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import Module from "node:module";
import { dirname } from "node:path";
import { Script } from "node:vm";

/** The cache file of a bundle. */
export function cacheFile(bundle: string): string {
  return `${bundle}.cache`;
}

/**
 * What the cache was made from. V8's own check of a cache against its source compares little
 * more than the length, so a bundle rebuilt to the same length would get the old code: the
 * bundle's size and mtime are kept in the cache's first line and compared before V8 sees it.
 */
function stamp(bundle: string): string {
  const st = statSync(bundle);
  return JSON.stringify({ size: st.size, mtimeMs: st.mtimeMs });
}

/** Node's CommonJS wrapper around a module's source (module.wrap), so the cache fits what is run. */
function wrap(source: string): string {
  return (Module as unknown as { wrap(s: string): string }).wrap(source);
}

/** Build time: writes `bundle`'s code cache beside it (temp file, then rename); returns its size. */
export function writeCodeCache(bundle: string): number {
  const script = new Script(wrap(readFileSync(bundle, "utf8")), { filename: bundle });
  const data = Buffer.concat([Buffer.from(`${stamp(bundle)}\n`), script.createCachedData()]);
  const tmp = `${cacheFile(bundle)}.tmp${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o644 });
  renameSync(tmp, cacheFile(bundle));
  return data.length;
}

/** The cache's V8 data when it was made from this bundle file as it is now; undefined otherwise. */
function cachedDataFor(bundle: string): Buffer | undefined {
  let raw: Buffer;
  try {
    raw = readFileSync(cacheFile(bundle));
  } catch {
    return undefined; // not built with a cache: compile as usual
  }
  const nl = raw.indexOf(10);
  if (nl === -1 || raw.subarray(0, nl).toString("utf8") !== stamp(bundle)) return undefined;
  return raw.subarray(nl + 1);
}

/**
 * Runs the CommonJS bundle `bundle` as the main program: as `require(bundle)` would (its own
 * module object, `require` resolving from its folder, __filename and __dirname its own), compiled
 * with its code cache when there is a fitting one. Returns whether V8 took the cache.
 */
export function runCached(bundle: string): boolean {
  const cachedData = cachedDataFor(bundle);
  const script = new Script(wrap(readFileSync(bundle, "utf8")), {
    filename: bundle,
    ...(cachedData !== undefined ? { cachedData } : {}),
  });
  const M = Module as unknown as {
    new (id: string): NodeJS.Module & { paths: string[]; require(id: string): unknown };
    _nodeModulePaths(dir: string): string[];
    _resolveFilename(id: string, parent: unknown): string;
  };
  const mod = new M(bundle);
  mod.filename = bundle;
  mod.paths = M._nodeModulePaths(dirname(bundle));
  const req = Object.assign((id: string): unknown => mod.require(id) as unknown, {
    resolve: (id: string) => M._resolveFilename(id, mod),
    main: mod,
    cache: require.cache,
  });
  const fn = script.runInThisContext() as (e: unknown, r: unknown, m: unknown, f: string, d: string) => void;
  fn.call(mod.exports, mod.exports, req, mod, bundle, dirname(bundle));
  return cachedData !== undefined && !script.cachedDataRejected;
}

// `node code-cache.js BUNDLE ARGS…` (bin/wal-restore's shell front execs this): BUNDLE runs as if
// started as `node BUNDLE ARGS…`.
if (require.main === module) {
  const bundle = process.argv[2];
  if (bundle === undefined) {
    process.stderr.write("usage: node code-cache.js BUNDLE [ARGS…]\n");
    process.exit(2);
  }
  process.argv.splice(1, 2, bundle);
  runCached(bundle);
}
