/** S3 locations and credentials: parsing, precedence, and the private-file rule. */
import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { formatLocation, isLocal, loadConfig, parseLocation, sameStorage } from "../../src/config/load";
import { ConfigError } from "../../src/errors";
import { resolveCredentials } from "../../src/storage/s3/credentials";
import { encodeRfc3986 } from "../../src/storage/s3/client";
import { describeBody, parseDocument, parseError, parseListing } from "../../src/storage/s3/xml";

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

test("S3 encoding and error documents", () => {
  assert.equal(encodeRfc3986("a b!*'()/"), "a%20b%21%2A%27%28%29%2F");
  const err = parseError(Buffer.from("<Error><Code>NoSuchBucket</Code><Message>a &amp; b</Message></Error>"));
  assert.deepEqual(err, { code: "NoSuchBucket", message: "a & b" });
  // S3 sends leading whitespace before an error in a 200 (a failed CompleteMultipartUpload).
  assert.equal(
    parseError(Buffer.from('  \n<?xml version="1.0"?>\n<Error><Code>InternalError</Code></Error>')).code,
    "InternalError",
  );
  // Not an error document: no code, whatever tags the text holds.
  assert.deepEqual(parseError(Buffer.from("<html><body><Code>X</Code></body></html>")), { code: "", message: "" });
  assert.deepEqual(parseError(Buffer.from("<html><body>Bad gateway<br></body></html>")), { code: "", message: "" });
});

const listing = (body: string): string =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">\n  <Name>b</Name>\n${body}\n</ListBucketResult>`;

test("a listing is read by an XML parser: entities, spaces, one or many entries, continuation", () => {
  const one = parseListing(
    Buffer.from(
      listing(
        "<Prefix>site/</Prefix><IsTruncated>false</IsTruncated><Contents><Key>site/a&lt;1&amp;&#x41;&#66; 0001 </Key><Size>012</Size><LastModified>2024-01-02T03:04:05.000Z</LastModified></Contents>",
      ),
    ),
    "site/",
  );
  assert.ok(typeof one !== "string", typeof one === "string" ? one : "");
  assert.deepEqual(one.keys, ["site/a<1&AB 0001 "], "entities decoded, spaces kept");
  assert.deepEqual(one.sizes, [12]);
  assert.equal(one.modified[0], Date.parse("2024-01-02T03:04:05Z"));
  assert.equal(one.next, undefined);
  const many = parseListing(
    Buffer.from(
      listing(`<IsTruncated>true</IsTruncated><NextContinuationToken>tok/+=</NextContinuationToken>
  <Contents><Key>site/x</Key><Size>1</Size></Contents>
  <Contents><Key>site/y</Key><Size>2</Size></Contents>
  <CommonPrefixes><Prefix>site/d/</Prefix></CommonPrefixes>`),
    ),
    "site/",
  );
  assert.ok(typeof many !== "string", typeof many === "string" ? many : "");
  assert.deepEqual(
    [many.keys, many.sizes, many.prefixes, many.next],
    [["site/x", "site/y"], [1, 2], ["site/d/"], "tok/+="],
  );
  const empty = parseListing(
    Buffer.from(listing("<Prefix>site/</Prefix><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated>")),
    "site/",
  );
  assert.ok(typeof empty !== "string" && empty.keys.length === 0, "a real empty listing is empty");
});

test("an answer that is not a complete listing of the prefix asked for is refused, never read as empty", () => {
  const html =
    "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body><p>Please log in<br>to continue</p></body></html>";
  const cases: [string, RegExp][] = [
    [html, /not an XML document/],
    ["<html><body><p>Login</p></body></html>", /<html>, not a ListBucketResult/],
    ["", /not an XML document/],
    ['{"Contents": []}', /not an XML document/],
    ["<Error><Code>SlowDown</Code></Error>", /<Error>, not a ListBucketResult/],
    [listing("<Contents><Key>site/a</Key><Size>1</Size></Contents>"), /without IsTruncated/],
    [listing("<IsTruncated>maybe</IsTruncated>"), /without IsTruncated/],
    [
      listing("<IsTruncated>true</IsTruncated><Contents><Key>site/a</Key><Size>1</Size></Contents>"),
      /without NextContinuationToken/,
    ],
    [
      listing("<IsTruncated>false</IsTruncated><Contents><Key>other/a</Key><Size>1</Size></Contents>"),
      /outside the prefix/,
    ],
    [
      listing("<IsTruncated>false</IsTruncated><CommonPrefixes><Prefix>x/</Prefix></CommonPrefixes>"),
      /outside the prefix/,
    ],
    [listing("<IsTruncated>false</IsTruncated><Contents><Size>1</Size></Contents>"), /without Key/],
    [listing("<IsTruncated>false</IsTruncated><Contents><Key>site/a</Key><Size>ten</Size></Contents>"), /valid Size/],
    // Cut off in the middle.
    [
      listing("<IsTruncated>false</IsTruncated><Contents><Key>site/a</Key><Size>1</Size></Contents>").slice(0, -20),
      /not an XML document/,
    ],
    // A DOCTYPE (entity expansion) is never accepted.
    [
      '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "site/x">]><ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>',
      /not an XML document/,
    ],
  ];
  for (const [body, want] of cases) {
    const got = parseListing(Buffer.from(body), "site/");
    assert.equal(typeof got, "string", `accepted: ${body}`);
    assert.match(got as string, want, body);
  }
  assert.equal(parseDocument(Buffer.from("<a/><b/>")), undefined, "two roots");
  assert.match(
    describeBody("text/html", Buffer.from(html)),
    /^\d+ byte\(s\) of text\/html: "<!DOCTYPE html> <html><head><title>Welcome/,
  );
});

test("S3 list leaves out names that are not one plain name ('..', '.', empty): a bucket's keys are opaque strings", async () => {
  const { S3Driver } = await import("../../src/storage/s3/driver.js");
  const { S3Client } = await import("../../src/storage/s3/client.js");
  const driver = new S3Driver({
    client: new S3Client({
      endpoint: new URL("http://127.0.0.1:9"),
      region: "us-east-1",
      bucket: "b",
      pathStyle: true,
      timeoutMs: 1000,
      timeoutSetting: "s3_timeout",
      paceBytes: 16 << 20,
      retries: 0,
      credentials: () => ({ accessKeyId: "a", secretAccessKey: "s", source: "test" }),
    }),
    partSize: 16 << 20,
  });
  // The listing as a hostile bucket writer could make it (the engine lists such keys as written).
  driver.listPage = async () => ({
    keys: ["site/000000010000000000000001", "site/..", "site/.", "site/"],
    sizes: [1, 0, 0, 0],
    modified: [0, 0, 0, 0],
    prefixes: ["site/base.0/", "site/../", "site//"],
    next: undefined,
  });
  assert.deepEqual(await driver.list("site"), ["000000010000000000000001", "base.0"]);
});
