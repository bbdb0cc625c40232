import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { isErrno } from "../../errors";
import { childProcess } from "../../lazy";
import { removeQuietly, TMP_PREFIX, writeFileDurable } from "../../storage/durable";
import { hashFile } from "../../storage/sha256";
import { parseWalName } from "../../wal/names";

/**
 * The restore prefetch spool: `pg_wal/.walmgr-prefetch/` of the standby's data directory, on the
 * same file system as `%p`, so delivering an entry is a rename. Layout:
 *
 *   meta      JSON: what the spool is bound to (config, archive, system identifier, boot, segment size)
 *   fast      three lines for bin/wal-restore's shell front: the config path, the segment size and
 *             the boot id (or `durable`)
 *   datadir   symbolic link to the data directory it belongs to (the front tests it with -ef .)
 *   archive   symbolic link to the local completed_wals (only for a local archive: the front
 *             looks for PAUSE and STOP through it; without it every call goes to Node)
 *   want      the newest segment wal-restore itself served (tells the prefetcher where to go)
 *   lock      the prefetcher's lock (one per data directory)
 *   NAME      a verified, complete segment; served by renaming it to %p
 *   .NAME.cksum  what NAME was when it was verified: `CRC SIZE` as POSIX `cksum <NAME` prints
 *             them (the shell front compares `cksum` of what it served with it), then its sha256
 *             (what the Node path compares); written before NAME appears
 *
 * An entry is only ever created complete (a temp renamed after its digest matched the archive's
 * checksum, its check record written first), served only when it still is what was verified
 * (an entry altered since, even a byte and keeping its size, is never served), and only while
 * the spool is bound to the same data directory (inode),
 * cluster (system identifier), config, archive and boot as the caller; anything else discards
 * the whole spool. Entries are not fsynced: the spool is bound to the kernel's boot id, so what
 * a crash of the machine may have left half-written on disk is never served (the next boot has
 * another id), and within one boot the page cache is what every reader sees. Where the boot id
 * cannot be read (no /proc) the spool's boot is `""` and entries are fsynced instead.
 */
export const SPOOL_DIR = ".walmgr-prefetch";

export interface SpoolMeta {
  version: 2;
  /** Absolute path of the config file (as the caller resolved it). */
  config: string;
  /** completed_wals as `host:path` or a local path. */
  archive: string;
  /** pg_control's system identifier, as a decimal string. */
  sysid: string;
  /** The kernel's boot id when the spool was made; "" when it cannot be read (entries fsynced). */
  boot: string;
  segSize: number;
  created: string;
}

/** Where Linux says which boot this is (a random UUID made at each boot). */
export const BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id";

/** The name of the check record of the entry `name` (hidden: never taken for a segment). */
export function checkRecordName(name: string): string {
  return `.${name}.cksum`;
}

/** The entry a check record belongs to, or undefined for any other name. */
export function entryOfCheckRecord(file: string): string | undefined {
  const m = /^\.([0-9A-F]{24})\.cksum$/.exec(file);
  return m?.[1];
}

/**
 * POSIX `cksum` of the local file `path` as the shell front sees it: what `cksum <FILE` prints
 * (`CRC SIZE`), run on the same program the front runs (coreutils' CRC is hardware accelerated:
 * about 6 ms for 16 MiB here). Undefined when cksum cannot be run or says something else.
 */
export async function posixCksum(path: string): Promise<string | undefined> {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    return await new Promise<string | undefined>((res) => {
      let out = "";
      let child;
      try {
        child = childProcess().spawn("cksum", [], { stdio: [fd, "pipe", "ignore"] });
      } catch {
        res(undefined);
        return;
      }
      const stdout = child.stdout;
      if (stdout === null) {
        child.kill();
        res(undefined);
        return;
      }
      stdout.setEncoding("utf8");
      stdout.on("data", (d: string) => (out += d));
      child.on("error", () => res(undefined));
      child.on("close", (code) => {
        const line = out.trim();
        res(code === 0 && /^\d+ \d+$/.test(line) ? line : undefined);
      });
    });
  } finally {
    closeSync(fd);
  }
}

