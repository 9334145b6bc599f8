/**
 * The PostgreSQL statement splitter: semicolons inside quotes, dollar quotes and comments do not
 * split. And what capture replays of a query string its DDL triggers recorded (replayable).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { replayable } from "../../src/storage/repository/postgres/changes.js";
import { splitSql } from "../../src/storage/repository/postgres/sql-split.js";

const split = (s: string) => splitSql(s).map((x) => x.sql);

test("plain statements, empty ones dropped, verbs upper-cased", () => {
  assert.equal(splitSql("select 1; ;  insert into t values (1);"), [
    { sql: "select 1", verb: "SELECT" },
    { sql: "insert into t values (1)", verb: "INSERT" },
  ]);
});

test("quotes, E'' escapes, identifiers, dollar quotes and comments hide semicolons", () => {
  assert.equal(split("SELECT 'a;b', 'it''s;'; SELECT 2"), ["SELECT 'a;b', 'it''s;'", "SELECT 2"]);
  assert.equal(split("SELECT E'x\\';y'; SELECT 3"), ["SELECT E'x\\';y'", "SELECT 3"]);
  assert.equal(split(`SELECT 1 AS "a;b"; SELECT 4`), [`SELECT 1 AS "a;b"`, "SELECT 4"]);
  assert.equal(split("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$; SELECT 5"), [
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$",
    "SELECT 5",
  ]);
  assert.equal(split("DO $body$ BEGIN PERFORM 1; END $body$; SELECT 6"), ["DO $body$ BEGIN PERFORM 1; END $body$", "SELECT 6"]);
  assert.equal(split("SELECT $1; SELECT 7"), ["SELECT $1", "SELECT 7"]);
  assert.equal(split("SELECT 1 -- a; comment\n; /* x; /* nested; */ y; */ SELECT 8"), ["SELECT 1 -- a; comment", "/* x; /* nested; */ y; */ SELECT 8"]);
  assert.is(splitSql("/* c */ -- d\n (SELECT 1)")[0].verb, "SELECT");
  assert.equal(splitSql("-- only a comment"), []);
});

test("replayable: a recorded query string without its DML, transaction control, session settings and server-wide objects", () => {
  assert.is(replayable("CREATE TABLE t(id int PRIMARY KEY)"), "CREATE TABLE t(id int PRIMARY KEY)");
  assert.is(
    replayable("BEGIN; CREATE TABLE t(id int); INSERT INTO t VALUES (1); SET LOCAL work_mem = '8MB'; ALTER TABLE t ADD COLUMN v text; UPDATE t SET v = ';'; COMMIT;"),
    "CREATE TABLE t(id int);\nALTER TABLE t ADD COLUMN v text",
  );
  assert.is(replayable("/* why */ create index concurrently t_v on t(v)"), "create index t_v on t(v)", "CONCURRENTLY cannot run in the applying transaction");
  assert.is(replayable("DROP INDEX CONCURRENTLY IF EXISTS t_v"), "DROP INDEX IF EXISTS t_v");
  assert.is(replayable("CREATE UNIQUE INDEX CONCURRENTLY u ON t(v)"), "CREATE UNIQUE INDEX u ON t(v)");
  assert.is(replayable("CREATE ROLE app; CREATE TABLE t(x int); GRANT SELECT ON t TO app; ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app"), "CREATE TABLE t(x int)");
  assert.is(replayable("CREATE PUBLICATION p FOR ALL TABLES; DROP EVENT TRIGGER e; ALTER SYSTEM SET work_mem = '1MB'"), null);
  assert.is(replayable("SELECT create_things(); DO $$ BEGIN EXECUTE 'CREATE TABLE x(i int)'; END $$"), "SELECT create_things();\nDO $$ BEGIN EXECUTE 'CREATE TABLE x(i int)'; END $$", "functions and DO blocks may hold the DDL");
  assert.is(replayable("-- make it\n(SELECT make_table())"), "-- make it\n(SELECT make_table())", "kept as written");
  assert.is(replayable("TRUNCATE t; COPY t FROM STDIN; WITH x AS (DELETE FROM t RETURNING *) SELECT 1 FROM x"), null, "changes arrive as rows");
});

test.run();
