/**
 * wal-archive fed what PostgreSQL never passes but a crash or a wrong path can: an empty file or
 * a device. The real executables against a local slave directory, as the server user; no
 * PostgreSQL server is needed.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { removeTempDir, runBin } from "../helpers/env";
import { serverlessSlave, writeFileAs } from "../helpers/walmgr";

let base: string;
let completed: string;
let ini: string;
let slaveIni: string;

before(() => {
  ({ base, completed, ini, slaveIni } = serverlessSlave("attackarch"));
});

after(() => removeTempDir(base));

for (const [label, src] of [
  ["an empty file", "empty"],
  ["/dev/null", "/dev/null"],
] as const) {
  test(`${label} as a segment is refused (exit 9, nothing archived), so the real segment still archives`, () => {
    const name = label === "/dev/null" ? "000000010000000000000002" : "000000010000000000000001";
    const path = src === "empty" ? join(base, "empty") : src;
    if (src === "empty") writeFileAs(path, "");
    const res = runBin("wal-archive", [ini, path, name]);
    assert.equal(res.status, 9, `exit ${String(res.status)}: ${res.stderr}`);
    assert.ok(res.stderr.includes(path) && /empty/.test(res.stderr), res.stderr);
    assert.deepEqual(
      readdirSync(completed).filter((n) => n.includes(name) || n.startsWith(".walmgr-tmp.")),
      [],
      "nothing may be archived under the name, no checksum, no temp",
    );
    assert.equal(runBin("wal-restore", [slaveIni, name, join(base, "out")]).status, 1, "the name stays absent");
    // The real segment of that name archives and is served exactly (an archived empty file would
    // have made this exit 8 forever).
    const real = join(base, `real-${name}`);
    writeFileAs(real, "");
    const data = randomBytes(1 << 20);
    writeFileSync(real, data);
    const ok = runBin("wal-archive", [ini, real, name]);
    assert.equal(ok.status, 0, ok.stderr);
    const out = join(base, `restored-${name}`);
    assert.equal(runBin("wal-restore", [slaveIni, name, out]).status, 0);
    assert.ok(readFileSync(out).equals(data));
    assert.ok(existsSync(join(completed, `.${name}.sha256`)));
  });
}
