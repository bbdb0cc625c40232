/** libpq connection strings as master_db and primary_conninfo hold them. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { describeConn, parseConninfo } from "../../src/pg/conninfo";
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
