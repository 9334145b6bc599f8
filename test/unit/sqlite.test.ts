/**
 * src/storage/repository/sqlite/repository.ts against real SQLite files in a temp directory: capture by triggers,
 * apply on a replica, snapshots, and the errors a master and a replica meet.
 *
 * `ship` moves what the master captured to the replica the way ferry does (JSON through the
 * spool, one batch per call), so "dumps equal" checks the whole capture -> apply path.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { SqliteRepository } from "../../src/storage/repository/sqlite/repository.js";
import { dumpFile } from "../../src/storage/repository/sqlite/schema.js";
import { idsAscend } from "../../src/storage/repository/sqlite/change-table.js";
import { newWriteGate, setAccepting } from "../../src/storage/repository/write-gate.js";
import { RepositoryError, FerryError } from "../../src/errors.js";
import type { CapturedPart, Change, ChunkSum } from "../../src/storage/repository/types.js";

let dir = "";
const open: SqliteRepository[] = [];
const conns: Database.Database[] = [];

test.before.each(() => {
  dir = mkdtempSync(join(tmpdir(), "ferry-sqlite-test-"));
});
test.after.each(async () => {
  for (const r of open.splice(0)) await r.close();
  for (const c of conns.splice(0)) if (c.open) c.close();
  rmSync(dir, { recursive: true, force: true });
});

async function repo(name: string): Promise<SqliteRepository> {
  const r = new SqliteRepository(`sqlite:${join(dir, name)}`);
  open.push(r);
  await r.init();
  return r;
}

/** A separate connection to a repository file: an outside writer or a reader. */
function conn(r: SqliteRepository, opts: Database.Options = {}): Database.Database {
  const c = new Database(r.path, { timeout: 5000, ...opts });
  conns.push(c);
  return c;
}

/**
 * readChanges collected: [position, Change] pairs, read in parts of one change each (a part's
 * count, first and last must say so), and the position the read reached.
 */
async function readAll(r: SqliteRepository, from: number, upto?: number): Promise<{ changes: [number, Change][]; reached: number }> {
  const read = r.readChanges(from, { upto, partBytes: 1 });
  const changes: [number, Change][] = [];
  for await (const part of read) {
    const [c, ...more] = JSON.parse(Buffer.from(part.data).toString()) as Change[];
    assert.equal([more.length, part.count, part.first, part.ddl], [0, 1, part.last, c[1] === "X"], `part ending at ${part.last}`);
    changes.push([part.last, c]);
  }
  return { changes, reached: read.reached() };
}
const changesOf = async (r: SqliteRepository, from: number, upto?: number) => (await readAll(r, from, upto)).changes;
const idsOf = async (r: SqliteRepository, from: number, upto?: number) => (await changesOf(r, from, upto)).map(([id]) => id);

/** A master with capture on and an empty replica, and a function that ships what was captured since the last call. */
async function pair() {
  const master = await repo("master.db");
  await master.installCapture();
  const replica = await repo("replica.db");
  let last = 0;
  let lsn = 0;
  const ship = async (): Promise<[number, Change][]> => {
    const changes = await changesOf(master, last);
    if (changes.length === 0) return changes;
    last = changes[changes.length - 1][0];
    const spooled = changes.map((c) => c[1]);
    await replica.applyBatches([{ lsn: ++lsn, epoch: 1, changes: spooled }]);
    return changes;
  };
  const sql = (script: string, params?: unknown) => master.executeScript(script, params, () => {});
  const same = () => assert.fixture(dumpFile(replica.path), dumpFile(master.path));
  return { master, replica, ship, sql, same };
}

const ops = (changes: [number, Change][]) => changes.map(([, c]) => `${c[0]}:${c[1]}${c[2] === null ? "" : ` ${c[2]}`}`);

function throwsCode(fn: () => unknown, code: string, match?: string): FerryError {
  try {
    fn();
  } catch (err) {
    assert.instance(err, FerryError);
    assert.is((err as FerryError).code, code, (err as Error).message);
    if (match) assert.match((err as Error).message, match);
    return err as FerryError;
  }
  assert.unreachable(`expected ${code}`);
  throw new Error("unreachable");
}

/** throwsCode for an async call: it must reject with a FerryError of `code` (and `match` in its message). */
async function rejectsCode(fn: () => Promise<unknown>, code: string, match?: string): Promise<FerryError> {
  try {
    await fn();
  } catch (err) {
    assert.instance(err, FerryError);
    assert.is((err as FerryError).code, code, (err as Error).message);
    if (match) assert.match((err as Error).message, match);
    return err as FerryError;
  }
  assert.unreachable(`expected ${code}`);
  throw new Error("unreachable");
}

// --- capture and apply ------------------------------------------------------------------------

test("rowid table without a key: INSERT / UPDATE / UPDATE of the rowid / DELETE are captured and replayed", async () => {
  const { ship, sql, same } = await pair();
  sql("CREATE TABLE plain(a TEXT, b INTEGER)");
  await ship();
  sql("INSERT INTO plain VALUES ('x', 1), ('y', 2), ('z', 3)");
  sql("UPDATE plain SET b = 20 WHERE a = 'y'");
  sql("UPDATE plain SET rowid = 100 WHERE a = 'z'");
  sql("DELETE FROM plain WHERE a = 'x'");
  const changes = await ship();
  assert.equal(ops(changes), ["plain:I", "plain:I", "plain:I", "plain:U", "plain:U [3]", "plain:D [1]"]);
  assert.equal(JSON.parse(changes[0][1][3]!), [1, "x", 1], "the image starts with the rowid");
  same();
  assert.ok(dumpFile(join(dir, "replica.db")).includes("plain|'z'|3"));
});

