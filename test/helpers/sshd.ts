/**
 * A test-only sshd on a loopback port, so that the ssh transport is tested against a real
 * server: its own host key, a client key made for the test, and an ssh client config file
 * (passed with the `ssh_config` setting) with `Host` aliases:
 *   walslave-test  the slave host (user `walslave` when the suite runs as root)
 *   deadhost       a port nobody listens on (connection refused)
 *   silenthost     a port that accepts and never answers (a hung host)
 *   junkhost       the slave host, but the login shell is bash with a ~/.bashrc that echoes a
 *                  greeting to stdout (bash run by sshd reads ~/.bashrc even for a command)
 *   wrongkeyhost   the slave host, with another host key in known_hosts (a host key mismatch)
 * When the suite runs as root, master commands run as `postgres` and the slave side (the ssh
 * login and the slave's PostgreSQL) as `walslave`, created here if missing. As another user,
 * both sides run as that user (sshd then runs unprivileged, which works for a single user).
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncOptions } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { freePort } from "./cluster";
import { IS_ROOT, removeTempDir, RUN_AS, sleep, type RunResult } from "./env";

export const SLAVE_USER_NAME = IS_ROOT ? "walslave" : userInfo().username;

function idOf(name: string): { uid: number; gid: number } {
  const u = spawnSync("id", ["-u", name], { encoding: "utf8" });
  const g = spawnSync("id", ["-g", name], { encoding: "utf8" });
  if (u.status !== 0) throw new Error(`no user ${name}`);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** The slave host's OS user: created when root and missing (unlocked, no password, a shell). */
export function slaveUser(): { uid: number; gid: number; name: string } | undefined {
  if (!IS_ROOT) return undefined;
  if (spawnSync("id", ["-u", SLAVE_USER_NAME]).status !== 0) {
    const r = spawnSync("useradd", ["-m", "-d", `/var/lib/${SLAVE_USER_NAME}`, "-s", "/bin/sh", SLAVE_USER_NAME], {
      encoding: "utf8",
    });
    if (r.status !== 0) throw new Error(`useradd ${SLAVE_USER_NAME} failed: ${r.stderr}`);
  }
  // sshd without PAM refuses locked accounts ("!" in shadow): "*" is no password, not locked.
  spawnSync("usermod", ["-p", "*", SLAVE_USER_NAME]);
  return { ...idOf(SLAVE_USER_NAME), name: SLAVE_USER_NAME };
}

/** Runs a program as the slave host's user (the way the slave's cron or DBA would). */
export function runSlave(cmd: string, args: string[], opts: SpawnSyncOptions = {}): RunResult {
  const u = slaveUser();
  const res = spawnSync(cmd, args, {
    encoding: "utf8",
    timeout: 300_000,
    ...(u ? { uid: u.uid, gid: u.gid } : {}),
    ...opts,
    env: {
      ...process.env,
      ...(u ? { HOME: `/var/lib/${u.name}`, USER: u.name, LOGNAME: u.name } : {}),
      ...(opts.env ?? {}),
    },
  });
  if (res.error) throw res.error;
  return { status: res.status, signal: res.signal, stdout: String(res.stdout ?? ""), stderr: String(res.stderr ?? "") };
}

/** A folder owned by the slave user (0755, so sockets in it are reachable). */
export function makeSlaveDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), `walmgr-${prefix}-`));
  chmodSync(dir, 0o755);
  const u = slaveUser();
  if (u) chownSync(dir, u.uid, u.gid);
  return dir;
}

export function chownSlave(path: string): void {
  const u = slaveUser();
  if (u) chownSync(path, u.uid, u.gid);
}

function chownMaster(path: string): void {
  if (RUN_AS) chownSync(path, RUN_AS.uid, RUN_AS.gid);
}

export class TestSshd {
  private proc: ChildProcess | undefined;
  private silent: Server | undefined;

  private constructor(
    readonly dir: string,
    readonly port: number,
    /** ssh client config for the master's user: the `ssh_config` setting. */
    readonly clientConfig: string,
  ) {}

