import {
  existsSync,
  linkSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join, resolve } from "node:path";
import { fileStamp } from "../../config/load";
import { isErrno } from "../../errors";
import { removeQuietly, TMP_PREFIX, writeFileDurable } from "../../storage/durable";
import { parseWalName } from "../../wal/names";
import { processAlive } from "../../proc";

/**
 * Acknowledgement records: how a segment that one `wal-archive` run archived ahead of
 * PostgreSQL (batch archiving) is acknowledged when PostgreSQL's own archive_command call for it
 * comes, by bin/wal-archive's shell front, without starting Node. PostgreSQL then marks the
 * segment done itself, so `pg_stat_archiver` counts every segment (archived_count,
 * last_archived_wal and last_archived_time stay exact) and nothing goes behind its back.
 *
 * `pg_wal/.walmgr-archived/` (on the same file system as the segments) holds:
 *
 *   config   symbolic link to the config file the records were made under (the front tests
 *            `"$1" -ef config`: the same file, however the path is written)
 *   fast     the config's stamp (`dev:ino:size:ctime`, see fileStamp) when the records were
 *            made; written only after the config was found unchanged since it was read. The
 *            front compares it with `stat -L -c %d:%i:%s:%.9Z CONFIG`: any change to the file
 *            since (an edit, a copy over it that keeps the mtime) moves its ctime.
 *   NAME     a hard link to `pg_wal/NAME`, made only once NAME is durable in every configured
 *            repository (the push resolved)
 *   NAME.push  `PID SECONDS`: the background pusher PID (ahead.ts) has NAME in hand and will
 *            record it (or drop this marker) within SECONDS. The front, called for NAME with no
 *            record yet, waits for the record while PID lives, at most SECONDS; then it goes to
 *            Node as ever. Only a marker's owner removes it, or any run once PID is gone.
 *
 * The front acknowledges `%p` (exit 0) only when `%f` is a complete segment name, `%p` names it,
 * its `.ready` exists, `NAME` here is the very file `%p` is (`-ef`: same device and inode, so a
 * segment file replaced or recycled since is never taken for the one archived), `config` is the
 * same file as CONFIG and `fast` holds CONFIG's stamp now; it then removes the record. Anything
 * else (and every doubt) goes to Node, which archives the segment as ever (and finds it
 * identical in the archive).
 *
 * Nothing here needs fsync: a record is made after the segment is durable in the archive, so a
 * record that survives a crash is true, and one lost to it costs only one slow call. A record
 * made under another config stamp is removed before any new one is made. Records whose segment
 * is no longer `.ready` (PostgreSQL marked it done, or it is gone) are swept by every Node run:
 * each holds its segment's blocks while it exists.
 *
 * Root makes no records: PostgreSQL never runs archive_command as root, and a folder root made in
 * pg_wal would be one the server user could not clear.
 */
export const ACK_DIR = ".walmgr-archived";

export class AckRecords {
  private readonly dir: string;
  private ready = false;

  private constructor(
    private readonly walDir: string,
    private readonly statusDir: string,
    private readonly configFile: string,
    private readonly stamp: string,
  ) {
    this.dir = join(walDir, ACK_DIR);
  }

  /**
   * The records of `walDir` (pg_wal), for a run under `configFile` read with `stamp`; undefined
   * where none are kept (running as root, or no config stamp). `evenAsRoot` is for unit tests,
   * which run as root on a folder nobody else uses.
   */
  static open(
    walDir: string,
    statusDir: string,
    configFile: string,
    stamp: string,
    opts: { evenAsRoot?: boolean } = {},
  ): AckRecords | undefined {
    if ((process.getuid?.() === 0 && opts.evenAsRoot !== true) || stamp === "") return undefined;
    return new AckRecords(walDir, statusDir, resolve(configFile), stamp);
  }

