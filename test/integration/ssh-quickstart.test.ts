/**
 * The QUICK START (test/helpers/quickstart.ts) with master and slave on different hosts: a test
 * sshd on a loopback port, the master's commands as one user reaching the slave directory as
 * another user over ssh (`slave = walslave-test:/path`), the slave's commands and PostgreSQL as
 * the slave's user. The slave directory's name has a space and a quote in it, and compression = 1.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { ok, runBin, type RunResult } from "../helpers/env";
import { onDisk, quickStartTest } from "../helpers/quickstart";
import { createRemotePair, runSlaveBin, stopRemotePair } from "../helpers/remote";
import { slaveUser } from "../helpers/sshd";

function sentBytes(res: RunResult): number {
  const m = /, (\d+) bytes sent,/.exec(res.stderr);
  assert.ok(m, `no 'bytes sent' in:\n${res.stderr}`);
  return Number(m[1]);
}

function readdirWal(dir: string): string[] {
  return readdirSync(dir).filter((n) => /^[0-9A-F]{24}$/.test(n));
}

quickStartTest("QUICK START over ssh: master and slave as different users, odd slave path, compression", async () => {
  const p = await createRemotePair("sshq", {
    slaveDirName: "wal ship'ing $(x) dir",
    master: "use_xlog_functions = 1\ncompression = 1",
  });
  const completed = join(p.slaveDir, "logs.complete");
  const slaveUid = slaveUser()?.uid;
  let firstSent = 0;
  return {
    ...p,
    slaveBin: runSlaveBin,
    ...onDisk(p.slaveDir),
    pauseFile: join(completed, "PAUSE"),
    slaveLog: join(p.slaveBase, "slave.log"),
    afterSetup: async () => {
      // setup on the master made the layout on the slave host, as the slave's user.
      for (const d of ["logs.complete", "logs.partial", "config.backup"]) {
        const st = statSync(join(p.slaveDir, d));
        assert.ok(st.isDirectory());
        assert.equal(st.mode & 0o777, 0o700);
        if (slaveUid !== undefined) assert.equal(st.uid, slaveUid, `${d} must belong to the slave's user`);
      }
    },
    afterBackup: async (_t, res) => {
      firstSent = sentBytes(res);
      assert.ok(existsSync(join(p.slaveDir, "config.backup", "postgresql.conf")));
      const st = statSync(join(p.slaveDir, "data.master", "PG_VERSION"));
      assert.equal(st.mode & 0o777, 0o600);
      if (slaveUid !== undefined) assert.equal(st.uid, slaveUid);
    },
    extraSteps: async (t) => {
      await t.test("a second backup after a small change sends a fraction of the first", async (t) => {
        await p.master.query("UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 100");
        await p.master.query("CHECKPOINT");
        const res = ok(runBin("wal-backup", [p.masterIni]), "second wal-backup");
        const second = sentBytes(res);
        t.diagnostic(`first backup sent ${firstSent} bytes, second ${second} bytes`);
        assert.ok(second * 4 < firstSent, `second backup sent ${second} bytes, first ${firstSent}`);
        // The manifest is built on the slave host, so the set verifies there.
        const verified = ok(runSlaveBin("wal-ctl", [p.slaveIni, "verify", "data.master"]), "verify on the slave");
        assert.match(verified.stdout, /data\.master: \d{3,} files checked/);
        // From the master too: the manifests, the sets' files and the WAL are read over ssh, where they are.
        const fromMaster = runBin("wal-ctl", [p.masterIni, "verify", "--json"]);
        assert.equal(fromMaster.status, 0, fromMaster.stdout + fromMaster.stderr);
        const rep = JSON.parse(fromMaster.stdout) as {
          sets: { name: string; files: number | null; restorable: boolean }[];
          wal: { files: number; verified: number };
        };
        assert.ok(
          rep.sets.length > 0 && rep.sets.every((s) => (s.files ?? 0) > 100 && s.restorable),
          JSON.stringify(rep.sets),
        );
        assert.ok(rep.wal.verified > 0 && rep.wal.verified === rep.wal.files, JSON.stringify(rep.wal));
        // check over ssh: the probe write and the forced WAL switch reach the slave host.
        const checked = runBin("wal-ctl", [p.masterIni, "check", "--timeout", "60"]);
        assert.equal(checked.status, 0, checked.stdout + checked.stderr);
        assert.match(checked.stdout, /^OK +slave directory writable: .*\(ssh /m);
      });
    },
    afterRestore: async () => {
      const seg = readdirWal(completed)[0];
      assert.ok(seg, "WAL was archived over ssh");
      assert.ok(existsSync(join(completed, `.${seg}.sha256`)), "with its checksum");
    },
    stop: async () => stopRemotePair(p),
  };
});
