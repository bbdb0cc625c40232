/**
 * `wal-ctl check` and `wal-ctl verify` on real PostgreSQL 15, each catching a real fault on one
 * master/standby pair: archive_command pointing elsewhere, a slave directory that is not
 * writable, archiving failing with a growing .ready backlog (--nagios), a stale BACKUPLOCK, a
 * paused standby, a segment deleted from the middle of the chain (verify names it and says how
 * far the newest backup reaches; check says it cannot reach the newest WAL), and a flipped byte
 * in an archived segment and in a backup file; files another user could have written (planted
 * by nobody, or made group-writable) are refused by wal-restore and named by verify and check.
 * Every --json output is validated against the schemas in schemas/.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Ajv2020 from "ajv/dist/2020";
import { runUntilPause, signalPaused } from "../helpers/crash";
import { binPath, mkdirAs, REPO_ROOT, removeTempDir, run, runBin, waitFor, ok, type RunResult } from "../helpers/env";
import { createReplayingPair, stopPair, writeFileAs, type Pair } from "../helpers/walmgr";

let p: Pair;
const ajv = new Ajv2020({ allErrors: true });
const schema = (name: string): object =>
  JSON.parse(readFileSync(join(REPO_ROOT, "schemas", `${name}.schema.json`), "utf8")) as object;
const validCheck = ajv.compile(schema("check"));
const validVerify = ajv.compile(schema("verify"));
const validList = ajv.compile(schema("listbackups"));

interface CheckJson {
  ok: boolean;
  role: string;
  checks: { name: string; status: string; detail: string; fix?: string }[];
}

interface VerifyJson {
  ok: boolean;
  sets: {
    name: string;
    restorable: boolean;
    problems: string[];
    reach: { firstMissing?: string; lastSegment?: string; reachableLsn?: string; consistent: boolean } | null;
  }[];
  unsafe: { path: string; reason: string }[];
  wal: {
    files: number;
    verified: number;
    newestSegment: string | null;
    corrupt: { name: string }[];
    gaps: { from: string }[];
    unexpected: { name: string }[];
  };
}

const completed = (): string => join(p.slaveDir, "logs.complete");
const segments = (): string[] =>
  readdirSync(completed())
    .filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort();

function checkJson(ini: string, ...extra: string[]): { res: RunResult; rep: CheckJson } {
  const res = runBin("wal-ctl", [ini, "check", "--json", ...extra]);
  const rep = JSON.parse(res.stdout) as CheckJson;
  assert.ok(validCheck(rep), `check --json against schemas/check.schema.json: ${ajv.errorsText(validCheck.errors)}`);
  assert.equal(rep.ok, res.status === 0, "ok is true exactly when check exits 0");
  return { res, rep };
}

function item(rep: CheckJson, name: string): { status: string; detail: string; fix?: string } {
  const it = rep.checks.find((c) => c.name === name);
  assert.ok(it, `item ${name} in ${JSON.stringify(rep.checks.map((c) => c.name))}`);
  return it;
}

function verifyJson(...args: string[]): { res: RunResult; rep: VerifyJson } {
  const res = runBin("wal-ctl", [p.slaveIni, "verify", ...args, "--json"]);
  const rep = JSON.parse(res.stdout) as VerifyJson;
  assert.ok(
    validVerify(rep),
    `verify --json against schemas/verify.schema.json: ${ajv.errorsText(validVerify.errors)}`,
  );
  assert.equal(rep.ok, res.status === 0, "ok is true exactly when verify exits 0");
  return { res, rep };
}

async function reload(sql: string): Promise<void> {
  await p.master.query(sql);
  await p.master.query("SELECT pg_reload_conf()");
  await new Promise((r) => setTimeout(r, 300));
}

/** Flips one byte of `file` in place; returns the function that flips it back. */
function flipByte(file: string, offset: number): () => void {
  const buf = readFileSync(file);
  buf[offset] = (buf[offset] ?? 0) ^ 0xff;
  writeFileSync(file, buf);
  return () => {
    buf[offset] = (buf[offset] ?? 0) ^ 0xff;
    writeFileSync(file, buf);
  };
}

