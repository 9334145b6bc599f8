/** src/storage/repository/sqlite/sql-split.ts: statements at top-level semicolons only, and each statement's verb. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import Database from "better-sqlite3";
import { splitSql } from "../../src/storage/repository/sqlite/sql-split.js";

const sqls = (s: string) => splitSql(s).map((x) => x.sql);
const verbs = (s: string) => splitSql(s).map((x) => x.verb);

test("plain statements; trailing, repeated and empty semicolons give no empty statements", () => {
  assert.equal(sqls("SELECT 1; SELECT 2"), ["SELECT 1", "SELECT 2"]);
  assert.equal(sqls("SELECT 1;;; ; \n SELECT 2;\n;"), ["SELECT 1", "SELECT 2"]);
  assert.equal(sqls(""), []);
  assert.equal(sqls("  ;\n; "), []);
  assert.equal(sqls("-- only a comment\n/* and another */"), []);
  assert.equal(sqls("SELECT 1; -- trailing comment"), ["SELECT 1"]);
});

test("semicolons inside string literals, quoted identifiers and comments do not split", () => {
  assert.equal(sqls(`SELECT 'a;b', 'it''s; fine'; SELECT 2`), [`SELECT 'a;b', 'it''s; fine'`, "SELECT 2"]);
  assert.equal(sqls(`SELECT "x;y", "a""b;c" FROM t; SELECT 2`), [`SELECT "x;y", "a""b;c" FROM t`, "SELECT 2"]);
  assert.equal(sqls("SELECT `q;r` FROM [s;t]; SELECT 2"), ["SELECT `q;r` FROM [s;t]", "SELECT 2"]);
  assert.equal(sqls("SELECT 1 -- a; b\n+ 1; SELECT 2"), ["SELECT 1 -- a; b\n+ 1", "SELECT 2"]);
  assert.equal(sqls("SELECT /* a; b */ 1; SELECT 2"), ["SELECT /* a; b */ 1", "SELECT 2"]);
  assert.equal(sqls("SELECT x'00;'; SELECT 2"), ["SELECT x'00;'", "SELECT 2"]);
});

test("comment markers inside strings are text, not comments", () => {
  assert.equal(sqls(`SELECT '--'; SELECT '/*'; SELECT 3`), [`SELECT '--'`, `SELECT '/*'`, "SELECT 3"]);
});

test("unterminated quotes and comments run to the end without throwing", () => {
  assert.equal(sqls("SELECT 1 /* open ; comment"), ["SELECT 1 /* open ; comment"]);
  assert.equal(sqls("SELECT 'open ; string"), ["SELECT 'open ; string"]);
  assert.equal(sqls("SELECT [open ; ident"), ["SELECT [open ; ident"]);
});

test("CREATE TRIGGER keeps its BEGIN ... END body together", () => {
  const trig = "CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO log VALUES (NEW.a); UPDATE c SET n = n + 1; END";
  assert.equal(sqls(`${trig}; INSERT INTO t VALUES (1)`), [trig, "INSERT INTO t VALUES (1)"]);
  const temp = `create temp trigger if not exists "x;y" before delete on [a;b] begin select raise(abort, 'no;'); end`;
  assert.equal(sqls(`${temp};delete from a`), [temp, "delete from a"]);
  const temporary = "CREATE TEMPORARY TRIGGER t2 AFTER UPDATE ON t BEGIN SELECT 1; SELECT 2; END";
  assert.equal(sqls(temporary + ";"), [temporary]);
});

test("CASE ... END inside a trigger (in WHEN and in the body) does not end the body", () => {
  const trig =
    "CREATE TRIGGER tr AFTER UPDATE ON t WHEN CASE WHEN NEW.a > 0 THEN 1 ELSE 0 END BEGIN " +
    "INSERT INTO log VALUES (CASE NEW.a WHEN 1 THEN 'one;' ELSE 'other' END); " +
    "UPDATE c SET n = CASE WHEN n > 9 THEN 0 ELSE n + 1 END; END";
  assert.equal(sqls(`${trig}; SELECT 1`), [trig, "SELECT 1"]);
});

test("a word that only contains END or BEGIN is not a keyword", () => {
  const trig = "CREATE TRIGGER end_log AFTER INSERT ON t BEGIN INSERT INTO t_end VALUES (1); END";
  assert.equal(sqls(`${trig}; SELECT 1`), [trig, "SELECT 1"]);
});

test("a table with columns named trigger and begin is not a trigger", () => {
  const script = "CREATE TABLE t(trigger TEXT, begin INT); INSERT INTO t VALUES ('a', 1)";
  assert.equal(sqls(script), ["CREATE TABLE t(trigger TEXT, begin INT)", "INSERT INTO t VALUES ('a', 1)"]);
  // SQLite accepts these names, so the split is what a user would run.
  const db = new Database(":memory:");
  for (const s of sqls(script)) db.prepare(s).run();
  assert.equal(db.prepare("SELECT * FROM t").all(), [{ trigger: "a", begin: 1 }]);
  db.close();
});

test("CASE ... END outside a trigger does not matter (no semicolons there)", () => {
  assert.equal(sqls("SELECT CASE WHEN 1 THEN 2 END; SELECT 3"), ["SELECT CASE WHEN 1 THEN 2 END", "SELECT 3"]);
});

test("transaction statements split like any other (execute refuses them by verb)", () => {
  assert.equal(verbs("BEGIN; INSERT INTO t VALUES (1); COMMIT"), ["BEGIN", "INSERT", "COMMIT"]);
  assert.equal(verbs("begin immediate; end"), ["BEGIN", "END"]);
});

test("verbs: the first keyword in upper case, after comments and whitespace", () => {
  assert.equal(
    verbs("  insert into t values (1);\n-- note\n/* block */ Update t set a = 2; with x as (select 1) select * from x; Drop table t; attach 'f' as g; vacuum"),
    ["INSERT", "UPDATE", "WITH", "DROP", "ATTACH", "VACUUM"],
  );
  assert.equal(verbs("(SELECT 1)"), [""], "no leading keyword gives an empty verb");
});

test("every statement of a split script prepares on its own", () => {
  const db = new Database(":memory:");
  const script = `
    CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT);
    CREATE TABLE log(x TEXT);
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
      INSERT INTO log VALUES (CASE WHEN NEW.b LIKE '%;%' THEN 'semi;' ELSE 'plain' END);
    END;
    INSERT INTO t(b) VALUES ('a;b'), ('c');
    -- done;
  `;
  for (const s of splitSql(script)) db.prepare(s.sql).run();
  assert.equal(db.prepare("SELECT x FROM log ORDER BY rowid").pluck().all(), ["semi;", "plain"]);
  db.close();
});

test.run();
