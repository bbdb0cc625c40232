/** A standby's restart point from its pg_control: only when the file reads whole, with a good CRC, in archive recovery. */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { controlCrcOk, standbyRestartPoint } from "../../src/pg/control-file";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** CRC-32C (Castagnoli), bit by bit: the reference the table-driven one is checked against. */
function crc32c(buf: Buffer): number {
  let crc = 0xffffffff;
  for (const b of buf) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

/** A pg_control as PostgreSQL 15 lays it out (the fields read, the CRC at `crcAt`), padded to 8192. */
function control(opts: { version?: number; state?: number; redo: bigint; tli: number; crcAt?: number }): Buffer {
  const buf = Buffer.alloc(8192);
  buf.writeBigUInt64LE(7391234567890123456n, 0);
  buf.writeUInt32LE(opts.version ?? 1300, 8);
  buf.writeUInt32LE(opts.state ?? 5, 16);
  const at = (opts.version ?? 1300) >= 1100 ? 40 : 48;
  buf.writeBigUInt64LE(opts.redo, at);
  buf.writeUInt32LE(opts.tli, at + 8);
  const crcAt = opts.crcAt ?? 296;
  buf.writeUInt32LE(crc32c(buf.subarray(0, crcAt)), crcAt);
  return buf;
}

function dataDir(pgControl: Buffer, label = false): string {
  const d = mkdtempSync(join(tmpdir(), "walmgr-unit-pgcontrol-"));
  dirs.push(d);
  mkdirSync(join(d, "global"));
  writeFileSync(join(d, "global", "pg_control"), pgControl);
  if (label) writeFileSync(join(d, "backup_label"), "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n");
  return d;
}

test("the CRC-32C check: the known vector, a good control file, a flipped byte", () => {
  assert.equal(crc32c(Buffer.from("123456789")), 0xe3069283);
  const good = control({ redo: 0x3_2a000028n, tli: 2 });
  assert.ok(controlCrcOk(good.subarray(0, 512)));
  for (const at of [0, 16, 40, 48, 200]) {
    const bad = Buffer.from(good);
    bad[at] = (bad[at] ?? 0) ^ 0x10;
    assert.ok(!controlCrcOk(bad.subarray(0, 512)), `a flipped byte at ${at} must fail the CRC`);
  }
});

test("the restart point: redo's segment on its timeline, for 16 MiB and 1 MiB segments; nothing when in doubt", () => {
  const redo = 0x3_2a000028n; // 3/2A000028
  assert.equal(standbyRestartPoint(dataDir(control({ redo, tli: 2 })), 16 << 20), "00000002000000030000002A");
  assert.equal(standbyRestartPoint(dataDir(control({ redo, tli: 2 })), 1 << 20), "0000000200000003000002A0");
  // Before PostgreSQL 11 (prevCheckPoint before checkPointCopy), another CRC offset.
  assert.equal(
    standbyRestartPoint(dataDir(control({ version: 1002, redo, tli: 1, crcAt: 248 })), 16 << 20),
    "00000001000000030000002A",
  );
  // Not in archive recovery (shut down, in production): not a standby's restart point.
  for (const state of [1, 4, 6])
    assert.equal(standbyRestartPoint(dataDir(control({ state, redo, tli: 1 })), 16 << 20), undefined);
  // A backup_label still there: the control file may be the backup's copy, not this standby's.
  assert.equal(standbyRestartPoint(dataDir(control({ redo, tli: 1 }), true), 16 << 20), undefined);
  // A torn or damaged read.
  const torn = control({ redo, tli: 1 });
  torn.writeUInt32LE(0x2b000028, 40);
  assert.equal(standbyRestartPoint(dataDir(torn), 16 << 20), undefined);
  // No control file at all.
  assert.equal(standbyRestartPoint(join(tmpdir(), "walmgr-no-such-dir"), 16 << 20), undefined);
});