test("INTEGER PRIMARY KEY table: the key is the rowid alias; a key change deletes the old key", async () => {
  const { ship, sql, same } = await pair();
  sql("CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER)");
  await ship();
  sql("INSERT INTO acct VALUES (1, 'a', 10), (2, 'b', 20)");
  sql("UPDATE acct SET balance = balance + 5 WHERE id = 1");
  sql("UPDATE acct SET id = 7 WHERE id = 2");
  sql("DELETE FROM acct WHERE id = 1");
  const changes = await ship();
  assert.equal(ops(changes), ["acct:I", "acct:I", "acct:U", "acct:U [2]", "acct:D [1]"]);
  assert.equal(JSON.parse(changes[0][1][3]!), [1, "a", 10], "no separate rowid in the image");
  same();
});

test("WITHOUT ROWID table with a composite key, including a key change", async () => {
  const { ship, sql, same } = await pair();
  sql("CREATE TABLE tags(ns TEXT, name TEXT, weight REAL, PRIMARY KEY(name, ns)) WITHOUT ROWID");
  await ship();
  sql("INSERT INTO tags VALUES ('a', 'x', 1.5), ('a', 'y', 2.5), ('b', 'x', 3.5)");
  sql("UPDATE tags SET weight = 9 WHERE ns = 'a' AND name = 'x'");
  sql("UPDATE tags SET ns = 'c' WHERE ns = 'a' AND name = 'y'");
  sql("DELETE FROM tags WHERE ns = 'b'");
  const changes = await ship();
  assert.equal(ops(changes), ["tags:I", "tags:I", "tags:I", "tags:U", `tags:U ["y","a"]`, `tags:D ["x","b"]`]);
  same();
});

test("STRICT, WITHOUT ROWID tables (options in any order) capture and replay", async () => {
  const { ship, sql, same } = await pair();
  sql("CREATE TABLE s1(k TEXT PRIMARY KEY, v INTEGER) STRICT, WITHOUT ROWID; CREATE TABLE s2(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID, STRICT");
  sql("INSERT INTO s1 VALUES ('a', 1); INSERT INTO s2 VALUES ('b', 2); UPDATE s1 SET v = 3; DELETE FROM s2");
  assert.equal(ops(await ship()).slice(2), ["s1:I", "s2:I", "s1:U", `s2:D ["b"]`]);
  same();
});

test("an outside writer (its own connection) is captured like ferry's own SQL", async () => {
  const { ship, sql, same, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  await ship();
  const w = conn(master);
  w.transaction(() => {
    for (let i = 0; i < 50; i++) w.prepare("INSERT INTO t VALUES (?, ?)").run(i, `v${i}`);
  })();
  w.prepare("UPDATE t SET v = 'changed' WHERE id % 10 = 0").run();
  assert.is((await ship()).length, 55);
  same();
});

test("exact types: blobs (empty too), reals that look integral, big integers, text, NULL", async () => {
  const { ship, sql, same, master, replica } = await pair();
  sql("CREATE TABLE v(id INTEGER PRIMARY KEY, x, note TEXT)");
  const w = conn(master);
  w.defaultSafeIntegers(true);
  const ins = w.prepare("INSERT INTO v VALUES (?, ?, ?)");
  const values: [bigint, unknown][] = [
    [1n, Buffer.from([0, 1, 2, 255, 0])],
    [2n, Buffer.alloc(0)],
    [3n, 1.0],
    [4n, 0.1 + 0.2],
    [5n, 2n ** 53n + 1n],
    [6n, 2n ** 63n - 1n],
    [7n, -(2n ** 63n)],
    [8n, "it's \"quoted\" ; -- ünïcödé 🚀"],
    [9n, null],
    [10n, '["x","00"]'],
    [11n, 1e300],
    [12n, -0.000001],
  ];
  w.transaction(() => {
    for (const [id, x] of values) ins.run(id, x, typeof x);
  })();
  w.prepare("UPDATE v SET x = ? WHERE id = 5").run(2n ** 62n + 3n);
  await ship();
  same();
  const read = (r: SqliteRepository) => {
    const c = conn(r, { readonly: true });
    c.defaultSafeIntegers(true);
    return c.prepare("SELECT id, typeof(x) AS t, x FROM v ORDER BY id").all();
  };
  const got = read(replica);
  assert.equal(got, read(master));
  const types = (got as { t: string }[]).map((r) => r.t);
  assert.equal(types, ["blob", "blob", "real", "real", "integer", "integer", "integer", "text", "null", "text", "real", "real"]);
  const byId = new Map((got as { id: bigint; x: unknown }[]).map((r) => [Number(r.id), r.x]));
  assert.is(byId.get(4), 0.1 + 0.2);
  assert.is(byId.get(5), 2n ** 62n + 3n);
  assert.is(byId.get(6), 2n ** 63n - 1n);
  assert.equal([...(byId.get(1) as Buffer)], [0, 1, 2, 255, 0]);
  assert.is((byId.get(2) as Buffer).length, 0);
});

test("a big integer primary key (> 2^53) keeps its identity through update and delete", async () => {
  const { ship, sql, same, master } = await pair();
  sql("CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT)");
  const w = conn(master);
  w.defaultSafeIntegers(true);
  const a = 2n ** 60n + 1n;
  const b = 2n ** 60n + 2n;
  w.prepare("INSERT INTO big VALUES (?, 'a'), (?, 'b')").run(a, b);
  await ship();
  w.prepare("UPDATE big SET v = 'a2' WHERE id = ?").run(a);
  w.prepare("DELETE FROM big WHERE id = ?").run(b);
  await ship();
  same();
  assert.match(dumpFile(join(dir, "replica.db")), `big|${a}|'a2'`);
});

test("applyBatches is one transaction that records the position; a failing change applies nothing", async () => {
  const { ship, sql, replica } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')");
  await ship();
  assert.equal(await replica.appliedPosition(), { lsn: 1, epoch: 1 });
  const before = dumpFile(replica.path);
  const good: Change = ["t", "I", null, JSON.stringify([2, "b"])];
  const bad: Change = ["missing", "I", null, JSON.stringify([1])];
  await rejectsCode(
    () =>
      replica.applyBatches([
        { lsn: 2, epoch: 1, changes: [good] },
        { lsn: 3, epoch: 2, changes: [bad] },
      ]),
    "SQL_ERROR",
  );
  assert.fixture(dumpFile(replica.path), before);
  assert.equal(await replica.appliedPosition(), { lsn: 1, epoch: 1 });
  await replica.applyBatches([
    { lsn: 2, epoch: 1, changes: [good] },
    { lsn: 3, epoch: 2, changes: [] },
  ]);
  assert.equal(await replica.appliedPosition(), { lsn: 3, epoch: 2 });
});

test("upserts bound many rows per statement keep the order of changes: repeated keys, deletes and key changes between them, DDL in the batch", async () => {
  const { ship, sql, replica, same } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB); CREATE TABLE u(a INTEGER, b TEXT, PRIMARY KEY(a, b)) WITHOUT ROWID; CREATE TABLE r(x)");
  await ship();
  // 203 rows in one run (64 + 64 + 64 + 8 + 2 + 1 rows per statement), the last ones written twice.
  let script = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) INSERT INTO t SELECT i, 'v' || i, CASE WHEN i % 7 = 0 THEN x'00ff' END FROM n;";
  script += "INSERT OR REPLACE INTO t VALUES (199, 'again', NULL), (200, 'again', 1.0), (201, 'new', 9223372036854775807);";
  script += "INSERT INTO u VALUES (1, 'a'), (2, 'b'); DELETE FROM t WHERE id = 5; INSERT INTO t VALUES (5, 'back', NULL); DELETE FROM t WHERE id = 7;";
  script += "UPDATE t SET id = 1000 WHERE id = 6; INSERT INTO t VALUES (6, 'six again', NULL); INSERT INTO r VALUES (1), (1), (2); DELETE FROM r WHERE rowid = 2;";
  script += "ALTER TABLE t ADD COLUMN w REAL; INSERT INTO t VALUES (2000, 'wide', NULL, 0.5); UPDATE t SET w = 2.0 WHERE id < 4;";
  sql(script);
  const shipped = await ship();
  assert.ok(shipped.length > 200, `${shipped.length} changes in one batch`);
  same();
  const rows = conn(replica, { readonly: true });
  assert.equal(rows.prepare("SELECT id, v, w FROM t WHERE id IN (5, 6, 7, 199, 1000, 2000) ORDER BY id").all(), [
    { id: 5, v: "back", w: null },
    { id: 6, v: "six again", w: null },
    { id: 199, v: "again", w: null },
    { id: 1000, v: "v6", w: null },
    { id: 2000, v: "wide", w: 0.5 },
  ]);
  // A row image that does not fit the replica's table applies nothing.
  const before = dumpFile(replica.path);
  const fits: Change = ["t", "I", null, JSON.stringify([3000, "fits", null, null])];
  const short: Change = ["t", "I", null, JSON.stringify([3001, "short"])];
  await rejectsCode(() => replica.applyBatches([{ lsn: 99, epoch: 1, changes: [fits, short] }]), "SCHEMA_MISMATCH", "has 2 values, the table 4");
  assert.fixture(dumpFile(replica.path), before);
});

