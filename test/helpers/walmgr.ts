/** A master and a slave directory set up the way the walmgr manual's QUICK START describes. */
import { appendFileSync, chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cluster, freePort } from "./cluster";
import { makeTempDir, mkdirAs, ok, pgBin, RUN_AS, runBin, waitFor } from "./env";

export interface Pair {
  base: string;
  master: Cluster;
  /** Port and log of the restored slave (its data directory is `slaveData`). */
  slave: Cluster;
  slaveData: string;
  slaveDir: string;
  masterIni: string;
  slaveIni: string;
}

export function writeFileAs(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o644 });
  if (RUN_AS) chownSync(path, RUN_AS.uid, RUN_AS.gid);
}

/**
 * Creates and starts a master, and writes master.ini/slave.ini (nothing set up yet); `master`
 * and `slave` are extra config lines, `initdb` extra initdb arguments for the master.
 */
export async function createPair(
  name: string,
  extra: { master?: string; slave?: string; initdb?: string[] } = {},
): Promise<Pair> {
  const base = makeTempDir(name);
  const master = await Cluster.create(base, "master", extra.initdb);
  master.start();
  const slaveData = join(base, "slave-data");
  const slave = new Cluster(slaveData, await freePort(), base, join(base, "slave-data.log"));
  const slaveDir = join(base, "walshipping");
  const masterIni = join(base, "master.ini");
  const slaveIni = join(base, "slave.ini");
  writeFileAs(masterIni, masterIniText(master, slaveDir, extra.master));
  writeFileAs(slaveIni, slaveIniText(slave, slaveData, slaveDir, extra.slave));
  return { base, master, slave, slaveData, slaveDir, masterIni, slaveIni };
}

/** master.ini as the tests use it; `slave` may be `host:/path`; `extra` lines go last. */
export function masterIniText(master: Cluster, slave: string, extra = ""): string {
  return `[wal-master]
job_name = master
logfile = master.log
master_db = ${master.conninfo}
master_data = ${master.dataDir}
master_config = ${join(master.dataDir, "postgresql.conf")}
master_restart_cmd = ${pgBin("pg_ctl")} -D ${master.dataDir} -w -t 120 -l ${master.logFile} restart
slave = ${slave}
completed_wals = %(slave)s/logs.complete
partial_wals = %(slave)s/logs.partial
full_backup = %(slave)s/data.master
config_backup = %(slave)s/config.backup
${extra}
`;
}

/** slave.ini as the tests use it: `slave` starts and stops the restored standby in `slaveData`. */
export function slaveIniText(slave: Cluster, slaveData: string, slaveDir: string, extra = ""): string {
  return `[wal-slave]
job_name = slave
logfile = slave.log
slave_data = ${slaveData}
slave_start_cmd = ${slave.startCommand()}
slave_stop_cmd = ${pgBin("pg_ctl")} -D ${slaveData} -w -m fast stop
slave = ${slaveDir}
completed_wals = %(slave)s/logs.complete
partial_wals = %(slave)s/logs.partial
full_backup = %(slave)s/data.master
config_backup = %(slave)s/config.backup
${extra}
`;
}

export function stopPair(p: Pair): void {
  p.slave.stop("immediate");
  p.master.stop("immediate");
}

/** A slave directory with no PostgreSQL server on either side (see `serverlessSlave`). */
export interface ServerlessSlave {
  /** The temp folder holding everything (removed by `removeTempDir(base)`). */
  base: string;
  /** The slave directory, `base`/slave, with logs.complete and logs.partial made. */
  slave: string;
  completed: string;
  /** A master config: archives into `slave` (master_db and master_data name no real server). */
  ini: string;
  /** A slave config: serves from `slave` (slave_data is never made). */
  slaveIni: string;
}

/**
 * A local slave directory and the two configs that reach it, for the tests that spawn
 * wal-archive and wal-restore by hand (as PostgreSQL would) without starting a server: races,
 * bad input and planted files repeat cheaply there. Everything belongs to the server user.
 */
export function serverlessSlave(prefix: string): ServerlessSlave {
  const base = makeTempDir(prefix);
  const slave = join(base, "slave");
  mkdirAs(slave);
  const completed = join(slave, "logs.complete");
  mkdirAs(completed);
  mkdirAs(join(slave, "logs.partial"));
  const ini = join(base, "master.ini");
  writeFileAs(ini, `[wal-master]\nmaster_db = dbname=postgres\nmaster_data = ${base}/nodata\nslave = ${slave}\n`);
  const slaveIni = join(base, "slave.ini");
  writeFileAs(slaveIni, `[wal-slave]\nslave_data = ${base}/sdata\nslave = ${slave}\n`);
  return { base, slave, completed, ini, slaveIni };
}

/**
 * A backed-up pair with a standby replaying, for the tests that read what it looks like (check,
 * verify, status): `createPair`, then setup, a table `t (id serial, tag text)`, one backup, and
 * a standby restored from a copy of it (`restore data.master`: a named set is copied, so the set
 * stays for the checks that count or verify it), which has replayed a first row (tag 'first').
 * The restored standby asks for the next segment every 200 ms rather than every 5 s.
 */
export async function createReplayingPair(
  name: string,
  extra: { master?: string; slave?: string; initdb?: string[] } = {},
): Promise<Pair> {
  const p = await createPair(name, extra);
  try {
    // In the master's postgresql.conf before the backup: the restored standby has it too.
    appendFileSync(join(p.master.dataDir, "postgresql.conf"), "wal_retrieve_retry_interval = 200ms\n");
    ok(runBin("wal-ctl", [p.masterIni, "setup"]), "setup");
    await p.master.query("CREATE TABLE t (id serial, tag text)");
    ok(runBin("wal-backup", [p.masterIni]), "backup");
    ok(runBin("wal-ctl", [p.slaveIni, "restore", "data.master"]), "restore");
    await p.master.query("INSERT INTO t (tag) VALUES ('first')");
    await p.master.query("SELECT pg_switch_wal()");
    await waitFor(
      "the standby to replay the first row",
      async () => Number(await p.slave.value<string>("SELECT count(*) FROM t WHERE tag = 'first'")) === 1,
      60_000,
      100,
    );
    return p;
  } catch (err) {
    stopPair(p);
    throw err;
  }
}
