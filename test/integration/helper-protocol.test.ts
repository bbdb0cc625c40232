/**
 * The helper's session protocol, spoken directly to `wal-ctl - xhelper` on this host (no sshd):
 * junk input is a clear transport error (exit 6), never an internal error (70); a body cut short
 * or damaged publishes nothing under the final name, and a damaged body leaves the session
 * usable; a master that does not say hello, or says another version, gets every request refused
 * unrun (code 6, naming both versions).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { encodeFrame, encodeJson, HELLO_VERB, HELPER_MAGIC, helloOf } from "../../src/storage/ssh/protocol";
import { binPath, makeTempDir, mkdirAs, removeTempDir, RUN_AS } from "../helpers/env";

let base: string;
before(() => {
  base = makeTempDir("helperproto");
});
after(() => removeTempDir(base));

/** The hello a master of this build sends first. */
const HELLO = encodeJson("H", { v: HELLO_VERB, a: [], h: helloOf() });

/** Runs a helper session on `input`; the hello goes first unless `hello` is false. */
function helper(input: Buffer, hello = true): { status: number | null; stdout: Buffer; stderr: string } {
  const r = spawnSync(binPath("wal-ctl"), ["-", "xhelper"], {
    input: hello ? Buffer.concat([HELLO, input]) : input,
    ...(RUN_AS ? { uid: RUN_AS.uid, gid: RUN_AS.gid } : {}),
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString("utf8") };
}

/** The answers in the helper's stdout (after its magic), the hello's answer included. */
function allAnswers(stdout: Buffer): Record<string, unknown>[] {
  assert.equal(stdout.subarray(0, HELPER_MAGIC.length).toString("latin1"), HELPER_MAGIC);
  const out: Record<string, unknown>[] = [];
  let off = HELPER_MAGIC.length;
  while (off < stdout.length) {
    const type = stdout.toString("latin1", off, off + 1);
    const len = stdout.readUInt32BE(off + 1);
    if (type === "H")
      out.push(JSON.parse(stdout.subarray(off + 5, off + 5 + len).toString("utf8")) as Record<string, unknown>);
    off += 5 + len;
  }
  return out;
}

/** The answers after the hello's (which must be this build's hello). */
function answers(stdout: Buffer): Record<string, unknown>[] {
  const [hello, ...rest] = allAnswers(stdout);
  assert.deepEqual(hello, { ok: 1, r: helloOf() });
  return rest;
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

test("junk on the helper's stdin: exit 6 with a clear message, never 70", () => {
  const cases: Buffer[] = [
    Buffer.from("hello there, this is not a frame\n"),
    encodeFrame("H", Buffer.from("{not json")),
    encodeFrame("H", Buffer.from("[1,2]")),
    Buffer.concat([encodeFrame("H", Buffer.from('{"v":"stat","a":["/"]}')).subarray(0, 9)]),
    Buffer.from([0x48, 0xff, 0xff, 0xff, 0xff]),
  ];
  for (const input of cases) {
    const r = helper(input, false);
    assert.equal(r.status, 6, `${JSON.stringify(input.toString("latin1"))}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /internal error/);
    assert.match(r.stderr, /the master/);
  }
});

test("bad requests are answered with an error and the session goes on", () => {
  const dir = join(base, "bad");
  mkdirAs(dir);
  const input = Buffer.concat([
    encodeJson("H", { v: "nosuchverb", a: [] }),
    encodeJson("H", { v: "stat", a: [1] }),
    encodeJson("H", { v: "stat", a: [] }),
    encodeJson("H", { v: "put", a: [join(dir, "f"), "0", "-"] }), // no body
    encodeJson("H", { v: "stat", a: [dir] }),
  ]);
  const r = helper(input);
  assert.equal(r.status, 0, r.stderr);
  const a = answers(r.stdout);
  assert.deepEqual(
    a.map((x) => x.ok),
    [0, 0, 0, 0, 1],
  );
  assert.equal(a[0]?.code, 2);
  assert.equal((a[4]?.r as { isDirectory: boolean }).isDirectory, true);
});

test("a body cut short publishes nothing and leaves no temp; a damaged body is refused and the session goes on", () => {
  const dir = join(base, "cut");
  mkdirAs(dir);
  const data = Buffer.alloc(3 << 20, 7);
  const put = (name: string): Buffer => encodeJson("H", { v: "put", a: [join(dir, name), "1", "-"], b: 1 });
  // Cut: the stream ends after the first chunk, before the end frame.
  const cut = helper(Buffer.concat([put("cut"), encodeFrame("D", data.subarray(0, 1 << 20))]));
  assert.equal(cut.status, 6, cut.stderr);
  assert.match(cut.stderr, /in the middle of/);
  // Damaged: the end frame's sha256 is not the data's; then a good put in the same session.
  const damaged = helper(
    Buffer.concat([
      put("damaged"),
      encodeFrame("D", data),
      encodeJson("E", { bytes: data.length, sha256: sha(Buffer.from("other")) }),
      put("good"),
      encodeFrame("D", data),
      encodeJson("E", { bytes: data.length, sha256: sha(data) }),
    ]),
  );
  assert.equal(damaged.status, 0, damaged.stderr);
  const a = answers(damaged.stdout);
  assert.equal(a[0]?.ok, 0);
  assert.equal(a[0]?.code, 9);
  assert.match(String(a[0]?.msg), /nothing was stored/);
  assert.equal(a[1]?.ok, 1);
  assert.ok(!existsSync(join(dir, "cut")));
  assert.ok(!existsSync(join(dir, "damaged")));
  assert.deepEqual(readFileSync(join(dir, "good")), data);
  assert.deepEqual(
    readdirSync(dir).filter((n) => n.startsWith(".walmgr-tmp.")),
    [],
  );
});

test("a master that does not say hello first, or says another version: every request refused unrun, code 6 naming both", () => {
  const dir = join(base, "hello");
  mkdirAs(dir);
  const data = Buffer.from("must not be stored");
  const put = (name: string): Buffer =>
    Buffer.concat([
      encodeJson("H", { v: "put", a: [join(dir, name), "1", "-"], b: 1 }),
      encodeFrame("D", data),
      encodeJson("E", { bytes: data.length, sha256: sha(data) }),
    ]);
  // A master of protocol 1 (today's requests, no hello): refused, body drained, session in step.
  const old = helper(Buffer.concat([put("old"), encodeJson("H", { v: "stat", a: [dir] })]), false);
  assert.equal(old.status, 0, old.stderr);
  const a = allAnswers(old.stdout);
  assert.deepEqual(
    a.map((x) => [x.ok, x.code]),
    [
      [0, 6],
      [0, 6],
    ],
  );
  assert.match(String(a[0]?.msg), /version mismatch/);
  assert.match(String(a[0]?.msg), new RegExp(`helper protocol ${helloOf().protocol} \\(version ${helloOf().version}`));
  assert.match(String(a[0]?.hint), /same walmgr-ts version on both hosts/);
  // Another build's hello: answered with ours, then its requests are refused.
  const other = { protocol: 3, version: "9.9.9", requests: "0badc0de" };
  const r = helper(Buffer.concat([encodeJson("H", { v: HELLO_VERB, a: [], h: other }), put("other")]), false);
  assert.equal(r.status, 0, r.stderr);
  const b = allAnswers(r.stdout);
  assert.deepEqual(b[0], { ok: 1, r: helloOf() });
  assert.equal(b[1]?.ok, 0);
  assert.equal(b[1]?.code, 6);
  assert.match(String(b[1]?.msg), /protocol 3 \(version 9\.9\.9, requests 0badc0de\)/);
  assert.ok(!existsSync(join(dir, "old")) && !existsSync(join(dir, "other")), "nothing ran");
  // The same build: served.
  const good = helper(put("good"));
  assert.equal(good.status, 0, good.stderr);
  assert.equal(answers(good.stdout)[0]?.ok, 1);
  assert.deepEqual(readFileSync(join(dir, "good")), data);
});