test("a replica applies an updated parent row without cascading to its children (foreign keys)", async () => {
  const { ship, sql, same } = await pair();
  sql(`CREATE TABLE p(id INTEGER PRIMARY KEY, n TEXT);
       CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id) ON DELETE CASCADE)`);
  sql("INSERT INTO p VALUES (1, 'a'), (2, 'b'); INSERT INTO c VALUES (10, 1), (20, 2)");
  await ship();
  sql("UPDATE p SET n = 'a2' WHERE id = 1");
  await ship();
  same();
  sql("DELETE FROM p WHERE id = 2"); // the cascade on the master is captured as its own D
  assert.equal(ops(await ship()).sort(), ["c:D [20]", "p:D [2]"]);
  same();
});

test("user triggers do not fire again on a replica, are there between batches, and replicated DDL on them applies", async () => {
  // The master captures both the row and what its trigger wrote; the replica must apply both
  // without its own copy of the trigger firing.
  const { ship, sql, same, replica } = await pair();
  sql(`CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT);
       CREATE TABLE audit(id INTEGER PRIMARY KEY, what TEXT);
       CREATE TRIGGER a_ins AFTER INSERT ON a BEGIN INSERT INTO audit(what) VALUES ('ins ' || NEW.id); END`);
  sql("INSERT INTO a VALUES (1, 'x'); INSERT INTO a VALUES (2, 'y')");
  await ship();
  same();
  const r = conn(replica, { readonly: true });
  assert.is(r.prepare("SELECT count(*) FROM audit").pluck().get(), 2);
  const triggers = () => r.prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name NOT LIKE 'ferry%' ORDER BY name").pluck().all();
  assert.equal(triggers(), ["a_ins"], "the replica holds the trigger, ready for a promotion");
  sql(`CREATE TRIGGER a_del AFTER DELETE ON a BEGIN INSERT INTO audit(what) VALUES ('del ' || OLD.id); END;
       DELETE FROM a WHERE id = 1;
       DROP TRIGGER a_ins;
       INSERT INTO a VALUES (3, 'z')`);
  await ship();
  same();
  assert.equal(triggers(), ["a_del"]);
  assert.equal(r.prepare("SELECT what FROM audit ORDER BY id").pluck().all(), ["ins 1", "ins 2", "del 1"]);
});

// --- DDL and execute --------------------------------------------------------------------------

