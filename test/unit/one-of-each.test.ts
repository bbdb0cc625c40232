/**
 * The one-of-each helpers that replaced copies (issue 24): one size formatter with each caller's
 * look, one WAL-folder chooser, one LSN parser, the WAL page header read in one module, and the
 * synchronous release a declared driver feature.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { loadConfig } from "../../src/config/load";
import { walDirName, walDirOf } from "../../src/pg/wal-dir";
import { formatBytes } from "../../src/progress";
import { driverFor } from "../../src/storage/open";
import { parseLsn, tryParseLsn } from "../../src/wal/names";
import { holdsOwnWal, pageAddress, PAGE_ADDRESS_END } from "../../src/wal/page";

const dir = mkdtempSync(join(tmpdir(), "walmgr-one-"));
after(() => rmSync(dir, { recursive: true, force: true }));

describe("formatBytes", () => {
  test("the progress line's look (the default) and status's look", () => {
    assert.equal(formatBytes(512), "512 B");
    assert.equal(formatBytes(512, { small: "bytes", digits: "one" }), "512 bytes");
    assert.equal(formatBytes(1536, { small: "bytes", digits: "one" }), "1.5 KiB");
    assert.equal(formatBytes(1.5 * 2 ** 30), "1.50 GiB");
    assert.equal(formatBytes(1.5 * 2 ** 30, { small: "bytes", digits: "one" }), "1.5 GiB");
    // Status chose the unit by the exact size, as before: 1 MiB less one byte stays KiB.
    assert.equal(formatBytes(2 ** 20 - 1, { small: "bytes", digits: "one" }), "1024.0 KiB");
    assert.equal(formatBytes(2 ** 20 - 1), "1.0 MiB");
  });
});

describe("walDirOf", () => {
  test("pg_wal; pg_xlog only where it is and pg_wal is not; pg_wal when neither is", () => {
    const both = join(dir, "both");
    mkdirSync(join(both, "pg_wal"), { recursive: true });
    mkdirSync(join(both, "pg_xlog"));
    const old = join(dir, "old");
    mkdirSync(join(old, "pg_xlog"), { recursive: true });
    const none = join(dir, "none");
    mkdirSync(none);
    assert.equal(walDirOf(both), join(both, "pg_wal"));
    assert.equal(walDirOf(old), join(old, "pg_xlog"));
    assert.equal(walDirName(none), "pg_wal");
  });
});

describe("tryParseLsn", () => {
  test("exactly an LSN, or undefined; parseLsn allows spaces around it and throws otherwise", () => {
    assert.equal(tryParseLsn("16/B374D848"), (0x16n << 32n) + 0xb374d848n);
    assert.equal(tryParseLsn(" 0/1"), undefined);
    assert.equal(tryParseLsn("123456789/0"), undefined);
    assert.equal(tryParseLsn("0/x"), undefined);
    assert.equal(parseLsn(" 0/10 "), 16n);
    assert.throws(() => parseLsn("nope"), /not an LSN/);
  });
});

describe("the WAL page header", () => {
  test("xlp_pageaddr at offset 8; a segment's first page holds the segment's own address", () => {
    const head = Buffer.alloc(PAGE_ADDRESS_END);
    head.writeBigUInt64LE(0x3000000n, 8);
    assert.equal(pageAddress(head), 0x3000000n);
    assert.ok(holdsOwnWal(head, 0x3000000n));
    assert.ok(!holdsOwnWal(head, 0x2000000n));
    assert.ok(!holdsOwnWal(head.subarray(0, 12), 0x3000000n), "a short read holds nothing");
  });
});

describe("the releaseNow feature", () => {
  test("declared by the ssh and S3 drivers, absent from local storage", () => {
    const ini = join(dir, "m.ini");
    writeFileSync(
      ini,
      "[wal-master]\nslave = /s\ns3_endpoint = http://127.0.0.1:9\ns3_access_key = a\ns3_secret_key = b\n",
      {
        mode: 0o600,
      },
    );
    const config = loadConfig(ini);
    assert.equal(driverFor({ path: "/x" }, config).features.releaseNow, undefined);
    assert.equal(typeof driverFor({ host: "h", path: "/x" }, config).features.releaseNow?.releaseLockSync, "function");
    assert.equal(
      typeof driverFor({ bucket: "bkt", path: "/x" }, config).features.releaseNow?.removeTreeSync,
      "function",
    );
  });
});
