/**
 * The walmgr deployment: master and slave on different hosts. The master's config says
 * `slave = walslave-test:/path` (a Host alias of the test sshd, see sshd.ts); the slave's
 * config uses the same directory as a local path, and the slave's PostgreSQL and commands run
 * as the slave host's user.
 */
import { randomBytes } from "node:crypto";
import { chownSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, freePort } from "./cluster";
import { binPath, makeTempDir, pgBin, removeTempDir, RUN_AS } from "./env";
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

/**
 * A master host and a slave host joined by the test sshd, with no PostgreSQL server: for the
 * tests that drive wal-archive and wal-restore over ssh by hand (failures, sessions, sharing).
 * Each test makes its own slave directory under `slaveBase` and its own config with `masterIni`.
 */
export class SshSite {
  private constructor(
    readonly sshd: TestSshd,
    /** The master's temp folder (server user): configs, WAL files, runtime folders. */
    readonly masterBase: string,
    /** The slave host's temp folder (slave user): the slave directories. */
    readonly slaveBase: string,
    private readonly timeout: number,
  ) {}

  /** Starts the sshd and makes both folders; `timeout` is ssh_timeout and restore_timeout of `masterIni`. */
  static async start(prefix: string, opts: { timeout?: number } = {}): Promise<SshSite> {
    const sshd = await TestSshd.start();
    return new SshSite(sshd, makeTempDir(prefix), makeSlaveDir(`${prefix}-slavehost`), opts.timeout ?? 5);
  }

  /** A master config named `name` whose slave directory is `host:dir`; `extra` lines go last. */
  masterIni(name: string, host: string, dir: string, extra = "", timeout = this.timeout): string {
    const file = join(this.masterBase, `${name}.ini`);
    writeFileAs(
      file,
      `[wal-master]
job_name = ${name}
slave = ${host}:${dir}
ssh_config = ${this.sshd.clientConfig}
ssh_timeout = ${timeout}
restore_timeout = ${timeout}
${extra}
`,
    );
    return file;
  }

  /** The slave layout under `dir`, made on the slave host by its user (a slave-side `setup`); returns logs.complete. */
  makeLayout(dir: string): string {
    const res = runSlave("mkdir", ["-p", "-m", "700", join(dir, "logs.complete"), join(dir, "logs.partial")]);
    if (res.status !== 0) throw new Error(`mkdir ${dir} on the slave host failed: ${res.stderr}`);
    return join(dir, "logs.complete");
  }

  /** A file of `bytes` random bytes on the master, owned by the server user. */
  walFile(name: string, bytes: number): string {
    const file = join(this.masterBase, name);
    writeFileAs(file, "");
    writeFileSync(file, randomBytes(bytes));
    return file;
  }

  /** A runtime folder of the master's user (XDG_RUNTIME_DIR): one test's own control sockets. */
  runtimeDir(name: string): string {
    const dir = join(this.masterBase, `run-${name}`);
    mkdirSync(dir, { mode: 0o700 });
    if (RUN_AS) chownSync(dir, RUN_AS.uid, RUN_AS.gid);
    return dir;
  }

  stop(): void {
    this.sshd.stop();
    removeTempDir(this.masterBase);
    removeTempDir(this.slaveBase);
  }
}