test("DDL through executeScript() is captured, new tables get capture triggers, ALTER refreshes them", async () => {
  const { ship, sql, same, master } = await pair();
  const out = sql("CREATE TABLE n(id INTEGER PRIMARY KEY, a TEXT)");
  assert.ok(out.ddl);
  assert.ok(out.lastChangeId > 0);
  const triggers = () =>
    conn(master, { readonly: true })
      .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'ferry_cap_%' ORDER BY name")
      .pluck()
      .all();
  assert.equal(triggers(), [
    "ferry_cap_d_ferry_heartbeat",
    "ferry_cap_d_ferry_requests",
    "ferry_cap_d_n",
    "ferry_cap_i_ferry_heartbeat",
    "ferry_cap_i_ferry_requests",
    "ferry_cap_i_n",
    "ferry_cap_u_ferry_heartbeat",
    "ferry_cap_u_ferry_requests",
    "ferry_cap_u_n",
  ]);
  conn(master).prepare("INSERT INTO n VALUES (1, 'x')").run();
  sql("ALTER TABLE n ADD COLUMN b INTEGER DEFAULT 7");
  conn(master).prepare("INSERT INTO n VALUES (2, 'y', 8)").run();
  sql("CREATE INDEX n_a ON n(a); CREATE VIEW nv AS SELECT a FROM n");
  const changes = await ship();
  assert.equal(
    changes.map(([, c]) => c[1]),
    ["X", "I", "X", "I", "X", "X"],
  );
  assert.is(changes[0][1][3], "CREATE TABLE n(id INTEGER PRIMARY KEY, a TEXT)");
  assert.equal(JSON.parse(changes[3][1][3]!), [2, "y", 8], "the image has the added column");
  same();
  sql("DROP TABLE n");
  await ship();
  same();
  assert.not.ok(triggers().some((t) => String(t).endsWith("_n")));
});

test("executeScript returns rows of reads and counts of writes", async () => {
  const { sql } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB, big INTEGER)");
  const w = sql("INSERT INTO t VALUES (1, x'0aff', 9007199254740993)");
  assert.is(w.results[0].changes, 1);
  assert.is(w.results[0].lastInsertRowid, 1);
  const r = sql("SELECT id, b, big FROM t");
  assert.equal(r.results[0].columns, ["id", "b", "big"]);
  assert.is(r.lastChangeId, 0, "a read captures nothing");
  assert.is(r.ddl, false);
  const row = r.results[0].rows![0];
  assert.is(row[0], 1);
  assert.equal(row[1], { $blob: "0aff" });
  const p = sql("SELECT ? + 1 AS n", [41]);
  assert.equal(p.results[0].rows, [[42]]);
});

test("BEGIN, COMMIT, SAVEPOINT, ATTACH, DETACH and VACUUM are refused with SQL_ERROR before anything runs", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  const seq = await master.changeSeq();
  for (const s of [
    "BEGIN; INSERT INTO t VALUES (1); COMMIT",
    "INSERT INTO t VALUES (1); COMMIT",
    "SAVEPOINT a",
    "ATTACH 'other.db' AS o",
    "INSERT INTO t VALUES (1); DETACH o",
    "VACUUM",
  ]) {
    throwsCode(() => sql(s), "SQL_ERROR");
  }
  assert.is(await master.changeSeq(), seq);
  assert.equal(sql("SELECT count(*) FROM t").results[0].rows, [[0]]);
  throwsCode(() => sql("  ;  "), "USAGE");
});

test("a failing statement rolls back the whole script: rows, DDL, capture triggers and captured changes", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a')");
  const before = dumpFile(master.path);
  const seq = await master.changeSeq();
  throwsCode(() => sql("INSERT INTO t VALUES (2, 'b'); CREATE TABLE u(x); INSERT INTO u VALUES (1); INSERT INTO nosuch VALUES (1)"), "SQL_ERROR", "no such table: nosuch");
  throwsCode(() => sql("UPDATE t SET v = 'z'; INSERT INTO t VALUES (1, 'dup')"), "SQL_ERROR", "UNIQUE");
  assert.fixture(dumpFile(master.path), before);
  assert.is(await master.changeSeq(), seq);
  assert.is(await master.pendingChanges(seq), 0);
  const names = conn(master, { readonly: true }).prepare("SELECT name FROM sqlite_master WHERE name LIKE '%u'").pluck().all();
  assert.equal(names, []);
  // The connection is usable afterwards and capture still works.
  sql("INSERT INTO t VALUES (3, 'c')");
  assert.is(await master.pendingChanges(seq), 1);
});

test("beforeCommit can veto: its error rolls the script back", async () => {
  const { master } = await pair();
  master.executeScript("CREATE TABLE t(id INTEGER PRIMARY KEY)", undefined, () => {});
  assert.throws(
    () =>
      master.executeScript("INSERT INTO t VALUES (1)", undefined, () => {
        throw new RepositoryError("REPO_UNAVAILABLE", "fenced");
      }),
    (e: Error) => e.message === "fenced",
  );
  assert.equal(master.executeScript("SELECT count(*) FROM t", undefined, () => {}).results[0].rows, [[0]]);
});

test("a write's request key: the same key again answers from the record and runs nothing", async () => {
  const { master, sql } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)");
  const run = (script: string, id: string) => master.executeScript(script, undefined, () => {}, { id, node: "m1" });
  const first = run("INSERT INTO t(v) VALUES ('a')", "key-00000001");
  const again = run("INSERT INTO t(v) VALUES ('a')", "key-00000001");
  assert.is(first.replayed, undefined);
  assert.equal(again.replayed, { by: "m1" });
  assert.equal(again.results, first.results);
  assert.is(again.lastChangeId, first.lastChangeId);
  assert.equal(sql("SELECT count(*) FROM t").results[0].rows, [[1]]);
  // Another key is another write; a read or a failed write leaves no record, so its retry runs.
  run("INSERT INTO t(v) VALUES ('a')", "key-00000002");
  assert.equal(sql("SELECT count(*) FROM t").results[0].rows, [[2]]);
  assert.is(run("SELECT count(*) FROM t", "key-00000003").replayed, undefined);
  assert.is(run("SELECT count(*) FROM t", "key-00000003").replayed, undefined);
  throwsCode(() => run("INSERT INTO t(v) VALUES ('b'); INSERT INTO nosuch VALUES (1)", "key-00000004"), "SQL_ERROR");
  assert.is(run("INSERT INTO t(v) VALUES ('b')", "key-00000004").replayed, undefined);
  assert.equal(sql("SELECT count(*) FROM t").results[0].rows, [[3]]);
  // A vetoed commit (fenced) records nothing either.
  assert.throws(() => master.executeScript("INSERT INTO t(v) VALUES ('c')", undefined, () => { throw new RepositoryError("REPO_UNAVAILABLE", "fenced"); }, { id: "key-00000005", node: "m1" }));
  assert.is(run("INSERT INTO t(v) VALUES ('c')", "key-00000005").replayed, undefined);
  assert.equal(sql("SELECT count(*) FROM t").results[0].rows, [[4]]);
});

