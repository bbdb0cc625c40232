/**
 * Misbehaving helpers for the slave side of the ssh tests, planted where `slave_wal_ctl` points:
 * an executable script run as `FAKE SLAVE_CONFIG xhelper` over the real sshd, in place of the
 * slave's wal-ctl. Each one writes the verbs it received, one a line, to `LOG` (beside it).
 *   stall    the real helper behind a proxy, until the first request after the hello: that one
 *            gets an answer frame announcing 100 bytes, 10 of them, and nothing more while the
 *            process stays (the defect of issue 22 item 8)
 *   trickle  the same, but the frame announces 100000 bytes and one comes every half second
 *   usage    the real helper behind a proxy, but the first `put` is answered as a build whose
 *            put takes 2 arguments would: `{ok: 0, code: 2, msg: "helper: put takes 2 …"}`
 *   other    a helper of another build: answers the hello as protocol 3, version 9.9.9, and any
 *            request with that usage error
 *   old      a helper from before the hello (protocol 1): answers "hello" as an unknown verb
 *            (the exact answer of that code), `put` with the usage error, anything else ok
 * The stalling ones stay up to `stayMs` (default 300 s) after the master is gone, like a helper
 * stuck on a slave host; the test kills them (`killPlanted`).
 */
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { binPath } from "./env";
import { chownSlave } from "./sshd";

export type FakeMode = "stall" | "trickle" | "usage" | "other" | "old";

const SCRIPT = String.raw`
const { spawn } = require("child_process");
const { appendFileSync } = require("fs");
const [MODE, REAL, LOG, STAY] = __ARGS__;
const out = (b) => process.stdout.write(b);
const frame = (type, payload) => {
  const p = Buffer.alloc(5);
  p.write(type, 0, "latin1");
  p.writeUInt32BE(payload.length, 1);
  return Buffer.concat([p, payload]);
};
const json = (type, v) => frame(type, Buffer.from(JSON.stringify(v)));
const USAGE = { ok: 0, code: 2, msg: "helper: put takes 2 string arguments (path, exclusive)" };
const proxy = MODE === "stall" || MODE === "trickle" || MODE === "usage";
let child;
if (proxy) {
  child = spawn(REAL, process.argv.slice(2), { stdio: ["pipe", "inherit", "inherit"] });
  child.on("exit", (code) => { if (!stalled) process.exit(code ?? 1); });
  child.stdin.on("error", () => {});
} else {
  out("walmgr-helper 1\n");
}
let stalled = false;
let buf = Buffer.alloc(0);
let fate = "forward"; // of the frames of the current request: forward | drop
let pendingAnswer; // an answer to send once the dropped request's body ended
function stall() {
  stalled = true;
  child?.stdin.end();
  setTimeout(() => process.exit(0), STAY).unref?.();
  setInterval(() => {}, 1 << 30);
  if (MODE === "stall") {
    out(Buffer.concat([Buffer.from([0x48, 0, 0, 0, 100]), Buffer.from('{"ok":1,"r')]));
  } else {
    out(Buffer.from([0x48, 0, 1, 0x86, 0xa0]));
    setInterval(() => out(Buffer.from(" ")), 500);
  }
}
function onFrame(type, payload, raw) {
  if (stalled) return;
  if (type === "H") {
    const req = JSON.parse(payload.toString("utf8"));
    appendFileSync(LOG, String(req.v) + "\n");
    const hasBody = req.b === 1;
    if (proxy) {
      if ((MODE === "stall" || MODE === "trickle") && req.v !== "hello") return stall();
      if (MODE === "usage" && req.v === "put") {
        fate = "drop";
        pendingAnswer = USAGE;
        if (!hasBody) { out(json("H", USAGE)); fate = "forward"; }
        return;
      }
      fate = "forward";
      child.stdin.write(raw);
      return;
    }
    let answer;
    if (MODE === "other") {
      answer = req.v === "hello" ? { ok: 1, r: { protocol: 3, version: "9.9.9", requests: "0badc0de" } } : USAGE;
    } else if (req.v === "hello") {
      answer = { ok: 0, code: 2, msg: 'helper: unknown verb "hello"', hint: "the master and slave run different walmgr-ts versions? install the same one on both hosts" };
    } else {
      answer = req.v === "put" ? USAGE : { ok: 1, r: null };
    }
    fate = "drop";
    if (hasBody) pendingAnswer = answer;
    else out(json("H", answer));
    return;
  }
  if (fate === "forward") { child.stdin.write(raw); return; }
  if ((type === "E" || type === "A") && pendingAnswer) {
    out(json("H", pendingAnswer));
    pendingAnswer = undefined;
    fate = "forward";
  }
}
process.stdin.on("data", (c) => {
  buf = Buffer.concat([buf, c]);
  while (buf.length >= 5) {
    const len = buf.readUInt32BE(1);
    if (buf.length < 5 + len) break;
    const raw = buf.subarray(0, 5 + len);
    onFrame(buf.toString("latin1", 0, 1), buf.subarray(5, 5 + len), raw);
    buf = buf.subarray(5 + len);
  }
});
process.stdin.on("end", () => {
  if (stalled) return;
  child?.stdin.end();
  if (!child) process.exit(0);
});
`;

/** Writes the fake helper `mode` into `dir` (a folder of the slave host); returns its path and log. */
export function plantHelper(dir: string, mode: FakeMode, stayMs = 300_000): { path: string; log: string } {
  const path = join(dir, `fake-helper-${mode}`);
  const log = `${path}.log`;
  const args = JSON.stringify([mode, binPath("wal-ctl"), log, stayMs]);
  writeFileSync(path, `#!${process.execPath}\n"use strict";\n${SCRIPT.replace("__ARGS__", args)}`, { mode: 0o755 });
  chmodSync(path, 0o755);
  chownSlave(path);
  writeFileSync(log, "", { mode: 0o666 });
  chmodSync(log, 0o666);
  chownSlave(log);
  return { path, log };
}

/** The verbs the planted helper received, in order. */
export function plantedLog(log: string): string[] {
  return readFileSync(log, "utf8").split("\n").filter(Boolean);
}

/** The pids of processes whose command line contains `text` (pgrep -f, fixed string). */
export function pidsMatching(text: string): number[] {
  const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const r = spawnSync("pgrep", ["-f", escaped], { encoding: "utf8" });
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map(Number)
    .filter((pid) => pid !== process.pid);
}

/** Kills (by pid) every process running the planted helper at `path` (it stays on purpose). */
export function killPlanted(path: string): void {
  for (const pid of pidsMatching(path)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
}
