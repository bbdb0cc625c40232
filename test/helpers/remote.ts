/**
 * The walmgr deployment: master and slave on different hosts. The master's config says
 * `slave = walslave-test:/path` (a Host alias of the test sshd, see sshd.ts); the slave's
 * config uses the same directory as a local path, and the slave's PostgreSQL and commands run
 * as the slave host's user.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, freePort } from "./cluster";
import { makeTempDir, pgBin, removeTempDir, binPath } from "./env";
import { chownSlave, makeSlaveDir, runSlave, TestSshd } from "./sshd";
import { masterIniText, slaveIniText, writeFileAs, type Pair } from "./walmgr";

/** A Pair whose slave side is another user reached over ssh; `slaveDir` is the path on that host. */
export interface RemotePair extends Omit<Pair, "base"> {
  sshd: TestSshd;
  masterBase: string;
  slaveBase: string;
}

export async function createRemotePair(
  name: string,
  opts: { slaveDirName?: string; master?: string; slave?: string; sshd?: TestSshd } = {},
): Promise<RemotePair> {
  const sshd = opts.sshd ?? (await TestSshd.start());
  const masterBase = makeTempDir(name);
  const slaveBase = makeSlaveDir(`${name}-slavehost`);
  const master = await Cluster.create(masterBase, "master");
  master.start();
  const slaveData = join(slaveBase, "slave-data");
  const slave = new Cluster(slaveData, await freePort(), slaveBase, join(slaveBase, "slave-data.log"));
  const slaveDir = join(slaveBase, opts.slaveDirName ?? "walshipping");
  const masterIni = join(masterBase, "master.ini");
  const slaveIni = join(slaveBase, "slave.ini");
  writeFileAs(
    masterIni,
    masterIniText(
      master,
      `walslave-test:${slaveDir}`,
      `slave_config = ${slaveIni}\nssh_config = ${sshd.clientConfig}\nssh_timeout = 5\n${opts.master ?? ""}`,
    ),
  );
  writeFileSync(slaveIni, slaveIniText(slave, slaveData, slaveDir, opts.slave), { mode: 0o644 });
  chownSlave(slaveIni);
  return { sshd, masterBase, slaveBase, master, slave, slaveData, slaveDir, masterIni, slaveIni };
}

/** Runs one of our executables on the slave host, as its user. */
export function runSlaveBin(name: string, args: string[]): ReturnType<typeof runSlave> {
  return runSlave(binPath(name), args);
}

export function stopRemotePair(p: RemotePair, opts: { keepSshd?: boolean } = {}): void {
  runSlave(pgBin("pg_ctl"), ["-D", p.slaveData, "-w", "-m", "immediate", "stop"]);
  p.master.stop("immediate");
  if (!opts.keepSshd) p.sshd.stop();
  removeTempDir(p.masterBase);
  removeTempDir(p.slaveBase);
}