test("a write's request key is replicated: a replica promoted later answers the retry from it, with no change id of its own", async () => {
  const { master, replica, ship, sql } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)");
  await ship();
  const first = master.executeScript("INSERT INTO t(v) VALUES ('a')", undefined, () => {}, { id: "key-1", node: "m1" });
  assert.ok((await ship()).some(([, c]) => c[0] === "ferry_requests" && c[1] === "I"), "the key travels with the write");
  await replica.installCapture(); // promoted
  const retry = replica.executeScript("INSERT INTO t(v) VALUES ('a')", undefined, () => {}, { id: "key-1", node: "s1" });
  assert.equal(retry.replayed, { by: "m1" });
  assert.equal(retry.results, first.results);
  assert.is(retry.lastChangeId, 0, "m1's change ids mean nothing in s1's file");
  assert.equal(replica.executeScript("SELECT count(*) FROM t", undefined, () => {}).results[0].rows, [[1]]);
  // A node resynced from a snapshot gets the keys too.
  const resynced = await repo("resynced.db");
  const reader = await master.openSnapshot();
  const writer = await resynced.restoreSnapshot(reader.header.schema);
  for (let chunk = await reader.next(1000); chunk; chunk = await reader.next(1000)) await writer.rows(chunk.table, chunk.rows);
  await reader.close();
  await writer.commit({ lsn: 2, epoch: 1 });
  assert.equal(resynced.executeScript("INSERT INTO t(v) VALUES ('a')", undefined, () => {}, { id: "key-1", node: "s2" }).replayed, { by: "m1" });
});

test("request keys older than 15 minutes are forgotten, newer ones kept", async () => {
  const { master, sql } = await pair();
  sql("CREATE TABLE t(v INTEGER)");
  const c = conn(master);
  const put = c.prepare("INSERT INTO ferry_requests(id, ts, node, last_change, results) VALUES (?, ?, 'm1', 1, '[]')");
  put.run("old-key-1", Date.now() - 20 * 60_000);
  put.run("old-key-2", Date.now() - 16 * 60_000);
  put.run("recent-key", Date.now() - 60_000);
  master.executeScript("INSERT INTO t VALUES (1)", undefined, () => {}, { id: "new-key-1", node: "m1" });
  const keys = c.prepare("SELECT id FROM ferry_requests ORDER BY rowid").pluck().all();
  assert.equal(keys, ["recent-key", "new-key-1"]);
});

test("readChanges ranges, pendingChanges, confirmCapture and changeSeq", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  for (let i = 1; i <= 5; i++) sql(`INSERT INTO t VALUES (${i})`);
  const all = await idsOf(master, 0);
  assert.is(all.length, 6);
  assert.is(await master.changeSeq(), all[5]);
  const range = await readAll(master, all[1], all[3]);
  assert.equal(range.changes.map(([id]) => id), [all[2], all[3]]);
  assert.is(range.reached, all[3], "the read reached its last change");
  assert.is(await master.pendingChanges(all[2]), 3);
  await master.confirmCapture(all[3]);
  assert.equal(await idsOf(master, 0), [all[4], all[5]], "the first confirmation releases every change up to it at once");
  await master.confirmCapture(all[4]);
  assert.equal(await idsOf(master, 0), [all[4], all[5]], "within 5 s of the last prune, and not behind, nothing more is released");
  assert.is(await master.changeSeq(), all[5], "ids are never reused after a prune");
});

test("readChanges parts: at most partBytes each (or one change), contiguous, together the changes one by one, and DDL flagged where it is", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO t SELECT i, printf('%.*c', i % 200, 'x') FROM n");
  sql("INSERT INTO t VALUES (-1, printf('%.*c', 5000, 'é'))");
  sql("CREATE INDEX t_v ON t(v)");
  const one = await changesOf(master, 0);
  const partBytes = 4096;
  const parts: CapturedPart[] = [];
  const read = master.readChanges(0, { partBytes });
  for await (const p of read) parts.push(p);
  const joined: Change[] = parts.flatMap((p) => JSON.parse(Buffer.from(p.data).toString()) as Change[]);
  assert.equal(joined, one.map(([, c]) => c), "the parts hold every change, in order");
  assert.is(read.reached(), one[one.length - 1][0]);
  for (const [i, p] of parts.entries()) {
    assert.ok(p.data.length <= partBytes || p.count === 1, `part ${i}: ${p.data.length} bytes, ${p.count} changes`);
    assert.is(p.ddl, (JSON.parse(Buffer.from(p.data).toString()) as Change[]).some((c) => c[1] === "X"), `part ${i}: DDL flag`);
    assert.is(p.first, i === 0 ? one[0][0] : parts[i - 1].last + 1, `part ${i} follows the one before`);
  }
  assert.is(parts.reduce((n, p) => n + p.count, 0), one.length);
  assert.is(parts.filter((p) => p.ddl).length, 2, "the CREATE TABLE's and the CREATE INDEX's parts");
  const big = parts.find((p) => p.count === 1 && p.data.length > partBytes);
  assert.ok(big, "a change larger than a part is a part of its own");
  assert.ok(parts.length < one.length / 10, `${parts.length} parts for ${one.length} changes: parts are filled, not one change each`);
});

test("a part's ids, joined in the order SQLite aggregated its rows, prove that order or send the read to the sorting query", () => {
  for (const ids of ["1", "1,2,3", "9,10,11", "7,100,101,100000"]) assert.ok(idsAscend(ids), ids);
  for (const ids of ["2,1", "1,3,2", "10,9", "5,5", "100,11"]) assert.not.ok(idsAscend(ids), ids);
});