  static async start(): Promise<TestSshd> {
    const u = slaveUser();
    const dir = mkdtempSync(join(tmpdir(), "walmgr-sshd-"));
    chmodSync(dir, 0o755);
    const port = await freePort();
    const deadPort = await freePort();
    const junkPort = await freePort();
    const keygen = (file: string): void => {
      const r = spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "walmgr-test", "-f", file], {
        encoding: "utf8",
      });
      if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
    };
    keygen(join(dir, "host_key"));
    keygen(join(dir, "client_key"));
    keygen(join(dir, "other_host_key"));
    // A chatty ~/.bashrc: bash started by sshd reads it before running the command.
    mkdirSync(join(dir, "junkhome"), { mode: 0o755 });
    writeFileSync(join(dir, "junkhome", ".bashrc"), 'echo "Welcome to the slave host, $USER!"\n', { mode: 0o644 });
    chownMaster(join(dir, "client_key"));
    writeFileSync(join(dir, "authorized_keys"), readFileSync(join(dir, "client_key.pub")), { mode: 0o644 });
    const cfg = join(dir, "sshd_config");
    writeFileSync(
      cfg,
      [
        `Port ${port}`,
        `Port ${junkPort}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${join(dir, "host_key")}`,
        `PidFile ${join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin no",
        `AllowUsers ${SLAVE_USER_NAME}`,
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        "LogLevel ERROR",
        `Match LocalPort ${junkPort}`,
        `  ForceCommand HOME=${join(dir, "junkhome")} exec /bin/bash -c "$SSH_ORIGINAL_COMMAND"`,
        "",
      ].join("\n"),
    );
    if (IS_ROOT && !existsSync("/run/sshd")) mkdirSync("/run/sshd", { mode: 0o755 });
    const hostKey = readFileSync(join(dir, "host_key.pub"), "utf8").split(" ").slice(0, 2).join(" ");
    writeFileSync(join(dir, "known_hosts"), `[127.0.0.1]:${port} ${hostKey}\n[127.0.0.1]:${junkPort} ${hostKey}\n`, {
      mode: 0o644,
    });
    const otherKey = readFileSync(join(dir, "other_host_key.pub"), "utf8").split(" ").slice(0, 2).join(" ");
    writeFileSync(join(dir, "wrong_known_hosts"), `[127.0.0.1]:${port} ${otherKey}\n`, { mode: 0o644 });
    const silent = createServer(() => undefined); // accepts, never speaks
    const silentPort = await new Promise<number>((resolve) =>
      silent.listen(0, "127.0.0.1", () => {
        const a = silent.address();
        resolve(typeof a === "object" && a ? a.port : 0);
      }),
    );
    const common = (knownHosts = "known_hosts"): string[] => [
      `  HostName 127.0.0.1`,
      `  User ${SLAVE_USER_NAME}`,
      `  IdentityFile ${join(dir, "client_key")}`,
      "  IdentitiesOnly yes",
      `  UserKnownHostsFile ${join(dir, knownHosts)}`,
      "  StrictHostKeyChecking yes",
      "  LogLevel ERROR",
    ];
    const clientConfig = join(dir, "ssh_config");
    writeFileSync(
      clientConfig,
      [
        "Host walslave-test",
        `  Port ${port}`,
        ...common(),
        "Host deadhost",
        `  Port ${deadPort}`,
        ...common(),
        "Host silenthost",
        `  Port ${silentPort}`,
        ...common(),
        "Host junkhost",
        `  Port ${junkPort}`,
        ...common(),
        "Host wrongkeyhost",
        `  Port ${port}`,
        ...common("wrong_known_hosts"),
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    chownMaster(clientConfig);
    const sshd = new TestSshd(dir, port, clientConfig);
    sshd.silent = silent;
    sshd.proc = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", cfg], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    sshd.proc.stderr?.on("data", (c: Buffer) => (err += c.toString("utf8")));
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (await canConnect(port)) break;
      if (sshd.proc.exitCode !== null || Date.now() > deadline) {
        sshd.stop();
        throw new Error(`test sshd did not start: ${err}`);
      }
      await sleep(100);
    }
    void u;
    return sshd;
  }

  /** The sshd process goes away (the slave host is down); `resume` brings it back. */
  stop(): void {
    // Connections still open (a shared ssh master keeps one for ssh_control_persist seconds)
    // go down with the host: the per-connection sshd processes are this sshd's children.
    if (this.proc?.pid !== undefined) {
      const kids = spawnSync("pgrep", ["-P", String(this.proc.pid)], { encoding: "utf8" });
      for (const pid of kids.stdout.split("\n").filter(Boolean)) {
        try {
          process.kill(Number(pid), "SIGTERM");
        } catch {
          // already gone
        }
      }
    }
    this.proc?.kill("SIGTERM");
    this.proc = undefined;
    this.silent?.close();
    this.silent = undefined;
    removeTempDir(this.dir);
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