before(async () => {
  // A named set is copied: data.master stays for verify.
  p = await createReplayingPair("checkverify");
  // A few segments after the backup: a chain with a middle.
  const switched: string[] = [];
  for (let i = 0; i < 4; i++) {
    await p.master.query("INSERT INTO t (tag) SELECT 'x' FROM generate_series(1, 100)");
    switched.push(await p.master.value<string>("SELECT pg_walfile_name(pg_switch_wal())"));
  }
  // Every one, not only the last: a batch run stores ready segments side by side.
  await waitFor(`${switched.join(", ")} archived`, () => switched.every((s) => segments().includes(s)), 90_000, 100);
});

after(() => {
  if (p) {
    stopPair(p);
    removeTempDir(p.base);
  }
});

test("check and verify on a healthy pair: every item OK, exit 0", async (t) => {
  await t.test("master: settings, a durable probe write, the archiver, a WAL switch that arrives", () => {
    const { res, rep } = checkJson(p.masterIni, "--timeout", "30");
    assert.equal(res.status, 0, res.stdout + res.stderr);
    assert.equal(rep.role, "master");
    for (const n of [
      "config",
      "slave directory writable",
      "database",
      "archive_mode",
      "wal_level",
      "archive_command",
      "archiver",
      "WAL switch archived",
      "BACKUPLOCK",
    ]) {
      assert.equal(item(rep, n).status, "OK", `${n}: ${item(rep, n).detail}`);
    }
    const text = runBin("wal-ctl", [p.masterIni, "check"]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /^OK +archive_command: /m);
    assert.match(text.stdout, /all \d+ checks passed/);
    assert.ok(!text.stdout.includes("\u001b["), "no colour when stdout is not a terminal");
    const nagios = runBin("wal-ctl", [p.masterIni, "check", "--nagios"]);
    assert.equal(nagios.status, 0);
    assert.match(nagios.stdout, /^WALMGR OK - .* \| checks=\d+/);
    assert.equal(nagios.stdout.trim().split("\n").length, 1, "one line");
  });

  await t.test("slave: layout, restore_command, the newest backup's chain, no lock, replaying", async () => {
    await waitFor(
      "the standby to run",
      async () => (await p.slave.value<boolean>("SELECT pg_is_in_recovery()")) === true,
      30_000,
      200,
    );
    const { res, rep } = checkJson(p.slaveIni);
    assert.equal(res.status, 0, res.stdout + res.stderr);
    for (const n of ["layout", "restore_command", "newest backup's WAL", "BACKUPLOCK", "standby replay"]) {
      assert.equal(item(rep, n).status, "OK", `${n}: ${item(rep, n).detail}`);
    }
  });

  await t.test("verify: every set and every archived file checks, the set reaches the newest segment", () => {
    const { res, rep } = verifyJson();
    assert.equal(res.status, 0, res.stderr);
    assert.ok(rep.wal.files >= 6 && rep.wal.verified === rep.wal.files, JSON.stringify(rep.wal));
    assert.equal(rep.sets[0]?.reach?.lastSegment, rep.wal.newestSegment);
    const list = JSON.parse(
      ok(runBin("wal-ctl", [p.slaveIni, "listbackups", "--json"]), "listbackups").stdout,
    ) as unknown;
    assert.ok(validList(list), `listbackups --json against its schema: ${ajv.errorsText(validList.errors)}`);
    const text = ok(runBin("wal-ctl", [p.slaveIni, "verify"]), "verify");
    assert.match(
      text.stdout,
      /data\.master: \d+ files checked against the manifest; WAL from [0-9A-F]{24} on timeline 1; can be restored to /,
    );
  });
});