test("compare of a rowid table: chunks of chunkRows in pages of maxChunks cover every row, another node's sums of those ranges agree, and one changed row shows in its range only", async () => {
  const a = await repo("cmp-a.db");
  const b = await repo("cmp-b.db");
  const rowids = [-9223372036854775808n, -5n, 0n, 9007199254740993n, 9223372036854775807n];
  for (let i = 1n; i <= 1000n; i++) rowids.push(i * 1000n);
  const fill = (r: SqliteRepository) => {
    const c = conn(r);
    c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB, x REAL); CREATE TABLE plain(v TEXT); INSERT INTO plain VALUES ('a'), ('b')");
    const ins = c.prepare("INSERT INTO t VALUES (?, ?, ?, ?)");
    c.transaction(() => rowids.forEach((id, i) => ins.run(id, i % 7 ? `v\n${id}` : null, i % 5 ? null : Buffer.from([i & 255]), i / 4)))();
    return c;
  };
  fill(a);
  const cb = fill(b);
  const ra = await a.openCompareRead();
  const chunks: ChunkSum[] = [];
  for (let after: string | null = null; ; ) {
    const page = await ra.chunks("t", { chunkRows: 251, after, upto: null, maxChunks: 3 });
    chunks.push(...page.chunks);
    if (page.done) break;
    assert.is(page.chunks.length, 3, "a page that is not the last holds maxChunks chunks");
    after = page.chunks[2].upto;
  }
  const plain = await ra.chunks("plain", { chunkRows: 1, after: null, upto: null, maxChunks: 10 });
  assert.equal(plain.chunks.map((c) => [c.upto, c.rows]), [["[1]", 1], [null, 1]], "a table without a key is cut by its rowid; the last chunk is open");
  await ra.close();
  assert.is(chunks.reduce((n, c) => n + c.rows, 0), rowids.length, "every row in one chunk");
  assert.equal(chunks.map((c) => c.rows), [251, 251, 251, 251, 1]);
  assert.equal(chunks.slice(1).map((c) => c.after), chunks.slice(0, -1).map((c) => c.upto), "contiguous ranges");
  assert.equal(chunks[3].upto, "[9007199254740993]", "rowids beyond 2^53 cut exactly");
  assert.is(chunks[chunks.length - 1].upto, null, "the last chunk is open");
  const sumsB = async () => {
    const rb = await b.openCompareRead();
    const s = await rb.sums("t", chunks.map(({ after, upto }) => ({ after, upto })));
    await rb.close();
    return s;
  };
  assert.equal(await sumsB(), chunks, "the other node's sums of the same ranges are the same");
  cb.prepare("UPDATE t SET x = 1.0 WHERE id = ?").run(500_000n);
  const differ = (await sumsB()).flatMap((s, i) => (s.sum === chunks[i].sum ? [] : [i]));
  const holding = chunks.findIndex((c) => c.upto === null || BigInt(JSON.parse(c.upto)[0]) >= 500_000n);
  assert.equal(differ, [holding], "only the range holding the changed row differs");
});

test("confirmCapture with many changes after the confirmed ones deletes at most 10,000 at a time and comes back at once while it is behind; all confirmed, only the highest row stays", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40005) INSERT INTO t SELECT i FROM n");
  const all = await idsOf(master, 0);
  assert.is(all.length, 40_006, "the CREATE and 40,005 rows");
  const seq = await master.changeSeq();
  assert.is(seq, all[all.length - 1]);
  // 22,000 confirmed, 18,006 after them: too many to put back, so the oldest go a slice at a time.
  const upto = all[21_999];
  await master.confirmCapture(upto);
  assert.equal(await idsOf(master, 0), all.slice(10_000), "a slice of the oldest 10,000");
  await master.confirmCapture(upto);
  assert.equal(await idsOf(master, 0), all.slice(20_000), "behind: the next slice goes on the next call, not 5 s later");
  await master.confirmCapture(seq);
  assert.equal(await idsOf(master, 0), [seq], "still behind, and now all confirmed: the highest row stays (it holds the sequence)");
});

test("confirmCapture with few changes after the confirmed ones empties the table at once and puts those back unchanged", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t SELECT i, 'v' || i FROM n");
  sql("INSERT INTO t VALUES (-1, x'00ff'), (-2, 1.0), (-3, NULL); UPDATE t SET v = 9223372036854775807 WHERE id = 5; DELETE FROM t WHERE id = 6");
  const before = await changesOf(master, 0);
  const upto = before[before.length - 6][0];
  await master.confirmCapture(upto);
  assert.equal(await changesOf(master, 0), before.slice(-5), "past 10,000 at once: only the five changes after the confirmed ones are left, as they were");
  const seq = await master.changeSeq();
  assert.is(seq, before[before.length - 1][0], "the highest row stays (it holds the sequence)");
  sql("INSERT INTO t VALUES (0, 0)");
  await master.confirmCapture(await master.changeSeq());
  assert.is(await master.pendingChanges(seq), 1, "caught up: the next prune waits");
  assert.is(await master.changeSeq(), seq + 1, "ids are never reused after a prune");
});

test("a restore discards captured changes but keeps the sequence: ids go on above every id seen, and a placeholder is no change", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  sql("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')");
  const before = await master.changeSeq();
  const source = await repo("source.db");
  await source.executeScript("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (7, 'x')", undefined, () => {});
  const reader = await source.openSnapshot();
  const writer = await master.restoreSnapshot(reader.header.schema);
  for (let chunk = await reader.next(1000); chunk; chunk = await reader.next(1000)) await writer.rows(chunk.table, chunk.rows);
  await reader.close();
  await writer.commit({ lsn: 5, epoch: 1 });
  assert.is(await master.changeSeq(), before, "the sequence stays where it was");
  assert.is(await master.pendingChanges(0), 0, "nothing captured is left to replicate");
  assert.equal(await idsOf(master, 0), [], "the placeholder is not read as a change");
  const read = master.readChanges(0, { partBytes: 1 << 20 });
  for await (const part of read) assert.unreachable(`no change expected, got ${part.count}`);
  assert.is(read.reached(), before, "a read past the placeholder reaches it, so capture moves on");
  await master.installCapture();
  sql("INSERT INTO t VALUES (8, 'y')");
  const after = await changesOf(master, before);
  assert.equal(after.map(([id, c]) => [id > before, c[1]]), [[true, "I"]], "a new change gets an id above every earlier one");
});

