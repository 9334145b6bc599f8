/**
 * src/storage/repository/postgres against a real PostgreSQL server (initdb in a temp dir,
 * wal_level=logical, one server for the file, one database per repository): capture by logical
 * decoding, apply on a replica, snapshots aligned with capture positions, types, DDL, errors.
 *
 * `ship` moves what the master captured to the replica the way ferry does (JSON through the
 * spool, one batch per call, the slot confirmed after), so "dumps equal" checks the whole path.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { postgresServer } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { PostgresRepository } from "../../src/storage/repository/postgres/repository.js";
import { FerryError } from "../../src/errors.js";
import { findPgBin } from "../../src/local/postgres.js";
import { keyOfRow } from "../../src/storage/sync.js";
import type { Change, WriteGate } from "../../src/storage/repository/types.js";
import type { EncodedChange } from "../../src/storage/repository/parts.js";
import { newWriteGate, setAccepting } from "../../src/storage/repository/write-gate.js";
import type { PgServer } from "../../src/local/postgres.js";

let server: PgServer;
let dbs = 0;
const open: PostgresRepository[] = [];
const clients: pg.Client[] = [];
/** Servers of one test, stopped after its repositories and clients. */
const servers: PgServer[] = [];

test.before(async () => {
  server = await postgresServer();
});
test.after.each(async () => {
  // Each test's slots go with it: the server has max_replication_slots = 16.
  for (const r of open.splice(0)) {
    await r.removeCapture(Number.MAX_SAFE_INTEGER).catch(() => {});
    await r.close();
  }
  for (const c of clients.splice(0)) await c.end().catch(() => {});
  for (const s of servers.splice(0)) await s.stop("immediate");
});
test.after(async () => {
  await server.stop("immediate");
});

async function newDb(): Promise<string> {
  return server.createDb(`db${++dbs}`);
}

async function repo(url: string, init = true): Promise<PostgresRepository> {
  const r = new PostgresRepository(url);
  open.push(r);
  if (init) await r.init();
  return r;
}

/** A plain client: an outside writer, or a reader checking values. */
async function client(url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  clients.push(c);
  await c.connect();
  return c;
}

function openGate(): WriteGate {
  const g = newWriteGate(new SharedArrayBuffer(8));
  setAccepting(g, true);
  Atomics.store(new BigInt64Array(g.deadline), 0, BigInt(Date.now() + 3_600_000));
  return g;
}

/** readChanges collected in parts of one change each, as [position, op, the Change as JSON]. */
async function readAll(r: PostgresRepository, from: number, upto?: number): Promise<{ changes: EncodedChange[]; reached: number }> {
  const read = r.readChanges(from, { upto, partBytes: 1 });
  const changes: EncodedChange[] = [];
  for await (const part of read) {
    const [c, ...more] = JSON.parse(Buffer.from(part.data).toString()) as Change[];
    assert.equal([more.length, part.count, part.first, part.ddl], [0, 1, part.last, c[1] === "X"], `part ending at ${part.last}`);
    changes.push([part.last, c[1], JSON.stringify(c)]);
  }
  return { changes, reached: read.reached() };
}

/** A master with capture on and an empty replica, and a function that ships what was captured since the last call. */
async function pair() {
  const masterUrl = await newDb();
  const replicaUrl = await newDb();
  const master = await repo(masterUrl);
  await master.installCapture();
  const replica = await repo(replicaUrl);
  const runner = master.openSqlRunner(openGate(), { busyTimeoutMs: 5000 });
  let last = 0;
  let lsn = 0;
  const ship = async (): Promise<EncodedChange[]> => {
    const { changes, reached } = await readAll(master, last);
    if (changes.length > 0) {
      const spooled = JSON.parse(`[${changes.map((c) => c[2]).join(",")}]`) as Change[];
      await replica.applyBatches([{ lsn: ++lsn, epoch: 1, changes: spooled }]);
    }
    last = Math.max(last, reached);
    await master.confirmCapture(last);
    return changes;
  };
  const sql = (script: string, params?: unknown) => runner.execute(script, params);
  const same = async () => assert.fixture(await replica.dump(), await master.dump());
  return { master, replica, masterUrl, replicaUrl, ship, sql, same };
}

const ops = (changes: EncodedChange[]) =>
  changes.map(([, , json]) => {
    const [tbl, op, rid] = JSON.parse(json) as Change;
    return `${tbl ?? ""}:${op}${rid === null ? "" : ` ${rid}`}`;
  });

async function rejectsCode(fn: () => Promise<unknown>, code: string, match?: string | RegExp): Promise<FerryError> {
  try {
    await fn();
  } catch (err) {
    assert.instance(err, FerryError, String(err));
    assert.is((err as FerryError).code, code, (err as Error).message);
    if (match) assert.match((err as Error).message, match);
    return err as FerryError;
  }
  assert.unreachable(`expected ${code}`);
  throw new Error("unreachable");
}

// --- capture and apply ------------------------------------------------------------------------

test("installCapture takes tables without a primary key, refuses what it cannot carry exactly; removeCapture leaves nothing behind", async () => {
  const url = await newDb();
  const r = await repo(url);
  const c = await client(url);
  await c.query("CREATE TABLE ok(id int PRIMARY KEY); CREATE TABLE nokey_a(x int); CREATE TABLE m(id int PRIMARY KEY, price money)");
  const err = await rejectsCode(() => r.installCapture(), "SQL_ERROR", "column types that cannot be replicated exactly: m.price (money");
  assert.match(err.hint ?? "", "type");
  await c.query("DROP TABLE m; CREATE UNIQUE INDEX ok_id ON ok(id); ALTER TABLE ok REPLICA IDENTITY USING INDEX ok_id");
  await rejectsCode(() => r.installCapture(), "SQL_ERROR", "replica identity other than the primary key or FULL cannot be replicated: ok");
  await c.query("ALTER TABLE ok REPLICA IDENTITY DEFAULT; ALTER TABLE nokey_a REPLICA IDENTITY FULL");
  // ferry_ddl as an earlier version made it: init brings it up to date.
  await c.query("DROP TABLE ferry_ddl; CREATE TABLE ferry_ddl(id bigserial PRIMARY KEY, sql text NOT NULL)");
  await r.init();
  await r.installCapture();
  await r.installCapture(); // idempotent
  const count = async (sql: string) => (await c.query(`SELECT count(*)::int AS n FROM ${sql}`)).rows[0].n as number;
  await c.query("CREATE TABLE rec(id int)");
  assert.is(await count("ferry_ddl WHERE sql = 'CREATE TABLE rec(id int)'"), 1, "an outside writer's DDL is recorded");
  assert.is(await count("pg_event_trigger WHERE evtname LIKE 'ferry\\_%'"), 2, "the DDL triggers: ddl_command_end and sql_drop");
  await r.removeCapture(Number.MAX_SAFE_INTEGER);
  assert.is(await count("pg_replication_slots"), 0, "removeCapture drops the slot");
  assert.is(await count("pg_publication"), 0, "and the publication");
  assert.is(await count("pg_event_trigger"), 0, "and the event triggers");
  assert.is(await count("pg_proc WHERE proname = 'ferry_capture_ddl'"), 0, "and their function");
  await c.query("CREATE TABLE later(id int PRIMARY KEY)");
  assert.is(await count("ferry_ddl WHERE sql LIKE '%later%'"), 0, "DDL is no longer recorded");
});

