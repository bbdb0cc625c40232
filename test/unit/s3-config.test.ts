/** S3 locations and credentials: parsing, precedence, and the private-file rule. */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { formatLocation, isLocal, loadConfig, parseLocation, sameStorage } from "../../src/config/load";
import { ConfigError } from "../../src/errors";
import { resolveCredentials } from "../../src/storage/s3/credentials";
import { encodeRfc3986, parseError, xmlBlocks, xmlText } from "../../src/storage/s3/client";

const dir = mkdtempSync(join(tmpdir(), "walmgr-s3cfg-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function config(body: string, mode = 0o600): ReturnType<typeof loadConfig> {
  const file = join(dir, `c${Math.random().toString(36).slice(2)}.ini`);
  writeFileSync(file, `[wal-master]\nslave = s3://bucket-1/site\ncompleted_wals = %(slave)s/logs.complete\n${body}`);
  chmodSync(file, mode);
  return loadConfig(file);
}

test("s3://bucket/prefix parses to a bucket and an absolute key prefix", () => {
  assert.deepEqual(parseLocation("s3://walmgr/site1/logs.complete", "/etc"), {
    bucket: "walmgr",
    path: "/site1/logs.complete",
  });
  assert.deepEqual(parseLocation("s3://walmgr", "/etc"), { bucket: "walmgr", path: "/" });
  assert.deepEqual(parseLocation("s3://walmgr/a//b/", "/etc"), { bucket: "walmgr", path: "/a/b" });
  assert.equal(formatLocation({ bucket: "walmgr", path: "/a" }), "s3://walmgr/a");
  assert.equal(isLocal({ bucket: "walmgr", path: "/a" }), false);
  assert.equal(isLocal({ path: "/a" }), true);
  assert.equal(sameStorage({ bucket: "b", path: "/x" }, { bucket: "b", path: "/y" }), true);
  assert.equal(sameStorage({ bucket: "b", path: "/x" }, { path: "/x" }), false);
  for (const bad of ["s3://Upper/x", "s3://a/x", "s3:///x", "s3://b_b/x", "s3://bucket/../x"]) {
    assert.throws(() => parseLocation(bad, "/etc"), ConfigError, bad);
  }
  // Still an ssh location: host:/path.
  assert.deepEqual(parseLocation("s3host:/srv/wal", "/etc"), { host: "s3host", path: "/srv/wal" });
});

test("credentials: the config file first, then the environment, then ~/.aws/credentials [profile]", () => {
  const env = { AWS_ACCESS_KEY_ID: "ENVKEY", AWS_SECRET_ACCESS_KEY: "envsecret", HOME: dir };
  const fromFile = resolveCredentials(config("s3_access_key = FILEKEY\ns3_secret_key = filesecret\n"), env);
  assert.equal(fromFile.accessKeyId, "FILEKEY");
  assert.equal(resolveCredentials(config(""), env).accessKeyId, "ENVKEY");
  const shared = join(dir, "credentials");
  writeFileSync(
    shared,
    "[default]\naws_access_key_id = DEFKEY\naws_secret_access_key = d\n[ops]\naws_access_key_id = OPSKEY\naws_secret_access_key = o\naws_session_token = tok\n",
  );
  const noEnv = { AWS_SHARED_CREDENTIALS_FILE: shared, HOME: dir };
  assert.equal(resolveCredentials(config(""), noEnv).accessKeyId, "DEFKEY");
  const ops = resolveCredentials(config("s3_profile = ops\n"), noEnv);
  assert.deepEqual([ops.accessKeyId, ops.sessionToken], ["OPSKEY", "tok"]);
  assert.equal(resolveCredentials(config(""), { ...noEnv, AWS_PROFILE: "ops" }).accessKeyId, "OPSKEY");
  assert.throws(() => resolveCredentials(config("s3_profile = nobody\n"), noEnv), /no S3 credentials/);
});

test("a secret in a config file others can read is a config error that never shows the secret", () => {
  const cfg = config("s3_access_key = K\ns3_secret_key = topsecret\n", 0o644);
  assert.throws(
    () => resolveCredentials(cfg, {}),
    (err: unknown) => err instanceof ConfigError && /mode 644/.test(err.message) && !err.message.includes("topsecret"),
  );
  assert.throws(() => resolveCredentials(config("s3_access_key = K\n"), {}), /s3_secret_key is missing/);
});

test("S3 XML and encoding helpers", () => {
  assert.equal(encodeRfc3986("a b!*'()/"), "a%20b%21%2A%27%28%29%2F");
  const err = parseError(Buffer.from("<Error><Code>NoSuchBucket</Code><Message>a &amp; b</Message></Error>"));
  assert.deepEqual(err, { code: "NoSuchBucket", message: "a & b" });
  const xml = "<R><Contents><Key>a&lt;1</Key></Contents><Contents><Key>b</Key></Contents></R>";
  assert.deepEqual(
    xmlBlocks(xml, "Contents").map((c) => xmlText(c, "Key")),
    ["a<1", "b"],
  );
});