test("a change table made with AUTOINCREMENT is rebuilt without it on start: rows, capture and the counter kept", async () => {
  const old = await repo("old.db");
  const c = conn(old);
  // The table as ferry created it before, a counter above its rows (pruned), and capture on.
  c.exec(`DROP TABLE ferry_changes;
    CREATE TABLE ferry_changes(id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, op TEXT NOT NULL, rid TEXT, row TEXT);
    CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`);
  await old.installCapture();
  c.exec(`INSERT INTO t VALUES (1, 'a'), (2, 'b'); DELETE FROM ferry_changes WHERE id = 2; UPDATE sqlite_sequence SET seq = 40 WHERE name = 'ferry_changes'`);
  const kept = await changesOf(old, 0);
  assert.equal(kept.map(([id]) => id), [1]);
  await old.close();
  const again = await repo("old.db");
  const table = conn(again, { readonly: true }).prepare(`SELECT sql FROM sqlite_master WHERE name = 'ferry_changes'`).pluck().get() as string;
  assert.not.match(table, /AUTOINCREMENT/i);
  assert.equal(await changesOf(again, 0), kept, "the captured rows are kept as they were");
  assert.is(await again.changeSeq(), 40, "the counter is kept as a placeholder");
  assert.is(await again.pendingChanges(0), 1);
  conn(again).exec(`INSERT INTO t VALUES (3, 'c')`);
  const next = await changesOf(again, 1);
  assert.equal(next.map(([id, ch]) => [id, ch[1]]), [[41, "I"]], "capture triggers still write, above the old counter");
  await again.init();
  assert.is(await again.changeSeq(), 41, "init again changes nothing");
});

test("removeCapture leaves no ferry_cap_ triggers and nothing more is captured; installCapture is idempotent", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY); CREATE TABLE u(k TEXT PRIMARY KEY) WITHOUT ROWID");
  const count = () =>
    conn(master, { readonly: true }).prepare("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'ferry\\_cap\\_%' ESCAPE '\\'").pluck().get();
  // t, u, ferry_heartbeat and ferry_requests
  assert.is(count(), 12);
  await master.installCapture();
  assert.is(count(), 12);
  await master.removeCapture(0);
  assert.is(count(), 0);
  const seq = await master.changeSeq();
  conn(master).prepare("INSERT INTO t VALUES (1)").run();
  assert.is(await master.pendingChanges(seq), 0);
  await master.installCapture();
  conn(master).prepare("INSERT INTO t VALUES (2)").run();
  assert.is(await master.pendingChanges(seq), 1);
});

// --- snapshots, fingerprint, availability -----------------------------------------------------

test("a snapshot streamed in small chunks and restored reproduces the master; old tables are dropped", async () => {
  const { sql, master } = await pair();
  sql(`CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT, b BLOB);
       CREATE TABLE plain(x, y);
       CREATE TABLE w(k TEXT, j INTEGER, r REAL, PRIMARY KEY(k, j)) WITHOUT ROWID;
       CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE c(id INTEGER PRIMARY KEY, pid REFERENCES p(id));
       CREATE INDEX a_v ON a(v); CREATE VIEW av AS SELECT v FROM a`);
  const wr = conn(master);
  wr.defaultSafeIntegers(true);
  wr.transaction(() => {
    for (let i = 0; i < 300; i++) wr.prepare("INSERT INTO a VALUES (?, ?, ?)").run(i, `v${i}`, Buffer.from([i % 256]));
    for (let i = 0; i < 50; i++) wr.prepare("INSERT INTO plain VALUES (?, ?)").run(i, i * 1.0);
    wr.prepare("DELETE FROM plain WHERE x % 7 = 0").run(); // rowid gaps
    for (let i = 0; i < 40; i++) wr.prepare("INSERT INTO w VALUES (?, ?, ?)").run(`k${i % 4}`, 2n ** 62n + BigInt(i), i / 3);
    wr.prepare("INSERT INTO p VALUES (1)").run();
    wr.prepare("INSERT INTO c VALUES (1, 1)").run();
  })();
  await master.writeHeartbeat("m1", 3, 12345);

  const target = await repo("target.db");
  target.executeScript("CREATE TABLE junk(x); INSERT INTO junk VALUES (1)", undefined, () => {});
  await target.removeCapture(0);

  const reader = await master.openSnapshot();
  // Written after the snapshot began: not in it.
  conn(master).prepare("INSERT INTO a VALUES (1000, 'late', NULL)").run();
  const want = dumpFile(master.path).split("\n").filter((l) => !l.includes("'late'")).join("\n");
  assert.equal(
    reader.header.tables.map((t) => [t.name, t.rows]),
    [["a", 300], ["c", 1], ["ferry_heartbeat", 1], ["ferry_requests", 0], ["p", 1], ["plain", 42], ["w", 40]],
  );
  const writer = await target.restoreSnapshot(reader.header.schema);
  let chunks = 0;
  for (let chunk = await reader.next(200); chunk; chunk = await reader.next(200)) {
    await writer.rows(chunk.table, chunk.rows);
    chunks++;
  }
  await reader.close();
  await writer.commit({ lsn: 17, epoch: 3 });
  assert.ok(chunks > 20, `${chunks} chunks`);
  assert.fixture(dumpFile(target.path), want);
  assert.equal(await target.appliedPosition(), { lsn: 17, epoch: 3 });
  assert.is(await target.lastHeartbeatTs(), 12345);
  assert.is(await target.fingerprint(), reader.header.fingerprint);
});