test("runner writes and an outside writer are captured and applied; keys change; deletes", async () => {
  const { ship, sql, same, masterUrl } = await pair();
  await sql("CREATE TABLE acct(id int PRIMARY KEY, owner text NOT NULL, balance bigint)");
  await sql("INSERT INTO acct VALUES (1, 'a', 10), (2, 'b', 20)");
  const w = await client(masterUrl);
  await w.query("BEGIN");
  for (let i = 10; i < 60; i++) await w.query("INSERT INTO acct VALUES ($1, $2, $3)", [i, `o${i}`, i * 100]);
  await w.query("COMMIT");
  await w.query("UPDATE acct SET balance = balance + 5 WHERE id = 1");
  await sql("UPDATE acct SET id = 7 WHERE id = 2");
  await sql("DELETE FROM acct WHERE id = $1", [10]);
  const changes = await ship();
  const o = ops(changes);
  assert.equal(o[0], ":X");
  assert.equal(o.slice(1, 3), ["acct:I", "acct:I"]);
  assert.is(o.filter((x) => x === "acct:I").length, 52);
  assert.equal(o.slice(-3), ["acct:U", "acct:U [2]", "acct:D [10]"]);
  await same();
});

test("concurrent writers: whole transactions in commit order", async () => {
  const { ship, sql, same, master, masterUrl } = await pair();
  await sql("CREATE TABLE t(id int PRIMARY KEY, w text)");
  await ship();
  const a = await client(masterUrl);
  const b = await client(masterUrl);
  await a.query("BEGIN");
  await b.query("BEGIN");
  await a.query("INSERT INTO t VALUES (1, 'a')");
  await b.query("INSERT INTO t VALUES (2, 'b')");
  await a.query("INSERT INTO t VALUES (3, 'a')");
  await b.query("INSERT INTO t VALUES (4, 'b')");
  await b.query("COMMIT"); // b began writing second and commits first
  const mid = await readAll(master, 0);
  assert.equal(mid.changes.map((c) => JSON.parse(c[2])[3]), ['[2,"b"]', '[4,"b"]'], "a's uncommitted changes are not read");
  await a.query("COMMIT");
  const changes = await ship();
  assert.equal(
    changes.map((c) => JSON.parse(c[2])[3]),
    ['[2,"b"]', '[4,"b"]', '[1,"a"]', '[3,"a"]'],
  );
  assert.ok(changes[0][0] === changes[1][0] && changes[2][0] === changes[3][0], "a transaction's changes share its position");
  assert.ok(changes[0][0] < changes[2][0], "positions follow commit order");
  await same();
});

test("the fingerprint follows the schema: DDL of another session at once, DDL applied on a replica at once, DDL no trigger saw within a second", async () => {
  const { master, replica, masterUrl, ship, sql } = await pair();
  await sql("CREATE TABLE f(id int PRIMARY KEY, v text)");
  await ship();
  const fp1 = await master.fingerprint();
  assert.is(await master.fingerprint(), fp1);
  assert.is(await replica.fingerprint(), fp1);
  const w = await client(masterUrl);
  await w.query("ALTER TABLE f ALTER COLUMN v TYPE varchar(10)");
  const fp2 = await master.fingerprint();
  assert.is.not(fp2, fp1, "another session's DDL");
  assert.is(await replica.fingerprint(), fp1, "not applied on the replica yet");
  await ship();
  assert.is(await replica.fingerprint(), fp2, "DDL the replica applied");
  await w.query("SET session_replication_role = replica; ALTER TABLE f ADD COLUMN n int; RESET session_replication_role");
  await waitFor("the fingerprint of a change no event trigger recorded", async () => (await master.fingerprint()) !== fp2, { timeoutMs: 5000 });
});

test("a read gives DDL only once it is visible: a commit already streamed, held from ending by synchronous replication, is waited for", async () => {
  // A commit flushed to the WAL that then waits for a synchronous standby which never comes: the
  // slot streams it, yet no snapshot sees it. Only the DDL's session asks for synchronous commit.
  const held = await postgresServer();
  servers.push(held);
  const admin = new pg.Client({ connectionString: held.url });
  await admin.connect();
  try {
    await admin.query(`ALTER SYSTEM SET synchronous_standby_names = 'ferry_nobody'`);
    await admin.query(`ALTER SYSTEM SET synchronous_commit = 'local'`);
  } finally {
    await admin.end();
  }
  await held.stop("fast");
  await held.start();
  const url = await held.createDb("held");
  const master = await repo(url);
  await master.installCapture();
  const before = await master.fingerprint();
  const [w, look] = [await client(url), await client(url)];
  const seen = async (where: string) => (await look.query(`SELECT 1 FROM pg_stat_activity WHERE ${where} AND pid <> pg_backend_pid()`)).rows.length > 0 || null;
  await w.query("SET synchronous_commit = on");
  const ddl = w.query("CREATE TABLE held(id int PRIMARY KEY)").then(() => "committed before the read");
  await waitFor("the DDL's commit waiting for a standby", () => seen(`wait_event = 'SyncRep'`));
  const reading = readAll(master, 0).then(async (r) => ({ ...r, fp: await master.fingerprint() }));
  const first = await Promise.race([
    reading.then(() => "the read returned an invisible DDL"),
    ddl,
    waitFor("the read asking whether the DDL is visible", () => seen(`query LIKE '%pg_visible_in_snapshot(x, %'`)).then(() => "waiting"),
  ]);
  assert.is(first, "waiting");
  await look.query(`ALTER SYSTEM RESET synchronous_standby_names`);
  await look.query(`SELECT pg_reload_conf()`);
  await ddl;
  const { changes, fp } = await reading;
  assert.equal(ops(changes), [":X"]);
  assert.is.not(fp, before);
  assert.is(fp, await (await repo(url)).fingerprint(), "the fingerprint read after the read holds its DDL");
});

