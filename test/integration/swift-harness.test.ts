/**
 * The Swift all-in-one test harness (test/helpers/swift.ts, scripts/swift/aio.py) against
 * itself: what the S3 tests rely on works on a real Swift with s3api — signed bucket and
 * object requests, ListObjectsV2, a multipart upload, refusal of a wrong secret, the proxy
 * going down and coming back on the same port, and the slow-endpoint mode.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import { TestSwift } from "../helpers/swift";

let swift: TestSwift;
const BUCKET = "harness";

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

function xmlValues(xml: Buffer, tag: string): string[] {
  return [...xml.toString("utf8").matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, "g"))].map((m) => m[1] ?? "");
}

function md5(data: Uint8Array): string {
  return createHash("md5").update(data).digest("hex");
}

before(async () => {
  swift = await TestSwift.start();
  console.log(`swift started in ${swift.startupMs} ms at ${swift.endpoint}`);
});

after(async () => {
  await swift?.stop();
});

test("bucket, 16 MiB object round trip, ListObjectsV2", async () => {
  assert.match(swift.endpoint, /^http:\/\/127\.0\.0\.1:\d+$/);
  await swift.createBucket(BUCKET);
  const data = randomBytes(16 * 1024 * 1024);
  const put = await swift.request("PUT", `/${BUCKET}/dir/big.bin`, { body: data });
  assert.equal(put.status, 200, put.body.toString());
  assert.equal(put.headers.etag, `"${md5(data)}"`);

  const get = await swift.request("GET", `/${BUCKET}/dir/big.bin`);
  assert.equal(get.status, 200);
  assert.equal(get.body.length, data.length);
  assert.equal(sha(get.body), sha(data));

  const list = await swift.request("GET", `/${BUCKET}?list-type=2&prefix=dir%2F`);
  assert.equal(list.status, 200, list.body.toString());
  assert.deepEqual(xmlValues(list.body, "Key"), ["dir/big.bin"]);
  assert.deepEqual(xmlValues(list.body, "Size"), [String(data.length)]);
  assert.deepEqual(xmlValues(list.body, "KeyCount"), ["1"]);
});

test("multipart upload of 5 MiB + 1 MiB reads back whole", async () => {
  const key = "mpu/object";
  const parts = [randomBytes(5 * 1024 * 1024), randomBytes(1024 * 1024)];
  const init = await swift.request("POST", `/${BUCKET}/${key}?uploads`);
  assert.equal(init.status, 200, init.body.toString());
  const [uploadId] = xmlValues(init.body, "UploadId");
  assert.ok(uploadId, init.body.toString());
  const etags: string[] = [];
  for (const [i, part] of parts.entries()) {
    const res = await swift.request("PUT", `/${BUCKET}/${key}?partNumber=${i + 1}&uploadId=${uploadId}`, {
      body: part,
    });
    assert.equal(res.status, 200, res.body.toString());
    assert.equal(res.headers.etag, `"${md5(part)}"`);
    etags.push(String(res.headers.etag));
  }
  const complete =
    "<CompleteMultipartUpload>" +
    etags.map((e, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${e}</ETag></Part>`).join("") +
    "</CompleteMultipartUpload>";
  const done = await swift.request("POST", `/${BUCKET}/${key}?uploadId=${uploadId}`, {
    body: complete,
    headers: { "Content-Type": "application/xml" },
  });
  assert.equal(done.status, 200, done.body.toString());
  // The S3 multipart ETag: md5 of the parts' binary md5s, "-" and the part count.
  const expected = md5(Buffer.concat(parts.map((p) => createHash("md5").update(p).digest()))) + "-2";
  assert.deepEqual(xmlValues(done.body, "ETag"), [`"${expected}"`]);

  const whole = Buffer.concat(parts);
  const get = await swift.request("GET", `/${BUCKET}/${key}`);
  assert.equal(get.status, 200);
  assert.equal(get.body.length, whole.length);
  assert.equal(sha(get.body), sha(whole));
  assert.equal(get.headers.etag, `"${expected}"`);
});

test("errors: a wrong secret is 403, a missing bucket or key 404 (S3 XML error codes)", async () => {
  const bad = await swift.request("GET", `/${BUCKET}?list-type=2`, { secretKey: "wrong" });
  assert.equal(bad.status, 403);
  assert.deepEqual(xmlValues(bad.body, "Code"), ["SignatureDoesNotMatch"]);

  const noBucket = await swift.request("GET", `/no-such-bucket?list-type=2`);
  assert.equal(noBucket.status, 404);
  assert.deepEqual(xmlValues(noBucket.body, "Code"), ["NoSuchBucket"]);

  const noKey = await swift.request("GET", `/${BUCKET}/no/such/key`);
  assert.equal(noKey.status, 404);
  assert.deepEqual(xmlValues(noKey.body, "Code"), ["NoSuchKey"]);
});

test("stopProxy: connections are refused; startProxy: the same port answers again", async () => {
  await swift.stopProxy();
  await assert.rejects(swift.request("GET", `/${BUCKET}?list-type=2`), (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, "ECONNREFUSED");
    return true;
  });
  await swift.startProxy();
  const res = await swift.request("GET", `/${BUCKET}/dir/big.bin`, { headers: { Range: "bytes=0-0" } });
  assert.equal(res.status, 206);
  assert.equal(res.body.length, 1);
});

async function timed(method: string, path: string, body?: Buffer): Promise<number> {
  const t0 = Date.now();
  const res = await swift.request(method, path, body ? { body } : {});
  assert.equal(res.status, 200, res.body.toString());
  return Date.now() - t0;
}

test("setSlow(3) delays each request by about 3 s, setSlow(3, 'PUT') only PUTs; setSlow(0) ends it", async () => {
  const key = `/${BUCKET}/dir/big.bin`;
  try {
    swift.setSlow(3);
    const head = await timed("HEAD", key);
    assert.ok(head >= 2900 && head < 6000, `HEAD took ${head} ms`);
    swift.setSlow(3, "PUT");
    const fast = await timed("HEAD", key);
    assert.ok(fast < 1500, `HEAD took ${fast} ms with only PUTs slow`);
    const put = await timed("PUT", `/${BUCKET}/small`, Buffer.from("x"));
    assert.ok(put >= 2900 && put < 6000, `PUT took ${put} ms`);
  } finally {
    swift.setSlow(0);
  }
  const normal = await timed("HEAD", key);
  assert.ok(normal < 1500, `HEAD took ${normal} ms after setSlow(0)`);
});