test("an aborted restore leaves the target as it was", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE a(id INTEGER PRIMARY KEY); INSERT INTO a VALUES (1)");
  const target = await repo("target.db");
  target.executeScript("CREATE TABLE old(x); INSERT INTO old VALUES (1)", undefined, () => {});
  const before = dumpFile(target.path);
  const reader = await master.openSnapshot();
  const writer = await target.restoreSnapshot(reader.header.schema);
  await writer.rows("a", (await reader.next(1000))!.rows);
  await writer.abort();
  await reader.close();
  assert.fixture(dumpFile(target.path), before);
  assert.equal(await target.appliedPosition(), { lsn: 0, epoch: 0 });
});

test("fingerprint: equal for equal schemas, changes with the schema, not with data or capture triggers", async () => {
  const { sql, master, replica, ship } = await pair();
  const empty = await master.fingerprint();
  assert.is(await replica.fingerprint(), empty);
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  const one = await master.fingerprint();
  assert.is.not(one, empty);
  sql("INSERT INTO t VALUES (1, 'a')");
  assert.is(await master.fingerprint(), one);
  await master.removeCapture(0);
  assert.is(await master.fingerprint(), one);
  await master.installCapture();
  await ship();
  assert.is(await replica.fingerprint(), one, "the replica (no capture triggers) has the master's fingerprint");
  sql("CREATE INDEX t_v ON t(v)");
  const indexed = await master.fingerprint();
  assert.is.not(indexed, one);
  assert.match(one, /^[0-9a-f]{16}$/);
  // Kept between capture cycles, but DDL by another connection (an operator's sqlite3) shows at once.
  conn(master).exec("ALTER TABLE t ADD COLUMN w REAL");
  const altered = await master.fingerprint();
  assert.is.not(altered, indexed);
  conn(master).exec("ALTER TABLE t DROP COLUMN w");
  assert.is(await master.fingerprint(), indexed, "the schema back as it was, the fingerprint too");
});

test("checkAvailable: a missing file is REPO_UNAVAILABLE; so is a file replaced by another", async () => {
  const r = await repo("gone.db");
  await r.checkAvailable();
  unlinkSync(r.path);
  await rejectsCode(() => r.checkAvailable(), "REPO_UNAVAILABLE", "the file is missing");
  const s = await repo("swapped.db");
  const other = join(dir, "other.db");
  writeFileSync(other, "");
  renameSync(other, s.path);
  await rejectsCode(() => s.checkAvailable(), "REPO_UNAVAILABLE", "replaced by another file");
});

test("opening a repository in a missing directory is REPO_UNAVAILABLE with a hint", async () => {
  const e = throwsCode(() => new SqliteRepository(`sqlite:${join(dir, "no", "such", "dir", "r.db")}`), "REPO_UNAVAILABLE", "cannot open repository");
  assert.match(e.hint ?? "", "--repo");
});

test("a lock held by another writer is REPO_UNAVAILABLE (busy) on the main thread's short busy timeout", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  const other = conn(master);
  other.exec("BEGIN IMMEDIATE");
  const e = throwsCode(() => sql("INSERT INTO t VALUES (1)"), "REPO_UNAVAILABLE", "SQLITE_BUSY");
  assert.match(e.hint ?? "", "retries");
});

/** The SQL runner (a worker thread) on the pair's master, its gate accepting, with a lease deadline `validMs` from now. */
function executor(master: SqliteRepository, validMs: number) {
  const deadline = new BigInt64Array(new SharedArrayBuffer(8));
  Atomics.store(deadline, 0, BigInt(Math.floor(performance.timeOrigin + performance.now() + validMs)));
  const gate = newWriteGate(deadline.buffer as SharedArrayBuffer);
  setAccepting(gate, true);
  const runner = master.openSqlRunner(gate, { busyTimeoutMs: 5000 });
  return {
    execute: (sql: string, params: unknown) => runner.execute(sql, params),
    setAccepting: (on: boolean) => setAccepting(gate, on),
    close: () => runner.close(),
  };
}

test("the SQL worker waits out another writer's lock while the main thread's event loop runs", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  const x = executor(master, 60_000);
  try {
    const other = conn(master);
    other.exec("BEGIN IMMEDIATE");
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    setTimeout(() => other.exec("ROLLBACK"), 300);
    const out = await x.execute("INSERT INTO t VALUES (2)", undefined);
    clearInterval(ticker);
    assert.is(out.results[0].changes, 1);
    assert.ok(ticks > 5, `the event loop ran while waiting (${ticks} ticks)`);
    await assert_rejects(x.execute("INSERT INTO nosuch VALUES (1)", undefined), "SQL_ERROR");
  } finally {
    await x.close();
  }
});

test("the SQL worker rolls back instead of committing once the master stops taking writes or its lease runs out", async () => {
  const { sql, master } = await pair();
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  const handingOver = executor(master, 60_000);
  const expired = executor(master, -1);
  try {
    handingOver.setAccepting(false);
    await assert_rejects(handingOver.execute("INSERT INTO t VALUES (1)", undefined), "FENCED");
    await assert_rejects(expired.execute("INSERT INTO t VALUES (2)", undefined), "FENCED");
    handingOver.setAccepting(true);
    await handingOver.execute("INSERT INTO t VALUES (3)", undefined);
    assert.equal(sql("SELECT id FROM t").results[0].rows, [[3]]);
  } finally {
    await handingOver.close();
    await expired.close();
  }
});

async function assert_rejects(p: Promise<unknown>, code: string) {
  try {
    await p;
  } catch (err) {
    assert.is((err as FerryError).code, code);
    return;
  }
  assert.unreachable(`expected ${code}`);
}

test("hasUserData and outsideCommits", async () => {
  const { sql, master } = await pair();
  assert.is(await master.hasUserData(), false);
  sql("CREATE TABLE t(id INTEGER PRIMARY KEY)");
  assert.is(await master.hasUserData(), false, "a table without rows is no data");
  await master.outsideCommits();
  conn(master).prepare("INSERT INTO t VALUES (1)").run();
  assert.is(await master.hasUserData(), true);
});

test.run();