test("exact types: integers to 2^63-1, numeric, floats (NaN, ±Infinity, -0, 1.0), text, bool, bytea, dates, uuid, json, arrays, NULL, types with modifiers", async () => {
  const { ship, sql, same, masterUrl, replicaUrl } = await pair();
  await sql(`CREATE TABLE v(id int PRIMARY KEY, i2 int2, i4 int4, i8 int8, num numeric, f8 float8, f4 float4, t text, vc varchar(20), b bool,
    by bytea, d date, ts timestamp, tz timestamptz, u uuid, j json, jb jsonb, ia int[], ta text[], iv interval, ch char(4),
    bt bit(3), nm numeric(10,2), t3 timestamp(3), va varchar(5)[])`);
  const w = await client(masterUrl);
  await w.query(`INSERT INTO v VALUES
    (1, 32767, 2147483647, 9223372036854775807, 123456789012345678901234567890.123, 1.0, 1.5, 'it''s "q" ; -- ünï 🚀', 'vc', true,
     '\\x0001ff00', '2024-02-29', '2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.5+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{"b": 1,  "a": [1, 2.50]}', '{"b": 1, "a": [1, 2.50]}', '{1,NULL,-3}', '{"x y","NULL",NULL}', '1 day 02:03:04', 'ab', B'101', 12345678.91, '2024-01-02 03:04:05.123', '{"abcde",NULL}'),
    (2, -32768, -2147483648, -9223372036854775808, -0.000000000000000000001, 'NaN', 'Infinity', '', '', false,
     '\\x', '0001-01-01', '1999-12-31 23:59:59', 'infinity', '00000000-0000-0000-0000-000000000000', 'null', '[]', '{}', '{}', '-1 mon', NULL, B'000', -0.01, 'infinity', '{}'),
    (3, NULL, NULL, 9007199254740993, 'NaN', '-Infinity', '-0', 'NULL', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (4, 0, 0, 0, 0, 0.1, 3.4028235e38, E'line\\nbreak\\ttab\\\\', 'x', true, '\\xdeadbeef', '2000-01-01', '2000-01-01', '2000-01-01', NULL, '1', '1', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (5, 1, 1, 1, 1, 0.30000000000000004, 1e-45, 'x', 'x', false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (6, 1, 1, 1, 1, 1e300, -1.5, 'x', 'x', false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`);
  await w.query(`UPDATE v SET f8 = '-0' WHERE id = 5`);
  const changes = await ship();
  const first = JSON.parse(changes.find((c) => JSON.parse(c[2])[1] === "I")![2])[3] as string;
  assert.match(first, /^\[1,32767,2147483647,9223372036854775807,"123456789012345678901234567890.123",1.0,1.5,/);
  assert.match(first, /"t",\["x","0001FF00"\]/);
  await same();
  const all = "SELECT id, i2::text, i4::text, i8::text, num::text, f8::text, f4::text, t, vc, b::text, encode(by, 'hex') AS by, d::text, ts::text, tz::text, u::text, j::text, jb::text, ia::text, ta::text, iv::text, ch::text, bt::text, nm::text, t3::text, va::text, (f8 = 0 AND text(f8) LIKE '-%') AS negzero FROM v ORDER BY id";
  const m = (await (await client(masterUrl)).query(all)).rows;
  const r = (await (await client(replicaUrl)).query(all)).rows;
  assert.equal(r, m);
  assert.is(r[0].j, '{"b": 1,  "a": [1, 2.50]}', "json text kept exactly");
  assert.is(r[2].i8, "9007199254740993");
  assert.is(r[4].negzero, true, "-0 stays -0");
  assert.equal([r[0].ch, r[0].bt, r[0].nm, r[0].va], ["ab", "101", "12345678.91", "{abcde,NULL}"], "a modifier's type keeps its value whole (char(4) is not char(1))");
});

test("an update that leaves a large (TOASTed) value alone keeps it on the replica", async () => {
  const { ship, sql, same, replicaUrl } = await pair();
  await sql("CREATE TABLE doc(id int PRIMARY KEY, body text, n int)");
  const big = Array.from({ length: 4000 }, (_, i) => `word${i * 7919 % 10007}`).join(" ");
  await sql("INSERT INTO doc VALUES (1, $1, 0)", [big]);
  await ship();
  await sql("UPDATE doc SET n = 1 WHERE id = 1");
  const changes = await ship();
  const row = JSON.parse(changes[0][2])[3] as string;
  assert.is(row, '[1,["u"],1]', "pgoutput does not send the unchanged TOASTed value");
  await same();
  const body = async (url: string) => (await (await client(url)).query("SELECT body, n FROM doc")).rows[0];
  assert.equal(await body(replicaUrl), { body: big, n: 1 });
});

test("DDL through the runner replicates in place: CREATE TABLE, ALTER TABLE ADD COLUMN, CREATE INDEX, DROP TABLE; TRUNCATE", async () => {
  const { ship, sql, same, replicaUrl } = await pair();
  await sql("CREATE TABLE a(id serial PRIMARY KEY, v text); INSERT INTO a(v) VALUES ('x'), ('y')");
  await sql("ALTER TABLE a ADD COLUMN w int DEFAULT 7; INSERT INTO a(v, w) VALUES ('z', 8); CREATE INDEX a_v ON a(v)");
  await sql("CREATE TABLE gone(id int PRIMARY KEY); INSERT INTO gone VALUES (1)");
  let o = ops(await ship());
  assert.equal(o, [":X", "a:I", "a:I", ":X", "a:I", ":X", ":X", "gone:I"]);
  await same();
  await sql("DROP TABLE gone; UPDATE a SET w = 9 WHERE id = 1");
  await ship();
  await same();
  await sql("CREATE TABLE b(id int PRIMARY KEY); INSERT INTO b VALUES (1), (2)");
  await ship();
  await sql("TRUNCATE a, b RESTART IDENTITY; INSERT INTO a(v) VALUES ('after')");
  o = ops(await ship());
  assert.equal(o, [":X", "a:I"]);
  await same();
  const r = (await (await client(replicaUrl)).query("SELECT id, v FROM a")).rows;
  assert.equal(r, [{ id: 1, v: "after" }]);
  await sql("CREATE TABLE nokey(x int, y text); INSERT INTO nokey VALUES (1, 'a'), (1, 'a'), (NULL, 'b')");
  assert.equal(ops(await ship()), [":X", "nokey:I", "nokey:I", "nokey:I"]);
  await same();
  assert.match(await (await repoOf(replicaUrl)).dump(), "nokey|'1'|'a'\nnokey|'1'|'a'\n");
});

async function repoOf(url: string) {
  return repo(url, false);
}

test("the runner refuses transaction control, replays a request key, and returns typed results", async () => {
  const { master, sql } = await pair();
  await rejectsCode(() => sql("BEGIN; SELECT 1; COMMIT"), "SQL_ERROR", "BEGIN is not allowed: ferry runs the whole script as one transaction");
  await rejectsCode(() => sql("START TRANSACTION"), "SQL_ERROR", "START is not allowed");
  const vacuum = await rejectsCode(() => sql("VACUUM"), "SQL_ERROR", "VACUUM cannot run in ferry's transaction and is refused");
  assert.match(vacuum.hint ?? "", "run it on each repository directly");
  await rejectsCode(() => sql("SELECT $1::int; SELECT 2", [1]), "USAGE", "--params applies to a single statement, the script has 2");
  await rejectsCode(() => sql(" -- nothing\n;"), "USAGE", "no SQL statement given");
  await sql("CREATE TABLE k(id int8 PRIMARY KEY, b bytea, f float8, ok bool)");
  const runner = master.openSqlRunner(openGate(), { busyTimeoutMs: 5000 });
  const key = { id: "req-1", node: "n1" };
  const first = await runner.execute("INSERT INTO k VALUES (9223372036854775807, '\\xff', 1.5, true) RETURNING *", undefined, key);
  assert.ok(first.lastChangeId > 0);
  assert.ok((await readAll(master, 0)).reached >= first.lastChangeId, "a capture read reaches the write's position");
  assert.equal(first.results[0].rows, [["9223372036854775807", { $blob: "FF" }, 1.5, true]]);
  const again = await runner.execute("INSERT INTO k VALUES (1, NULL, NULL, NULL)", undefined, key);
  assert.equal(again.replayed, { by: "n1" });
  assert.equal(again.results, first.results);
  assert.is((await runner.execute("SELECT count(*)::int AS n FROM k", undefined)).results[0].rows![0][0], 1);
  const shut = openGate();
  Atomics.store(new Int32Array(shut.accepting), 0, 0);
  const fenced = await rejectsCode(() => master.openSqlRunner(shut, { busyTimeoutMs: 1000 }).execute("INSERT INTO k VALUES (2)", undefined), "FENCED");
  assert.equal(fenced.details, { committed: false });
  assert.is((await runner.execute("SELECT count(*)::int FROM k", undefined)).results[0].rows![0][0], 1, "nothing committed");
  const empty = await runner.execute("SELECT 1", undefined);
  assert.is(empty.lastChangeId, 0, "a read-only script captures nothing");
});

test("a replica applies without firing user triggers or foreign key checks; outside writers on it are counted", async () => {
  const { ship, sql, same, replica, replicaUrl } = await pair();
  await sql(`CREATE TABLE p(id int PRIMARY KEY, n text);
    CREATE TABLE c(id int PRIMARY KEY, pid int REFERENCES p(id) ON DELETE CASCADE);
    CREATE TABLE audit(id serial PRIMARY KEY, what text);
    CREATE FUNCTION log_ins() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit(what) VALUES ('ins ' || NEW.id); RETURN NEW; END $$;
    CREATE TRIGGER p_ins AFTER INSERT ON p FOR EACH ROW EXECUTE FUNCTION log_ins()`);
  await sql("INSERT INTO p VALUES (1, 'a'), (2, 'b'); INSERT INTO c VALUES (10, 1), (20, 2)");
  await ship();
  await same();
  const r = await client(replicaUrl);
  assert.is((await r.query("SELECT count(*)::int AS n FROM audit")).rows[0].n, 2, "the replica's trigger did not add rows");
  await sql("UPDATE p SET n = 'a2' WHERE id = 1; DELETE FROM p WHERE id = 2");
  assert.equal(ops(await ship()).sort(), ["c:D [20]", "p:D [2]", "p:U"]);
  await same();
  assert.is(await replica.outsideCommits(), 0);
  await sql("INSERT INTO p VALUES (3, 'c')");
  await ship();
  await r.query("INSERT INTO c VALUES (99, 1)");
  await waitFor("the outside write counted", async () => (await replica.outsideCommits()) > 0, { timeoutMs: 15_000 });
  await sql("INSERT INTO p VALUES (4, 'd')");
  await ship();
  await new Promise((res) => setTimeout(res, 1500)); // statistics arrive late: the replica's own apply must not count
  assert.is(await replica.outsideCommits(), 0);
});

test("a session setting in a script does not outlive it", async () => {
  const { sql } = await pair();
  await sql("SET TimeZone = 'America/New_York'; SELECT 1");
  const r = await sql("SHOW TimeZone");
  assert.equal(r.results[0].rows, [["UTC"]]);
});

test("a large transaction arrives whole at one position, before what committed after it; a read from its end gets what follows", async () => {
  const { master, sql } = await pair();
  await sql("CREATE TABLE t(id int PRIMARY KEY, v text)");
  const base = (await readAll(master, 0)).reached;
  await master.confirmCapture(base);
  await sql("INSERT INTO t SELECT g, 'x' FROM generate_series(1, 25000) g");
  await sql("INSERT INTO t VALUES (0, 'small')");
  const all = await readAll(master, base);
  assert.is(all.changes.length, 25001);
  const bigEnd = all.changes[0][0];
  assert.ok(all.changes.slice(0, 25000).every((c) => c[0] === bigEnd), "one transaction, one position");
  assert.ok(all.changes[25000][0] > bigEnd, "commit order");
  const rest = await readAll(master, bigEnd);
  assert.is(rest.changes.length, 1);
  assert.is(JSON.parse(rest.changes[0][2])[3], '[0,"small"]');
  assert.is(rest.reached, all.reached);
});

test("the slot follows the spool: confirm moves it, a dead stream is replaced and sends again what was not confirmed, pendingChanges counts it", async () => {
  const { master, sql, masterUrl } = await pair();
  await sql("CREATE TABLE t(id int PRIMARY KEY)");
  const base = (await readAll(master, 0)).reached;
  await master.confirmCapture(base);
  const admin = await client(masterUrl);
  const slotAt = async () =>
    Number((await admin.query("SELECT (confirmed_flush_lsn - '0/0')::text AS p FROM pg_replication_slots WHERE slot_name LIKE 'ferry_%' AND database = current_database()")).rows[0].p);
  await waitFor("the slot confirmed where the spool is", async () => (await slotAt()) >= base, { timeoutMs: 15_000 });
  await sql("INSERT INTO t VALUES (1)");
  await sql("INSERT INTO t VALUES (2)");
  const first = await readAll(master, base);
  assert.is(first.changes.length, 2);
  const [one] = first.changes;
  // The walsender dies (an operator, a restart): the next read streams again from the slot.
  const killed = await admin.query("SELECT pg_terminate_backend(active_pid) AS ok FROM pg_replication_slots WHERE slot_name LIKE 'ferry_%' AND database = current_database() AND active_pid IS NOT NULL");
  assert.is(killed.rows.length, 1, "a walsender streamed the slot");
  const again = await waitFor("a read after the stream died", async () => {
    try {
      return await readAll(master, one[0]);
    } catch {
      return null;
    }
  }, { timeoutMs: 15_000 });
  assert.is(again.changes.length, 1, "the unconfirmed second insert came again");
  assert.is(JSON.parse(again.changes[0][2])[3], "[2]");
  assert.is(await master.pendingChanges(one[0]), 1, "counted with the stream stopped");
  await master.confirmCapture(again.reached);
  assert.ok((await slotAt()) >= again.reached, "confirmed through SQL while no stream runs");
  assert.is(await master.pendingChanges(base), 0);
  await sql("INSERT INTO t VALUES (3)");
  assert.is((await readAll(master, again.reached)).changes.length, 1, "a read opens the stream again");
});

test("a server shut down (pg_ctl stop -m fast) while its slot streams stops at once, with or without transactions waiting for the spool", async () => {
  for (const pending of [false, true]) {
    const own = await postgresServer();
    try {
      const url = await own.createDb("shutdown");
      const r = await repo(url);
      await r.installCapture();
      const runner = r.openSqlRunner(openGate(), { busyTimeoutMs: 5000 });
      await runner.execute("CREATE TABLE t(id int PRIMARY KEY); INSERT INTO t VALUES (1)", undefined);
      const read = await readAll(r, 0);
      assert.ok(read.changes.length > 0, "the stream runs");
      if (!pending) await r.confirmCapture(read.reached);
      // The walsender waits for its client to confirm what it sent; pg_ctl gives up (and stop()
      // fails) after 60 s. With transactions waiting, the sequencer's next cycle finds the server
      // refusing queries (checkAvailable), and the stream closes.
      const stopped = own.stop("fast");
      if (pending) {
        await waitFor("the server refusing queries", () => r.checkAvailable().then(() => false, () => true), { timeoutMs: 20_000 });
      }
      await stopped;
      await runner.close();
    } finally {
      await own.stop("immediate").catch(() => {});
    }
  }
});

test("a table without a primary key: inserts and TRUNCATE replicate; UPDATE and DELETE are refused with a hint until REPLICA IDENTITY FULL, then change one equal row", async () => {
  const { ship, sql, same, master, masterUrl, replicaUrl } = await pair();
  const big = Array.from({ length: 3000 }, (_, i) => `w${(i * 7919) % 10007}`).join(" ");
  await sql("CREATE TABLE h(a int, b text, j json, n numeric, body text)");
  await sql("INSERT INTO h VALUES (1, 'x', '{\"k\": 1 }', 1.0, 'small'), (1, 'x', '{\"k\": 1 }', 1.0, 'small'), (NULL, NULL, NULL, NULL, NULL), (3, 'big', '[]', 1.00, $1)", [big]);
  const w = await client(masterUrl);
  await w.query("INSERT INTO h(a, b) VALUES (2, 'outside')");
  assert.equal(ops(await ship()), [":X", "h:I", "h:I", "h:I", "h:I", "h:I"]);
  await same();
  const upd = await rejectsCode(() => sql("UPDATE h SET b = 'y' WHERE a = 1"), "SQL_ERROR", 'cannot update table "h" because it does not have a replica identity');
  assert.match(upd.hint ?? "", "add a primary key to h, or ALTER TABLE h REPLICA IDENTITY FULL");
  const del = await rejectsCode(() => sql("DELETE FROM h WHERE a = 2"), "SQL_ERROR", 'cannot delete from table "h"');
  assert.match(del.hint ?? "", "REPLICA IDENTITY FULL");
  await sql("ALTER TABLE h REPLICA IDENTITY FULL");
  // One of two equal rows changes, then one goes; NULLs, json (no = operator) and numeric scale (1.0 vs 1.00) match exactly.
  await w.query("UPDATE h SET b = 'y' WHERE ctid = (SELECT ctid FROM h WHERE a = 1 LIMIT 1)");
  await w.query("UPDATE h SET a = 0 WHERE a IS NULL");
  await w.query("UPDATE h SET a = 4 WHERE a = 3"); // leaves the TOASTed body alone
  await w.query("DELETE FROM h WHERE b = 'outside'");
  const changes = await ship();
  assert.equal(ops(changes).slice(0, 2), [":X", `h:U [1,"x","{\\"k\\": 1 }","1.0","small"]`]);
  assert.equal(ops(changes).slice(2).map((o) => o.slice(0, 4)), ["h:U ", "h:U ", "h:D "]);
  await same();
  const rowsOf = async (url: string) => (await (await client(url)).query("SELECT a, b, n::text, length(body) AS len FROM h ORDER BY a, b")).rows;
  assert.equal(await rowsOf(replicaUrl), await rowsOf(masterUrl));
  assert.equal((await rowsOf(replicaUrl)).map((r) => r.b), [null, "x", "y", "big"]);
  assert.is((await rowsOf(replicaUrl))[3].len, big.length, "the unchanged TOASTed value is kept");
  // The key of such a table is every column; readers order by all of them, NULL first, and resume after a key.
  const cols = await master.tableColumns("h");
  assert.equal(cols?.key, ["a", "b", "j", "n", "body"]);
  const read = async (after?: string) => {
    const r = await master.openTableReader({ table: "h", after });
    let text = "";
    for (let p = await r.next(64); p; p = await r.next(64)) text += p.text;
    await r.close();
    return text.split("\n").filter(Boolean);
  };
  const lines = await read();
  assert.equal(lines.map((l) => JSON.parse(l).a), [0, 1, 1, 4]);
  assert.equal(lines.map((l) => JSON.parse(l).b), [null, "x", "y", "big"]);
  assert.equal(await read(keyOfRow(lines[0], cols!.key)), lines.slice(1), "after a key with NULLs");
  assert.equal(await read(keyOfRow(lines[1], cols!.key)), lines.slice(2));
  await sql("TRUNCATE h");
  assert.equal(ops(await ship()), [":X"]);
  await same();
  assert.match(await master.dump(), "replica identity h: ALTER TABLE \"h\" REPLICA IDENTITY FULL");
  // REPLICA IDENTITY FULL on a table with a primary key: the old row is whole, apply keeps to the key.
  await sql("CREATE TABLE k(id int PRIMARY KEY, v text, n int); ALTER TABLE k REPLICA IDENTITY FULL; INSERT INTO k VALUES (1, 'a', 1), (2, 'b', 2)");
  await sql("UPDATE k SET v = 'a2' WHERE id = 1; UPDATE k SET id = 3 WHERE id = 2; DELETE FROM k WHERE id = 1");
  assert.equal(ops(await ship()).slice(-3), ['k:U [1,"a",1]', 'k:U [2,"b",2]', 'k:D [1,"a2",1]']);
  await same();
});

test("DDL by an outside writer is captured at its place, once per query string; temporary, other schemas', ferry's own, publications and grants are not", async () => {
  const { ship, same, master, masterUrl, replicaUrl } = await pair();
  const w = await client(masterUrl);
  const texts = (changes: EncodedChange[]) => changes.map((c) => JSON.parse(c[2]) as Change).map(([tbl, op, , row]) => (op === "X" ? `X ${row}` : `${tbl}:${op}`));
  await w.query("CREATE TABLE o(id int PRIMARY KEY, v text); CREATE INDEX o_v ON o(v); INSERT INTO o VALUES (1, 'a')");
  await w.query("BEGIN");
  await w.query("ALTER TABLE o ADD COLUMN n int DEFAULT 5");
  await w.query("INSERT INTO o VALUES (2, 'b', 6)");
  await w.query("CREATE INDEX ON o(n)");
  await w.query("CREATE INDEX ON o(n)"); // the same text again, another command: a second index
  await w.query("COMMIT");
  await w.query("CREATE TEMP TABLE tmp(x int); CREATE SCHEMA other; CREATE TABLE other.t(x int)");
  await w.query("GRANT SELECT ON o TO PUBLIC; CREATE PUBLICATION p2 FOR TABLE o; DROP PUBLICATION p2");
  await w.query("ALTER TABLE ferry_heartbeat ADD COLUMN IF NOT EXISTS extra int; ALTER TABLE ferry_heartbeat DROP COLUMN extra");
  await w.query("CREATE TABLE c AS SELECT g AS id, 'v' || g AS v FROM generate_series(1, 2) g");
  await w.query("SELECT 7 AS x INTO s");
  await w.query("CREATE INDEX CONCURRENTLY c_v ON c(v)");
  await w.query("BEGIN; DROP TABLE s; SET LOCAL work_mem = '8MB'; COMMIT");
  assert.equal(texts(await ship()), [
    "X CREATE TABLE o(id int PRIMARY KEY, v text);\nCREATE INDEX o_v ON o(v)",
    "o:I",
    "X ALTER TABLE o ADD COLUMN n int DEFAULT 5",
    "o:I",
    "X CREATE INDEX ON o(n)",
    "X CREATE INDEX ON o(n)",
    "X CREATE TABLE public.c (id integer, v text)",
    "c:I",
    "c:I",
    "X CREATE TABLE public.s (x integer)",
    "s:I",
    "X CREATE INDEX c_v ON c(v)",
    "X DROP TABLE s",
  ]);
  await same();
  const r = await client(replicaUrl);
  assert.equal((await r.query("SELECT indexname FROM pg_indexes WHERE tablename = 'o' ORDER BY 1")).rows.map((x) => x.indexname), ["o_n_idx", "o_n_idx1", "o_pkey", "o_v"]);
  assert.is((await r.query("SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'other'")).rows[0].n, 0);
  const left = (await w.query("SELECT count(*)::int AS n FROM ferry_ddl")).rows[0].n;
  assert.ok(left <= 2, `rows of ended transactions are pruned (${left} left)`);
  await w.query("DROP TABLE c");
  assert.equal(texts(await ship()), ["X DROP TABLE c"], "a DROP is recorded by sql_drop");
  await same();
  assert.is(await master.pendingChanges(0), 0);
});

test("applying (session_replication_role = replica) fires no DDL trigger; a restored snapshot carries neither the triggers nor their function", async () => {
  const url = await newDb();
  const r = await repo(url);
  await r.installCapture();
  await r.applyBatches([
    {
      lsn: 1,
      epoch: 1,
      changes: [
        [null, "X", null, "CREATE TABLE t(id int PRIMARY KEY, v text)"],
        ["t", "I", null, '[1,"a"]'],
        [null, "X", null, "ALTER TABLE t ADD COLUMN w int"],
      ],
    },
  ]);
  const c = await client(url);
  assert.is((await c.query("SELECT count(*)::int AS n FROM ferry_ddl")).rows[0].n, 0, "nothing recorded");
  assert.equal(ops((await readAll(r, 0)).changes), ["t:I"], "no DDL captured");
  await c.query("ALTER TABLE t ADD COLUMN x int");
  assert.equal(ops((await readAll(r, 0)).changes), ["t:I", ":X"], "while an origin session's DDL is");
  const replicaUrl = await newDb();
  const replica = await repo(replicaUrl);
  const snap = await r.openSnapshot();
  assert.not.ok(snap.header.schema.some((o) => /ferry_capture_ddl|EVENT TRIGGER/i.test(o.sql)), JSON.stringify(snap.header.schema));
  const restore = await replica.restoreSnapshot(snap.header.schema);
  for (let part = await snap.next(1 << 20); part; part = await snap.next(1 << 20)) await restore.rows(part.table, part.rows);
  await snap.close();
  await restore.commit({ lsn: 1, epoch: 1 });
  assert.fixture(await replica.dump(), await r.dump());
  const rc = await client(replicaUrl);
  assert.is((await rc.query("SELECT count(*)::int AS n FROM pg_event_trigger")).rows[0].n, 0);
  assert.is((await rc.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname = 'ferry_capture_ddl'")).rows[0].n, 0);
});

test("changeSeq: the WAL position with a slot; without one it stays put while the WAL moves", async () => {
  const url = await newDb();
  const r = await repo(url);
  const c = await client(url);
  const moveWal = async () => {
    await c.query("CREATE TABLE IF NOT EXISTS busy(id int PRIMARY KEY); INSERT INTO busy SELECT g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING; DELETE FROM busy");
    await c.query("CHECKPOINT");
  };
  const none = await r.changeSeq();
  await moveWal();
  assert.is(await r.changeSeq(), none, "no slot: stable");
  assert.is(none, 0);
  await r.installCapture();
  const a = await r.changeSeq();
  await moveWal();
  const b = await r.changeSeq();
  assert.ok(a > 0 && b > a, `${a} < ${b}`);
  await r.removeCapture(Number.MAX_SAFE_INTEGER);
  const last = await r.changeSeq();
  assert.ok(last >= b);
  await moveWal();
  assert.is(await r.changeSeq(), last, "demoted: the last value while the slot existed");
});

/** pgbench from PostgreSQL's own bindir, or PATH. */
function pgbench(): string {
  try {
    const p = join(findPgBin(), "pgbench");
    if (existsSync(p)) return p;
  } catch {
    // not installed as a server: PATH
  }
  return "pgbench";
}

async function runPgbench(url: string, args: string[]): Promise<void> {
  const u = new URL(url);
  const child = spawn(pgbench(), [...args, "-h", u.hostname, "-p", u.port, "-U", "postgres", u.pathname.slice(1)], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (out += d));
  const code = await new Promise<number | null>((res) => child.on("exit", res));
  assert.is(code, 0, `pgbench ${args.join(" ")}:\n${out}`);
}

test("pgbench -i and pgbench runs on a captured master: shipped in batches, the replica's dump equals the master's", async () => {
  const { master, replica, masterUrl } = await pair();
  let from = 0;
  let lsn = 0;
  /** Reads until a read finds nothing more (one read ends at the first transaction past a peek's bound). */
  const shipAll = async () => {
    let total = 0;
    for (;;) {
      const read = master.readChanges(from, { partBytes: 256 * 1024 });
      let batch: Change[] = [];
      const flush = async () => {
        if (batch.length > 0) await replica.applyBatches([{ lsn: ++lsn, epoch: 1, changes: batch }]);
        batch = [];
      };
      let n = 0;
      for await (const part of read) {
        batch.push(...(JSON.parse(Buffer.from(part.data).toString()) as Change[]));
        n += part.count;
        if (batch.length >= 5000) await flush();
      }
      await flush();
      from = Math.max(from, read.reached());
      await master.confirmCapture(from);
      if (n === 0) return total;
      total += n;
    }
  };
  await runPgbench(masterUrl, ["-i", "-s", "1"]);
  assert.ok((await shipAll()) > 100_000);
  assert.fixture(await replica.dump(), await master.dump());
  await runPgbench(masterUrl, ["-c", "2", "-j", "1", "-t", "200"]);
  await shipAll();
  assert.fixture(await replica.dump(), await master.dump());
  const cols = await replica.tableColumns("pgbench_history");
  assert.equal(cols?.rows, 400);
  assert.equal(cols?.key, ["tid", "bid", "aid", "delta", "mtime", "filler"], "no primary key: every column");
  // Again: DROP TABLE (sql_drop) and everything after it.
  await runPgbench(masterUrl, ["-i", "-s", "1"]);
  await shipAll();
  assert.fixture(await replica.dump(), await master.dump());
  assert.is((await replica.tableColumns("pgbench_history"))?.rows, 0);
});

// --- crash safety and positions ---------------------------------------------------------------

test("capture is crash-safe: reads repeat until confirmed, `from` skips what the spool holds, upto bounds", async () => {
  const { master, sql } = await pair();
  await sql("CREATE TABLE t(id int PRIMARY KEY)");
  for (let i = 1; i <= 3; i++) await sql(`INSERT INTO t VALUES (${i})`);
  const one = await readAll(master, 0);
  const two = await readAll(master, 0);
  assert.equal(two, one, "nothing is released before confirmCapture");
  assert.is(one.changes.length, 4);
  const ends = [...new Set(one.changes.map((c) => c[0]))];
  assert.is(ends.length, 4);
  const skipped = await readAll(master, ends[1]);
  assert.equal(skipped.changes, one.changes.slice(2), "transactions ending at or before `from` are skipped");
  const bounded = await readAll(master, 0, ends[2]);
  assert.equal(bounded.changes, one.changes.slice(0, 3));
  assert.is(bounded.reached, ends[2]);
  assert.ok(one.reached >= ends[3]);
  assert.ok((await master.changeSeq()) >= one.reached);
  assert.is(await master.pendingChanges(ends[1]), 2);
  await master.confirmCapture(ends[1]);
  const after = await readAll(master, 0);
  assert.equal(after.changes, one.changes.slice(2), "confirmed changes are gone");
  await master.confirmCapture(ends[0]); // behind the slot: ignored
  await master.writeHeartbeat("n1", 1, 123);
  assert.is(await master.pendingChanges(ends[3]), 0, "heartbeats do not count");
  assert.is(await master.lastHeartbeatTs(), 123);
});

test("a snapshot on the master matches its capture position, with writers running; restore then later changes gives the master's dump", async () => {
  const { master, replica, sql, masterUrl } = await pair();
  await sql("CREATE TABLE t(id int PRIMARY KEY, v text, blob bytea); CREATE TABLE u(k text PRIMARY KEY, n serial)");
  await sql("INSERT INTO t SELECT g, 'v' || g, '\\x00ff' FROM generate_series(1, 2000) g; INSERT INTO u(k) VALUES ('a'), ('b')");
  await master.confirmCapture(await master.changeSeq());
  const w = await client(masterUrl);
  let stop = false;
  let written = 0;
  const writer = (async () => {
    while (!stop) {
      written++;
      await w.query("INSERT INTO t VALUES ($1, 'w') ON CONFLICT (id) DO UPDATE SET v = 'w2'", [3000 + (written % 50)]);
      await w.query("UPDATE u SET n = n + 1 WHERE k = 'a'");
    }
  })();
  await waitFor("writes", () => written > 20);
  const snap = await master.openSnapshot();
  const at = written;
  await waitFor("more writes", () => written > at + 20);
  stop = true;
  await writer;
  assert.equal(snap.header.tables.map((t) => t.name), ["t", "u", "ferry_heartbeat", "ferry_requests"]);
  assert.equal(snap.header.fingerprint, await master.fingerprint());
  const restore = await replica.restoreSnapshot(snap.header.schema);
  let rowsCopied = 0;
  let counterAt = -1;
  for (let part = await snap.next(4096); part; part = await snap.next(4096)) {
    rowsCopied += part.rows.length;
    for (const r of part.rows) if (part.table === "u" && r.startsWith('["a",')) counterAt = JSON.parse(r)[1];
    await restore.rows(part.table, part.rows);
  }
  await snap.close();
  await restore.commit({ lsn: 1, epoch: 1 });
  assert.is(rowsCopied, snap.header.tables.reduce((s, t) => s + t.rows, 0));
  const { changes } = await readAll(master, snap.header.seq);
  assert.ok(changes.length > 0);
  // Every increment of the counter after the snapshot is read, and none before: exactly the next values.
  const counter = changes.map((c) => JSON.parse(c[2]) as Change).filter((c) => c[0] === "u").map((c) => JSON.parse(c[3]!)[1] as number);
  assert.ok(counterAt > 0 && counter.length >= 20, `${counterAt}, ${counter.length}`);
  assert.equal(counter, counter.map((_, i) => counterAt + 1 + i));
  await replica.applyBatches([{ lsn: 2, epoch: 1, changes: JSON.parse(`[${changes.map((c) => c[2]).join(",")}]`) }]);
  assert.fixture(await replica.dump(), await master.dump());
  assert.equal(await replica.appliedPosition(), { lsn: 2, epoch: 1 });
  assert.is(await replica.fingerprint(), await master.fingerprint());
});

test("table reader: key order as compareKeys, partitions, after, since; JSON objects", async () => {
  const { master, sql } = await pair();
  await sql("CREATE TABLE s(k text PRIMARY KEY, n int8, b bytea, ts int8)");
  await sql("INSERT INTO s VALUES ('b', 9223372036854775807, '\\x01', 5), ('B', 1, NULL, 1), ('a', 2, NULL, 9), ('é', 3, NULL, 7)");
  const read = async (opts: object) => {
    const r = await master.openTableReader({ table: "s", ...opts });
    let text = "";
    for (let p = await r.next(10); p; p = await r.next(10)) text += p.text;
    await r.close();
    return { header: r.header, lines: text.split("\n").filter(Boolean) };
  };
  const all = await read({});
  assert.equal(all.header.table.key, ["k"]);
  assert.equal(all.lines, [
    '{"k":"B","n":1,"b":null,"ts":1}',
    '{"k":"a","n":2,"b":null,"ts":9}',
    '{"k":"b","n":9223372036854775807,"b":{"$blob":"01"},"ts":5}',
    '{"k":"é","n":3,"b":null,"ts":7}',
  ]);
  assert.equal((await read({ after: '["a"]' })).lines.length, 2);
  assert.equal((await read({ since: { column: "ts", min: 6 } })).lines.length, 2);
  const parts = await Promise.all([0, 1, 2].map((index) => read({ partition: { index, count: 3 } })));
  assert.equal(parts.flatMap((p) => p.lines).sort(), [...all.lines].sort());
  await rejectsCode(() => master.openTableReader({ table: "nope" }), "NOT_FOUND");
  const cols = await master.tableColumns("s");
  assert.equal(cols, { name: "s", db: "public", columns: ["k", "n", "b", "ts"], key: ["k"], types: ["text", "bigint", "bytea", "bigint"], rows: 4, kinds: ["text", "integer", "blob", "integer"] });
});

test("installCapture moves serial and identity sequences past the largest value (a promoted replica)", async () => {
  const { ship, sql, replica, replicaUrl } = await pair();
  await sql("CREATE TABLE s(id serial PRIMARY KEY, v text); CREATE TABLE i(id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v text)");
  await sql("INSERT INTO s(v) SELECT 'x' FROM generate_series(1, 5); INSERT INTO i(v) SELECT 'x' FROM generate_series(1, 3)");
  await ship();
  await replica.installCapture();
  const c = await client(replicaUrl);
  assert.equal((await c.query("INSERT INTO s(v) VALUES ('new') RETURNING id")).rows, [{ id: 6 }]);
  assert.equal((await c.query("INSERT INTO i(v) VALUES ('new') RETURNING id")).rows, [{ id: 4 }]);
  await replica.removeCapture(Number.MAX_SAFE_INTEGER);
});

// --- errors -------------------------------------------------------------------------------------

test("a wrong password is REPO_UNAVAILABLE and the message holds no password", async () => {
  const admin = await client(server.url);
  await admin.query("CREATE ROLE pwuser LOGIN PASSWORD 'right-pw'");
  const hba = join(server.dir, "data", "pg_hba.conf");
  const before = readFileSync(hba, "utf8");
  writeFileSync(hba, `host all pwuser 127.0.0.1/32 scram-sha-256\n${before}`);
  await admin.query("SELECT pg_reload_conf()");
  try {
    const url = `postgres://pwuser:wrong-pw@127.0.0.1:${server.port}/postgres`;
    const r = await repo(url, false);
    assert.not.match(r.location.url, "wrong-pw");
    const err = await rejectsCode(() => r.checkAvailable(), "REPO_UNAVAILABLE");
    assert.not.match(err.message, "wrong-pw");
    assert.match(err.hint ?? "", "password");
    const good = await repo(`postgres://pwuser@127.0.0.1:${server.port}/postgres`, false);
    const withPw = new PostgresRepository(good.url, { password: "right-pw" });
    open.push(withPw);
    await withPw.checkAvailable();
    await rejectsCode(() => withPw.applyBatches([{ lsn: 1, epoch: 1, changes: [] }]), "SQL_ERROR", "applying changes needs a superuser");
  } finally {
    writeFileSync(hba, before);
    await admin.query("SELECT pg_reload_conf()");
  }
});

test("a stopped server is REPO_UNAVAILABLE; the same object works again once it is back", async () => {
  const url = await newDb();
  const r = await repo(url);
  await r.checkAvailable();
  await server.stop("fast");
  try {
    await rejectsCode(() => r.checkAvailable(), "REPO_UNAVAILABLE", "unavailable");
    await rejectsCode(() => r.changeSeq(), "REPO_UNAVAILABLE");
  } finally {
    await server.start();
  }
  await waitFor("the repository back", async () => (await r.checkAvailable(), true));
  assert.is(await r.changeSeq(), 0, "no slot: nothing captured");
});

test("wal_level other than logical: installCapture says how to fix it", async () => {
  const admin = await client(server.url);
  // PostgreSQL does not even start with wal_level below logical while a logical slot exists.
  await admin.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots");
  await admin.query("ALTER SYSTEM SET wal_level = replica");
  await admin.end();
  await server.stop("fast");
  await server.start();
  try {
    const r = await repo(await newDb());
    const err = await rejectsCode(() => r.installCapture(), "SQL_ERROR", "wal_level = logical");
    assert.match(err.hint ?? "", "postgresql.conf");
  } finally {
    const c = await client(server.url);
    await c.query("ALTER SYSTEM RESET wal_level");
  }
});

test.run();
