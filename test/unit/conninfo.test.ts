/** libpq connection strings as master_db and primary_conninfo hold them. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { describeConn, maskConninfo, parseConninfo } from "../../src/pg/conninfo";
import { ConfigError, ExitCode } from "../../src/errors";

const WHERE = "/etc/walmgr/master.ini [wal-master] master_db";

describe("parseConninfo", () => {
  test("keyword/value pairs", () => {
    const c = parseConninfo("dbname=template1 host=/var/run/postgresql port=5433 user=postgres", WHERE);
    assert.equal(c.database, "template1");
    assert.equal(c.host, "/var/run/postgresql");
    assert.equal(c.port, 5433);
    assert.equal(c.user, "postgres");
    assert.equal(c.connectionString, undefined);
  });

  test("spaces around '=' and extra whitespace are allowed", () => {
    const c = parseConninfo("  dbname = mydb \t host= h1   port =6000 user=u ", WHERE);
    assert.equal(c.database, "mydb");
    assert.equal(c.host, "h1");
    assert.equal(c.port, 6000);
    assert.equal(c.user, "u");
  });

  test("single-quoted values with spaces and backslash escapes", () => {
    const c = parseConninfo(
      String.raw`dbname='my db' user=u host=h port=5432 password='it\'s a \\ secret' application_name='walmgr ts'`,
      WHERE,
    );
    assert.equal(c.database, "my db");
    assert.equal(c.password, "it's a \\ secret");
    assert.equal(c.application_name, "walmgr ts");
  });

  test("backslash escapes in unquoted values", () => {
    const c = parseConninfo(String.raw`dbname=a\ b user=u host=h port=1`, WHERE);
    assert.equal(c.database, "a b");
  });

  test("an empty quoted value", () => {
    const c = parseConninfo("dbname=x user=u host=h port=1 password=''", WHERE);
    assert.equal(c.password, "");
  });

  test("hostaddr, connect_timeout and sslmode", () => {
    const c = parseConninfo("hostaddr=127.0.0.1 dbname=d user=u port=1 connect_timeout=5 sslmode=require", WHERE);
    assert.equal(c.host, "127.0.0.1");
    assert.equal(c.connectionTimeoutMillis, 5000);
    assert.equal(c.ssl, true);
    assert.equal(parseConninfo("host=h dbname=d user=u port=1 sslmode=disable", WHERE).ssl, false);
  });

  test("unset keys get libpq-like defaults", () => {
    const c = parseConninfo("dbname=template1", WHERE);
    assert.equal(c.database, "template1");
    assert.equal(typeof c.host, "string");
    assert.ok((c.host ?? "").length > 0);
    assert.equal(typeof c.port, "number");
    assert.ok(Number.isInteger(c.port));
    assert.equal(typeof c.user, "string");
    assert.equal(c.connectionTimeoutMillis, 10_000);
  });

  test("postgres:// and postgresql:// URLs pass through unchanged", () => {
    for (const url of ["postgresql://u:secret@db.example.com:5433/app?sslmode=require", "postgres://localhost/x"]) {
      const c = parseConninfo(url, WHERE);
      assert.deepEqual(c, { connectionString: url });
    }
  });

  test("bad strings are ConfigErrors naming where they came from", () => {
    for (const bad of [
      "dbname",
      "=x",
      "dbname='unterminated",
      "host=a port",
      "dbname=x 'y'",
      "db-name=x",
      "dbname x",
    ]) {
      assert.throws(
        () => parseConninfo(bad, WHERE),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, `${bad}: expected ConfigError, got ${String(err)}`);
          assert.equal(err.exitCode, ExitCode.CONFIG);
          assert.ok(err.message.includes(WHERE), err.message);
          return true;
        },
        bad,
      );
    }
  });
});

describe("describeConn", () => {
  test("never shows the password of a URL", () => {
    const d = describeConn({ connectionString: "postgresql://u:secret@h:5432/db" });
    assert.ok(!d.includes("secret"), d);
    assert.ok(d.includes("h:5432/db"), d);
  });

  test("never shows a keyword password", () => {
    const d = describeConn(parseConninfo("host=h port=1 dbname=d user=u password=secret", WHERE));
    assert.ok(!d.includes("secret"), d);
    assert.equal(d, "host=h port=1 dbname=d user=u");
  });
});

describe("maskConninfo: every form libpq (and node-pg) accepts a password in", () => {
  const SECRET = "S3cr3t";
  const cases: [string, string, string][] = [
    // [what, conninfo, what must stay visible]
    ["key=value", `host=h port=1 password=${SECRET} user=u`, "host=h port=1 password=*** user=u"],
    ["spaces around =", `host=h password = ${SECRET} user=u`, "host=h password = *** user=u"],
    ["single-quoted with spaces", `host=h password='${SECRET} and more' user=u`, "host=h password=*** user=u"],
    ["quoted with escaped quote", String.raw`host=h password='it\'s ${SECRET}' user=u`, "host=h password=*** user=u"],
    ["bare with backslash escapes", String.raw`host=h password=a\ ${SECRET} user=u`, "host=h password=*** user=u"],
    ["unterminated quote", `host=h password='${SECRET} user=u`, "host=h password=***"],
    ["first key", `password=${SECRET} host=h`, "password=*** host=h"],
    ["sslpassword", `host=h sslpassword=${SECRET}`, "host=h sslpassword=***"],
    ["URL userinfo", `postgresql://u:${SECRET}@h:5432/db`, "postgresql://u:***@h:5432/db"],
    ["postgres:// URL", `postgres://u:${SECRET}@h/db`, "postgres://u:***@h/db"],
    [
      "URL userinfo with unencoded / (node-pg cannot parse it)",
      `postgresql://u:pa/${SECRET}@h/db`,
      "postgresql://u:***@h/db",
    ],
    ["URL userinfo with unencoded @", `postgresql://u:p@${SECRET}@h/db`, "postgresql://u:***@h/db"],
    [
      "URL userinfo with unencoded ?",
      `postgresql://u:p?${SECRET}@h/db?sslmode=require`,
      "postgresql://u:***@h/db?sslmode=require",
    ],
    [
      "URL query password",
      `postgresql:///postgres?host=/tmp/x&password=${SECRET}&port=5433`,
      "postgresql:///postgres?host=/tmp/x&password=***&port=5433",
    ],
    ["URL query password first", `postgresql:///db?password=${SECRET}`, "postgresql:///db?password=***"],
    [
      "URL query percent-encoded key",
      `postgresql:///db?host=/tmp&pass%77ord=${SECRET}`,
      "postgresql:///db?host=/tmp&pass%77ord=***",
    ],
    [
      "URL query sslpassword",
      `postgresql:///db?sslpassword=${SECRET}&sslmode=require`,
      "postgresql:///db?sslpassword=***&sslmode=require",
    ],
    [
      "URL query password with unencoded &",
      `postgresql:///db?password=a&${SECRET}&port=1`,
      "postgresql:///db?password=***&port=1",
    ],
    [
      "URL query after @ in another value",
      `postgresql://h/db?application_name=a@b&password=${SECRET}`,
      "postgresql://h/db?application_name=a@b&password=***",
    ],
    ["URL with leading space", ` postgresql://u:${SECRET}@h/db`, " postgresql://u:***@h/db"],
    ["URL as dbname value", `dbname=postgresql://u:${SECRET}@h/db port=1`, "dbname=postgresql://u:***@h/db port=1"],
  ];
  for (const [what, conninfo, masked] of cases) {
    test(what, () => {
      const out = maskConninfo(conninfo);
      assert.ok(!out.includes(SECRET), `${conninfo} -> ${out}`);
      assert.equal(out, masked);
    });
  }

  test("strings without a password are unchanged", () => {
    for (const s of [
      "host=h port=1 user=password dbname=d",
      "postgresql://u@h:5432/db?sslmode=require",
      "postgresql:///db?host=/tmp",
    ]) {
      assert.equal(maskConninfo(s), s);
    }
  });

  test("describeConn masks a URL's query password", () => {
    const d = describeConn(parseConninfo(`postgresql:///postgres?host=/tmp&password=${SECRET}`, WHERE));
    assert.ok(!d.includes(SECRET), d);
  });

  test("a connection string that fails to parse is shown masked in the error", () => {
    assert.throws(
      () => parseConninfo(`host=h password='${SECRET} oops' user`, WHERE),
      (err: unknown) => err instanceof ConfigError && !err.message.includes(SECRET) && err.message.includes(WHERE),
    );
  });
});