/** The kernel's boot id, or "" when it cannot be read. */
export function bootId(): string {
  try {
    return readFileSync(BOOT_ID_FILE, "utf8").trim();
  } catch {
    return "";
  }
}

/** The system identifier in `dataDir/global/pg_control` (its first 8 bytes), or undefined. */
export function readSysid(dataDir: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(join(dataDir, "global", "pg_control"), "r");
    const buf = Buffer.alloc(8);
    if (readSync(fd, buf, 0, 8, 0) !== 8) return undefined;
    return buf.readBigUInt64LE(0).toString();
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

export class Spool {
  constructor(
    /** The spool folder. */
    readonly dir: string,
    /** The data directory the spool belongs to. */
    readonly dataDir: string,
  ) {}

  /**
   * The spool for restore_command's `%p` (relative to the data directory, PostgreSQL's working
   * directory): undefined unless `%p` is in `pg_wal` of a data directory.
   */
  static forDest(destPath: string): Spool | undefined {
    const walDir = dirname(resolve(destPath));
    const dataDir = dirname(walDir);
    if (!existsSync(join(dataDir, "global", "pg_control"))) return undefined;
    return new Spool(join(walDir, SPOOL_DIR), dataDir);
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  readMeta(): SpoolMeta | undefined {
    try {
      const m = JSON.parse(readFileSync(this.path("meta"), "utf8")) as Partial<SpoolMeta>;
      if (
        m.version !== 2 ||
        typeof m.config !== "string" ||
        typeof m.archive !== "string" ||
        typeof m.sysid !== "string" ||
        typeof m.boot !== "string" ||
        typeof m.segSize !== "number"
      )
        return undefined;
      return m as SpoolMeta;
    } catch {
      return undefined;
    }
  }

  /**
   * Why the spool may not serve for `expect` (undefined: it may): another data directory (by
   * inode, so a spool copied from elsewhere or left by a data directory restored over this one
   * does not count), another cluster, config or archive, another boot of the machine, or a
   * config changed since.
   */
  mismatch(expect: Omit<SpoolMeta, "version" | "created" | "segSize">): string | undefined {
    const meta = this.readMeta();
    if (meta === undefined) return "no valid meta";
    try {
      const a = statSync(this.path("datadir"));
      const b = statSync(this.dataDir);
      if (a.ino !== b.ino || a.dev !== b.dev) return "made for another data directory";
    } catch {
      return "its data directory link is missing";
    }
    if (meta.sysid !== expect.sysid) return `made for cluster ${meta.sysid}, this is ${expect.sysid}`;
    if (meta.config !== expect.config) return `made for config ${meta.config}`;
    if (meta.archive !== expect.archive) return `made from archive ${meta.archive}`;
    if (meta.boot !== expect.boot) return "made before the machine last booted";
    try {
      if (statSync(expect.config).mtimeMs > statSync(this.path("meta")).mtimeMs) return "the config changed since";
    } catch {
      return "the config cannot be read";
    }
    return undefined;
  }

  /**
   * Binds a new, empty spool to `meta`: the links and `meta` first, `fast` last (the shell front
   * serves nothing without it). Any older spool must have been discarded.
   */
  create(meta: SpoolMeta, localArchive: string | undefined): void {
    mkdirSync(this.dir, { mode: 0o700 });
    symlinkSync(this.dataDir, this.path("datadir"));
    if (localArchive !== undefined) symlinkSync(resolve(localArchive), this.path("archive"));
    writeFileDurable(this.path("meta"), Buffer.from(`${JSON.stringify(meta)}\n`));
    writeFileDurable(this.path("fast"), Buffer.from(`${meta.config}\n${meta.segSize}\n${meta.boot || "durable"}\n`));
  }

  /**
   * Removes the whole spool: renamed away first (one step: neither the shell front nor a
   * prefetcher finds a half-removed spool under its name), then deleted.
   */
  discard(): void {
    const away = `${this.dir}.discarded.${process.pid}.${Date.now()}`;
    try {
      renameSync(this.dir, away);
    } catch (err) {
      if (isErrno(err, "ENOENT")) return;
      throw err;
    }
    rmSync(away, { recursive: true, force: true });
  }

  /** Segment names spooled, oldest first. */
  entries(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names.filter((n) => parseWalName(n)?.kind === "segment").sort();
  }

  /**
   * Records, before the verified temp `tmp` becomes the entry `name`, what it is: its POSIX
   * cksum line (for the shell front) and `sha256` (for the Node path). Written under a temp
   * name, fsynced and renamed (a few dozen bytes). False when cksum cannot be run: then the
   * entry must not be made (nothing could tell it from an altered one).
   */
  async recordCheck(name: string, tmp: string, sha256: string): Promise<boolean> {
    const line = await posixCksum(tmp);
    if (line === undefined) return false;
    writeFileDurable(this.path(checkRecordName(name)), Buffer.from(`${line}\n${sha256}\n`));
    return true;
  }

  /** The check record of `name`: its cksum line and sha256; undefined when absent or malformed. */
  readCheck(name: string): { cksum: string; sha256: string } | undefined {
    try {
      const [cksum, sha256] = readFileSync(this.path(checkRecordName(name)), "utf8").split("\n");
      if (cksum === undefined || !/^\d+ \d+$/.test(cksum) || !/^[0-9a-f]{64}$/.test(sha256 ?? "")) return undefined;
      return { cksum, sha256: sha256 ?? "" };
    } catch {
      return undefined;
    }
  }

  /**
   * Serves the entry `name` at `dest` when it is exactly what was verified: `segSize` bytes with
   * the sha256 of its check record, hashed in the spool before it is renamed to `dest`, so an
   * entry truncated or altered since (or without a check record) never reaches `dest`: it is
   * removed, and why returned. "absent" when there was no entry.
   */
  take(name: string, dest: string, segSize: number): "served" | "absent" | { refused: string } {
    const entry = this.path(name);
    try {
      if (!lstatSync(entry).isFile()) {
        this.remove(name);
        return { refused: "not a regular file" };
      }
    } catch {
      return "absent";
    }
    const check = this.readCheck(name);
    let why: string | undefined;
    if (check === undefined) why = `no check record (${checkRecordName(name)})`;
    else {
      try {
        const got = hashFile(entry);
        if (got.bytes !== segSize) why = `${got.bytes} bytes, not ${segSize}`;
        else if (got.sha256 !== check.sha256)
          why = `altered since it was verified (sha256 ${got.sha256.slice(0, 16)}…, verified ${check.sha256.slice(0, 16)}…)`;
      } catch (err) {
        if (isErrno(err, "ENOENT")) return "absent";
        why = `cannot be read (${(err as Error).message})`;
      }
    }
    if (why !== undefined) {
      this.remove(name);
      return { refused: why };
    }
    try {
      renameSync(entry, dest);
    } catch {
      return "absent";
    }
    removeQuietly(this.path(checkRecordName(name)));
    return "served";
  }

  /** Removes one entry (or anything else under that name in the spool), and its check record. */
  remove(name: string): void {
    removeQuietly(this.path(name));
    removeQuietly(this.path(checkRecordName(name)));
  }

  /** The entries that have a check record in the spool (whether or not the entry is still there). */
  checkRecords(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names.flatMap((n) => entryOfCheckRecord(n) ?? []);
  }

  /** Records the newest segment wal-restore served itself, for the prefetcher. */
  setWant(name: string): void {
    try {
      writeFileDurable(this.path("want"), Buffer.from(`${name}\n`));
    } catch {
      // the spool may just have been discarded
    }
  }

  want(): string | undefined {
    try {
      const w = readFileSync(this.path("want"), "utf8").trim();
      return parseWalName(w)?.kind === "segment" ? w : undefined;
    } catch {
      return undefined;
    }
  }

  /** Removes temps (only a live prefetcher, holding the lock, writes them). */
  removeTemps(): void {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return;
    }
    for (const n of names) if (n.startsWith(TMP_PREFIX)) removeQuietly(this.path(n));
  }
}