  /**
   * Makes the folder ready for new records: created (0700) when missing; every record made
   * under another config (or of unknown origin) removed first, and `fast` with it, so that a new
   * `fast` never vouches for an old record. False when records cannot be kept here.
   */
  private prepare(): boolean {
    if (this.ready) return true;
    try {
      mkdirSync(this.dir, { mode: 0o700 });
    } catch (err) {
      if (!isErrno(err, "EEXIST")) return false;
    }
    const held = this.readFast();
    const linked = this.readConfigLink();
    if (held !== this.stamp || linked !== this.configFile) {
      removeQuietly(join(this.dir, "fast"));
      // Records only: a push marker belongs to its process (a pusher under the old config
      // checks the config before each record and makes none).
      for (const name of this.entries()) if (!name.endsWith(".push")) removeQuietly(join(this.dir, name));
      removeQuietly(join(this.dir, "config"));
      try {
        symlinkSync(this.configFile, join(this.dir, "config"));
      } catch {
        return false;
      }
    }
    this.ready = true;
    return true;
  }

  /**
   * Records that segment `name` (in walDir) is durable in every repository. With `pushed`, the
   * record is kept only when it is that very file (device and inode stated before the push), so
   * a segment file replaced while it was being archived is never vouched for. Best effort: a
   * record that cannot be made only means PostgreSQL's call for `name` starts Node.
   */
  record(name: string, pushed?: { dev: number; ino: number }): void {
    if (parseWalName(name)?.kind !== "segment" || !this.prepare()) return;
    const link = join(this.dir, name);
    const src = join(this.walDir, name);
    try {
      linkSync(src, link);
    } catch (err) {
      if (!isErrno(err, "EEXIST")) return;
      if (this.holds(name)) return;
      removeQuietly(link);
      try {
        linkSync(src, link);
      } catch {
        return; // As above: the slow path archives it.
      }
    }
    if (pushed === undefined) return;
    try {
      const st = lstatSync(link);
      if (st.dev === pushed.dev && st.ino === pushed.ino) return;
    } catch {
      // gone meanwhile: nothing to take back
    }
    removeQuietly(link);
  }