test("check catches each fault, names it with a fix, exits non-zero; it passes again once mended", async (t) => {
  await t.test("archive_command pointing elsewhere: FAIL, exit 3 (config); --nagios CRITICAL", async () => {
    await reload("ALTER SYSTEM SET archive_command = '/usr/bin/env true %p %f'");
    const { res, rep } = checkJson(p.masterIni, "--timeout", "5");
    assert.equal(res.status, 3, res.stdout);
    const a = item(rep, "archive_command");
    assert.equal(a.status, "FAIL");
    assert.match(a.detail, /does not archive with this config/);
    assert.match(a.fix ?? "", /wal-ctl CONFIG setup/);
    const nagios = runBin("wal-ctl", [p.masterIni, "check", "--nagios", "--timeout", "5"]);
    assert.equal(nagios.status, 2, nagios.stdout);
    assert.match(nagios.stdout, /^WALMGR CRITICAL - archive_command: /);
    await reload("ALTER SYSTEM RESET archive_command");
  });

  await t.test("a slave directory that is not writable: FAIL, exit 9 (I/O), the switch skipped", () => {
    chmodSync(completed(), 0o500);
    try {
      const { res, rep } = checkJson(p.masterIni, "--timeout", "5");
      assert.equal(res.status, 9, res.stdout);
      const w = item(rep, "slave directory writable");
      assert.equal(w.status, "FAIL");
      assert.match(w.detail, /cannot write to .*logs\.complete/);
      assert.equal(item(rep, "WAL switch archived").status, "SKIP");
    } finally {
      chmodSync(completed(), 0o700);
    }
  });

  await t.test(
    "archiving failing (slave directory unwritable) with a growing .ready backlog: the archiver FAILs; --nagios says so",
    async () => {
      chmodSync(completed(), 0o500);
      try {
        for (let i = 0; i < 3; i++) {
          await p.master.query("INSERT INTO t (tag) VALUES ('backlog')");
          await p.master.query("SELECT pg_switch_wal()");
        }
        await waitFor(
          "pg_stat_archiver to record a failure",
          async () => Number(await p.master.value<string>("SELECT failed_count::text FROM pg_stat_archiver")) > 0,
          30_000,
          200,
        );
        const nagios = runBin("wal-ctl", [p.masterIni, "check", "--nagios", "--timeout", "2"]);
        assert.equal(nagios.status, 2, nagios.stdout);
        assert.match(
          nagios.stdout,
          /^WALMGR CRITICAL - .*archiver: archiving is failing: .*[1-9]\d* WAL file\(s\) waiting/,
        );
        assert.match(nagios.stdout, /\bready=[1-9]\d*\b/, "the backlog in the perfdata");
        assert.equal(nagios.stdout.trim().split("\n").length, 1, "one line");
        const { res, rep } = checkJson(p.masterIni, "--timeout", "2");
        assert.equal(res.status, 9);
        assert.equal(item(rep, "archiver").status, "FAIL");
        assert.match(item(rep, "archiver").fix ?? "", /server log/);
      } finally {
        chmodSync(completed(), 0o700);
      }
      await waitFor(
        "the backlog to drain and check to pass",
        async () => runBin("wal-ctl", [p.masterIni, "check", "--nagios", "--timeout", "20"]).status === 0,
        90_000,
        500,
      );
    },
  );

  await t.test(
    "master_db as a role that may not switch WAL: the switch item FAILs naming the grant, exit 7",
    async () => {
      await p.master.query("CREATE ROLE walcheck LOGIN");
      const saved = readFileSync(p.masterIni, "utf8");
      writeFileAs(p.masterIni, saved.replace(/^(master_db = .*)user=postgres/m, "$1user=walcheck"));
      try {
        const { res, rep } = checkJson(p.masterIni, "--timeout", "5");
        assert.equal(res.status, 7, res.stdout);
        assert.equal(item(rep, "archive_command").status, "OK", "the settings are readable without superuser");
        const sw = item(rep, "WAL switch archived");
        assert.equal(sw.status, "FAIL");
        assert.match(sw.detail, /cannot force a WAL switch: .*permission denied for function pg_switch_wal/);
        assert.match(sw.fix ?? "", /GRANT EXECUTE ON FUNCTION pg_switch_wal\(\)/);
      } finally {
        writeFileAs(p.masterIni, saved);
        await p.master.query("DROP ROLE walcheck");
      }
    },
  );

  await t.test("a stale BACKUPLOCK: FAIL on both sides, exit 4 (lock), the fix names --clear-stale-lock", () => {
    const lock = join(completed(), "BACKUPLOCK");
    writeFileAs(
      lock,
      `${JSON.stringify({ pid: 2 ** 22 + 17, host: hostname(), started: new Date().toISOString(), command: "wal-backup x" })}\n`,
    );
    try {
      const { res, rep } = checkJson(p.slaveIni);
      assert.equal(res.status, 4, res.stdout);
      const l = item(rep, "BACKUPLOCK");
      assert.equal(l.status, "FAIL");
      assert.match(l.detail, /stale lock .* is gone/);
      assert.match(l.fix ?? "", /--clear-stale-lock/);
    } finally {
      rmSync(lock, { force: true });
    }
  });

  await t.test("a paused standby: WARN, exit 1; --nagios WARNING", () => {
    ok(runBin("wal-ctl", [p.slaveIni, "pause"]), "pause");
    try {
      const { res, rep } = checkJson(p.slaveIni);
      assert.equal(res.status, 1, res.stdout);
      const r = item(rep, "standby replay");
      assert.equal(r.status, "WARN");
      assert.match(r.detail, /replay is paused \(PAUSE file/);
      assert.match(r.fix ?? "", /wal-ctl CONFIG continue/);
      const nagios = runBin("wal-ctl", [p.slaveIni, "check", "--nagios"]);
      assert.equal(nagios.status, 1, nagios.stdout);
      assert.match(nagios.stdout, /^WALMGR WARNING - standby replay: replay is paused/);
    } finally {
      ok(runBin("wal-ctl", [p.slaveIni, "continue"]), "continue");
    }
    assert.equal(runBin("wal-ctl", [p.slaveIni, "check"]).status, 0);
  });
});

test("probes that killed checks left are swept by the next check; a live or young foreign one stays", async () => {
  const probes = (): string[] =>
    readdirSync(completed())
      .filter((n) => n.startsWith(".walmgr-check."))
      .sort();
  // A check killed (kill -9) between writing its probe and removing it.
  const killed = await runUntilPause("wal-ctl", [p.masterIni, "check"], "check-probe");
  const left = `.walmgr-check.${hostname()}.${killed.child.pid}`;
  assert.deepEqual(probes(), [left], "the probe is written");
  await signalPaused(killed, "SIGKILL");
  assert.deepEqual(probes(), [left], "and left behind");
  // Another host's: one older than the lease, one fresh (its check may be running now); and one
  // of this host whose pid now runs something else than wal-ctl (this test runner).
  const oldForeign = ".walmgr-check.elsewhere.example.4242";
  const freshForeign = ".walmgr-check.elsewhere.example.4343";
  const reused = `.walmgr-check.${hostname()}.${process.pid}`;
  for (const n of [oldForeign, freshForeign, reused]) writeFileAs(join(completed(), n), "walmgr-ts check\n");
  const hourAgo = new Date(Date.now() - 3_600_000);
  utimesSync(join(completed(), oldForeign), hourAgo, hourAgo);
  try {
    const { rep } = checkJson(p.masterIni);
    const w = item(rep, "slave directory writable");
    assert.equal(w.status, "OK", w.detail);
    assert.match(w.detail, /removed 3 probe\(s\) killed checks left/);
    assert.deepEqual(probes(), [freshForeign], "only the fresh foreign probe stays");
  } finally {
    rmSync(join(completed(), freshForeign), { force: true });
  }
});

test("verify finds damage: a segment missing from the middle, a flipped byte in WAL and in a backup file", async (t) => {
  await t.test(
    "a segment deleted from the middle: verify names the gap and how far the set reaches; check FAILs",
    () => {
      const segs = segments();
      const victim = segs[segs.length - 3] ?? "";
      const before = segs[segs.length - 4] ?? "";
      const saved = join(p.base, victim);
      renameSync(join(completed(), victim), saved);
      try {
        const { res, rep } = verifyJson();
        assert.equal(res.status, 9, res.stderr);
        assert.deepEqual(
          rep.wal.gaps.map((g) => g.from),
          [victim],
        );
        const set = rep.sets[0];
        assert.equal(set?.reach?.firstMissing, victim);
        assert.equal(set?.reach?.lastSegment, before);
        assert.equal(set?.reach?.consistent, true);
        const text = runBin("wal-ctl", [p.slaveIni, "verify"]);
        assert.equal(text.status, 9);
        assert.match(text.stdout, new RegExp(`GAP: ${victim} missing on timeline 1`));
        assert.match(
          text.stdout,
          new RegExp(
            `recovery from it stops at [0-9A-F]+/[0-9A-F]+ \\(end of ${before}\\): ${victim} is missing, so it cannot reach the newest WAL`,
          ),
        );
        assert.match(text.stderr, /backup verification failed/);
        const { res: cres, rep: crep } = checkJson(p.slaveIni);
        assert.equal(cres.status, 9);
        assert.match(
          item(crep, "newest backup's WAL").detail,
          new RegExp(`can be restored only to .*${victim} is missing`),
        );
      } finally {
        renameSync(saved, join(completed(), victim));
      }
      assert.equal(runBin("wal-ctl", [p.slaveIni, "verify"]).status, 0);
    },
  );

  await t.test("a flipped byte in an archived segment: CORRUPT, named; the chain breaks there", () => {
    const segs = segments();
    const victim = segs[segs.length - 2] ?? "";
    const unflip = flipByte(join(completed(), victim), 5000);
    try {
      const { res, rep } = verifyJson();
      assert.equal(res.status, 9);
      assert.deepEqual(
        rep.wal.corrupt.map((c) => c.name),
        [victim],
      );
      assert.equal(rep.sets[0]?.reach?.firstMissing, victim);
      const text = runBin("wal-ctl", [p.slaveIni, "verify"]);
      assert.match(text.stdout, new RegExp(`CORRUPT: ${victim}: does not match its checksum`));
      assert.match(text.stdout, new RegExp(`${victim} is corrupt`));
    } finally {
      unflip();
    }
  });

  await t.test("a segment renamed into another's place, checksum and all: its page header gives it away", () => {
    const segs = segments();
    const victim = segs[segs.length - 2] ?? "";
    const other = segs[segs.length - 1] ?? "";
    const path = join(completed(), victim);
    const sum = join(completed(), `.${victim}.sha256`);
    const saved = readFileSync(path);
    const savedSum = readFileSync(sum, "utf8");
    const body = readFileSync(join(completed(), other));
    writeFileSync(path, body);
    // The checksum is made to match, as a careless copy of both files would: only the header tells.
    writeFileSync(sum, `${createHash("sha256").update(body).digest("hex")}  ${victim}\n`);
    try {
      const { res, rep } = verifyJson();
      assert.equal(res.status, 9);
      assert.equal(rep.wal.corrupt[0]?.name, victim);
      assert.match(JSON.stringify(rep.wal.corrupt), /first page is for position .*not this segment's start/);
    } finally {
      writeFileSync(path, saved);
      writeFileSync(sum, savedSum);
    }
  });

  await t.test("a file that is not WAL in completed_wals: reported as unexpected, not a failure", () => {
    const junk = join(completed(), "notes.txt");
    writeFileAs(junk, "someone's notes\n");
    try {
      const { res, rep } = verifyJson();
      assert.equal(res.status, 0, res.stderr);
      assert.deepEqual(
        rep.wal.unexpected.map((u) => u.name),
        ["notes.txt"],
      );
      assert.match(runBin("wal-ctl", [p.slaveIni, "verify"]).stdout, /UNEXPECTED: notes\.txt: not a WAL file name/);
    } finally {
      rmSync(junk, { force: true });
    }
  });

  await t.test("a flipped byte in a backup file: the set's file is named, the set not restorable", () => {
    const set = join(p.slaveDir, "data.master");
    const file = join(set, "global", "pg_control");
    const unflip = flipByte(file, 100);
    try {
      const { res, rep } = verifyJson("data.master");
      assert.equal(res.status, 9);
      assert.equal(rep.sets[0]?.restorable, false);
      assert.ok(
        rep.sets[0]?.problems.some((x) => x === "global/pg_control does not match its checksum"),
        JSON.stringify(rep.sets[0]?.problems),
      );
    } finally {
      unflip();
    }
    ok(runBin("wal-ctl", [p.slaveIni, "verify"]), "verify after mending");
  });
});

test("files another user could have written are never served, and verify and check name them", async (t) => {
  const nobody = Number(run("id", ["-u", "nobody"]).stdout.trim());
  const target = join(p.base, "restored");
  mkdirAs(target);
  const dest = join(target, "RECOVERYXLOG");
  const newest = segments().pop() ?? "";
  const restore = (name: string, asRoot = false): RunResult =>
    run(binPath("wal-restore"), [p.slaveIni, name, dest], asRoot ? { uid: 0, gid: 0 } : {});

  await t.test(
    "planted by nobody in a world-writable completed_wals (a segment and its checksum): refused, named",
    () => {
      // The next segment, not archived yet: what a standby asks for next.
      const n = Number.parseInt(newest.slice(16), 16) + 1;
      const name = `${newest.slice(0, 16)}${n.toString(16).toUpperCase().padStart(8, "0")}`;
      const planted = join(completed(), name);
      const sum = join(completed(), `.${name}.sha256`);
      const data = readFileSync(join(completed(), newest));
      chmodSync(completed(), 0o777); // the operator's mistake
      try {
        writeFileSync(planted, data, { mode: 0o644 });
        writeFileSync(sum, `${createHash("sha256").update(data).digest("hex")}  ${name}\n`, { mode: 0o644 });
        for (const f of [planted, sum]) chownSync(f, nobody, nobody);
        for (const asRoot of [false, true]) {
          const r = restore(name, asRoot);
          assert.equal(r.status, 9, `${asRoot ? "as root: " : ""}${r.stderr}`);
          assert.match(
            r.stderr,
            new RegExp(
              `${name}(\\.sha256)? could have been written by another user \\(owned by nobody \\(uid ${nobody}\\), mode 0644\\)`,
            ),
          );
          assert.match(r.stderr, /chown postgres .*chmod 0600/);
          assert.ok(!existsSync(dest), "nothing at %p");
        }
        const { res, rep } = verifyJson();
        assert.equal(res.status, 9, res.stderr);
        const unsafe = new Map(rep.unsafe.map((u) => [u.path, u.reason]));
        assert.match(unsafe.get(completed()) ?? "", /mode 0777 lets its group and all users write in it/);
        assert.match(unsafe.get(planted) ?? "", /owned by nobody/);
        assert.match(unsafe.get(sum) ?? "", /owned by nobody/);
        const text = runBin("wal-ctl", [p.slaveIni, "verify"]);
        assert.equal(text.status, 9);
        assert.match(
          text.stdout,
          new RegExp(`UNSAFE: ${planted}: another user could have written it \\(owned by nobody`),
        );
        const { res: cres, rep: crep } = checkJson(p.slaveIni);
        assert.equal(cres.status, 9, cres.stdout);
        const owners = item(crep, "owners and modes");
        assert.equal(owners.status, "FAIL");
        assert.ok(owners.detail.includes(planted) && owners.detail.includes("nobody"), owners.detail);
        assert.ok(owners.detail.includes(completed()), owners.detail);
        assert.match(owners.fix ?? "", /chown/);
      } finally {
        rmSync(planted, { force: true });
        rmSync(sum, { force: true });
        chmodSync(completed(), 0o700);
      }
      const { res, rep } = verifyJson();
      assert.equal(res.status, 0, res.stdout);
      assert.deepEqual(rep.unsafe, []);
      assert.equal(item(checkJson(p.slaveIni).rep, "owners and modes").status, "OK");
    },
  );

  await t.test("a genuine segment made group-writable: refused naming its mode; served once it is 0600", () => {
    const file = join(completed(), newest);
    chmodSync(file, 0o664);
    try {
      const r = restore(newest);
      assert.equal(r.status, 9, r.stderr);
      assert.match(
        r.stderr,
        new RegExp(`${newest} could have been written by another user \\(mode 0664 lets its group write it\\)`),
      );
      assert.ok(!existsSync(dest));
    } finally {
      chmodSync(file, 0o600);
    }
    ok(restore(newest), "restore of the mended segment");
    rmSync(dest);
  });

  await t.test("as root, the slave directory owner's files are served (root could write them anyway)", () => {
    ok(restore(newest, true), "wal-restore as root");
    assert.ok(readFileSync(dest).equals(readFileSync(join(completed(), newest))));
    rmSync(dest);
  });
});