  /**
   * Marks `name` as in the hands of pusher `pid` for at most `seconds` (see NAME.push above).
   * Atomic against other runs: false when a live process already holds it. A marker whose
   * process is gone is taken over.
   */
  claimPush(name: string, pid: number, seconds: number): boolean {
    if (!this.prepare()) return false;
    const marker = this.pushMarker(name);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(marker, `${pid} ${Math.max(1, Math.ceil(seconds))}\n`, { flag: "wx", mode: 0o600 });
        return true;
      } catch (err) {
        if (!isErrno(err, "EEXIST")) return false;
      }
      if (this.pushing(name)) return false;
      removeQuietly(marker);
    }
    return false;
  }

  /** Hands `name`'s marker (claimed by this process) over to pusher `pid` (atomic replace). */
  handPush(name: string, pid: number, seconds: number): void {
    const marker = this.pushMarker(name);
    const tmp = join(this.dir, `${TMP_PREFIX}${name}.push.${process.pid}`);
    try {
      writeFileSync(tmp, `${pid} ${Math.max(1, Math.ceil(seconds))}\n`, { mode: 0o600 });
      renameSync(tmp, marker);
    } catch {
      removeQuietly(tmp);
      removeQuietly(marker); // the front then goes to Node: slower, never wrong
    }
  }

  /** The pid `name`'s marker names; undefined without a readable marker. */
  pushOwner(name: string): number | undefined {
    return this.readPush(name)?.pid;
  }

  /**
   * True when `name`'s marker holds: its process lives and its SECONDS have not run out since it
   * was written (so a pid reused by another process cannot hold a segment for long).
   */
  pushing(name: string): boolean {
    const m = this.readPush(name);
    return m !== undefined && Date.now() < m.written + m.seconds * 1000 && processAlive(m.pid);
  }

  private readPush(name: string): { pid: number; seconds: number; written: number } | undefined {
    const marker = this.pushMarker(name);
    try {
      const m = /^(\d+) (\d+)\n$/.exec(readFileSync(marker, "utf8"));
      const pid = Number(m?.[1]);
      const seconds = Number(m?.[2]);
      if (!Number.isSafeInteger(pid) || pid <= 1 || !Number.isSafeInteger(seconds)) return undefined;
      return { pid, seconds, written: lstatSync(marker).mtimeMs };
    } catch {
      return undefined;
    }
  }

  /** Removes `name`'s marker if process `pid` holds it. */
  dropPush(name: string, pid: number): void {
    if (this.pushOwner(name) === pid) removeQuietly(this.pushMarker(name));
  }

  private pushMarker(name: string): string {
    return join(this.dir, `${name}.push`);
  }

  /** True when the record of `name` (made under this config and stamp) is the very file walDir/`name` is. */
  holds(name: string): boolean {
    if (!this.ready) return false;
    try {
      const a = lstatSync(join(this.dir, name));
      const b = lstatSync(join(this.walDir, name));
      return a.isFile() && a.dev === b.dev && a.ino === b.ino;
    } catch {
      return false;
    }
  }

  /**
   * Vouches for this run's records (the pusher calls it before its first record): `fast` is
   * (re)written only when the config file still has the stamp it was read with, so the front
   * answers from records only while the config is the one they were made under. Where the stamp
   * moved, every record is removed and false returned: the run must make no more.
   */
  vouch(): boolean {
    if (!this.prepare()) return false;
    if (!this.current()) {
      this.clear();
      return false;
    }
    const fast = join(this.dir, "fast");
    try {
      if (this.readFast() !== this.stamp) writeFileDurable(fast, Buffer.from(`${this.stamp}\n`), { mode: 0o600 });
      // An edit between the check above and this write: start over next time.
      if (!this.current()) {
        this.clear();
        return false;
      }
      return true;
    } catch {
      // No fast file: every call goes to Node.
      removeQuietly(fast);
      return false;
    }
  }

  /** True while the config file has the stamp this run read it with. */
  current(): boolean {
    try {
      return fileStamp(statSync(this.configFile, { bigint: true })) === this.stamp;
    } catch {
      return false;
    }
  }

  /**
   * Removes every record made under another config or stamp (so that `holds` vouches only for
   * this run's kind), every record whose segment is no longer `.ready` (done, or gone), every
   * push marker whose process is gone or whose segment is no longer `.ready`, and stray temps.
   */
  sweep(): void {
    if (!existsSync(this.dir)) return;
    if (!this.prepare()) return;
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith(TMP_PREFIX)) {
        removeQuietly(join(this.dir, name));
        continue;
      }
      if (name.endsWith(".push") && parseWalName(name.slice(0, -".push".length))?.kind === "segment") {
        const seg = name.slice(0, -".push".length);
        if (!this.pushing(seg) || !existsSync(join(this.statusDir, `${seg}.ready`)))
          removeQuietly(join(this.dir, name));
        continue;
      }
      if (parseWalName(name) === undefined) continue;
      let ready = true;
      try {
        lstatSync(join(this.statusDir, `${name}.ready`));
      } catch {
        ready = false;
      }
      if (!ready || !this.holds(name)) removeQuietly(join(this.dir, name));
    }
  }

  /** Removes the whole folder (for `stop`, and when the config moved under a run). */
  clear(): void {
    try {
      rmSync(this.dir, { recursive: true, force: true });
    } catch {
      // Best effort: the next run finds the stamp differs and starts over.
    }
    this.ready = false;
  }

  private entries(): string[] {
    try {
      return readdirSync(this.dir).filter((n) => n !== "fast" && n !== "config");
    } catch {
      return [];
    }
  }

  private readFast(): string | undefined {
    try {
      return readFileSync(join(this.dir, "fast"), "utf8").trim();
    } catch {
      return undefined;
    }
  }

  private readConfigLink(): string | undefined {
    try {
      return resolve(this.dir, readlinkSync(join(this.dir, "config")));
    } catch {
      return undefined;
    }
  }
}
