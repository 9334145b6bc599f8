/**
 * Masters and replicas on PostgreSQL servers the test starts itself (initdb into temp dirs, free
 * ports, wal_level = logical), with real ferry processes and a real nats-server: exact types,
 * whole transactions, kill -9 of either side, one kind per cluster. (pgbench: postgres-pgbench.test.ts.)
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import pg from "pg";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { idsIn, startWriter } from "../helpers/workload.js";

let cl: TestCluster;
const clients: pg.Client[] = [];

test.after.each(async () => {
  for (const c of clients.splice(0)) await c.end().catch(() => {});
  await cl?.close();
  await cleanup();
});

async function threeNodes(config?: Record<string, unknown>) {
  return (cl = await TestCluster.masterAndSlaves({ config, postgres: true }));
}

async function connect(node: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: cl.repoUrl(node) });
  clients.push(c);
  await c.connect();
  return c;
}

test("every type round-trips exactly through ferry sql, an outside writer and the replicas", async () => {
  await threeNodes();
  await cl.sql(`CREATE TABLE t(
    id int PRIMARY KEY, a int2, b int4, c int8, n numeric, f float8, s text, v varchar(20), ok bool, bin bytea,
    d date, ts timestamp, tz timestamptz, u uuid, j json, jb jsonb, ai int[], at text[])`);
  await cl.sql(`INSERT INTO t VALUES
    (1, -32768, 2147483647, 9223372036854775807, 123456789012345678901234567890.123, 1.0, 'quote '' and ü', 'v', true, '\\x00ff10',
     '2024-02-29', '2024-02-29 23:59:59.999999', '2024-02-29 23:59:59.5+05:30', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
     '{"b": 1,  "a": [1, 2]}', '{"b": 1, "a": [1, 2]}', '{1,NULL,3}', '{"x y",NULL,""}'),
    (2, NULL, NULL, -9223372036854775808, 'NaN', 'NaN', NULL, NULL, false, '\\x', NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL)`);
  const outside = await connect("m1");
  await outside.query(`INSERT INTO t(id, f, n, c) VALUES (3, 'Infinity', -0.0000000000000000001, 9007199254740993), (4, '-Infinity', 1e-30, 1)`);
  const dump = await cl.waitConverged("m1", ["s1", "s2"]);
  assert.match(dump, "9223372036854775807");
  assert.match(dump, "123456789012345678901234567890.123");
  assert.match(dump, "9007199254740993");
  const read = async (node: string) => (await (await connect(node)).query({ text: "SELECT * FROM t ORDER BY id", rowMode: "array", types: { getTypeParser: () => (v: string) => v } })).rows;
  assert.equal(await read("s1"), await read("m1"), "every value's text is the same on the replica");
});

test("a multi-statement transaction is never seen half-applied on a replica", async () => {
  await threeNodes();
  const N = 20;
  await cl.sql(`CREATE TABLE acct(id int PRIMARY KEY, balance bigint NOT NULL)`);
  await cl.sql(`INSERT INTO acct SELECT g, 1000 FROM generate_series(0, ${N - 1}) g`);
  await cl.waitConverged("m1", ["s1"]);
  const replica = await connect("s1");
  let samples = 0;
  let bad: string | null = null;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const r = await replica.query(`SELECT sum(balance)::text AS s, count(*)::int AS n FROM acct`);
      samples++;
      if (r.rows[0].s !== String(N * 1000) || r.rows[0].n !== N) bad = r.rows[0].s;
    }
  })();
  const outside = await connect("m1");
  for (let i = 0; i < 150; i++) {
    const a = i % N;
    const b = (i * 7 + 3) % N;
    if (a === b) continue;
    const move = `UPDATE acct SET balance = balance - ${i} WHERE id = ${a}; UPDATE acct SET balance = balance + ${i} WHERE id = ${b}`;
    // Half through ferry sql (one script, one transaction), half by an outside client's transaction.
    if (i % 2) await cl.sql(move);
    else await outside.query(`BEGIN; ${move}; COMMIT`);
  }
  await cl.waitConverged("m1", ["s1"]);
  sampling = false;
  await sampler;
  assert.ok(samples > 50, `sampled ${samples} times`);
  assert.is(bad, null, `a sample saw a partial transaction (sum ${bad})`);
});

test("kill -9 of the master's ferry and then of a replica's, mid-stream: they converge, nothing lost or doubled", async () => {
  await threeNodes();
  await cl.sql("CREATE TABLE w(id bigint PRIMARY KEY, who text)");
  const w = startWriter(cl, { who: "k" });
  // An outside writer too: its rows are captured from the slot, whoever holds the ferry process.
  const outside = await connect("m1");
  await outside.query("CREATE TABLE o(id bigint PRIMARY KEY)").catch(() => {});
  let o = 0;
  let writing = true;
  const outsideWrites = (async () => {
    while (writing) await outside.query(`INSERT INTO o VALUES (${o++})`);
  })();
  // Awaited below; until then a failed step's cleanup ends this client, and that must not end the process before the step's error is reported.
  outsideWrites.catch(() => {});
  await waitFor("some writes", () => w.acked().length > 100);
  const before = w.acked().length;
  await cl.killAndRestart("m1", "master");
  await cl.waitMaster("m1");
  await cl.until("writes after the master is back", () => w.acked().length > before + 100, { timeoutMs: 30_000 });
  const s1 = cl.nodes.get("s1")!;
  s1.kill("SIGKILL");
  await s1.exited;
  await waitFor("writes while s1 is down", () => w.acked().length > before + 200);
  cl.startNode("s1", "slave");
  await waitFor("writes after s1 is back", () => w.acked().length > before + 300, { timeoutMs: 30_000 });
  writing = false;
  await outsideWrites;
  await w.stop();
  const dump = await cl.waitConverged("m1", ["s1", "s2"], 60_000);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  for (const r of w.acked()) assert.ok(ids.includes(r.id), `acknowledged row ${r.id} present`);
  assert.is(idsIn(dump, "o").length, o, "every outside row, once");
});

test("a cluster is of one kind: a SQLite replica of a PostgreSQL master is refused at start", async () => {
  cl = await TestCluster.start({ postgres: true });
  await cl.pgServer("m1");
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  const r = await cl.cli(["start", "--role", "slave", "--node", "x1", "--repo", `sqlite:${join(cl.dir, "x1.db")}`, "--data", join(cl.dir, "x1")]);
  assert.is(r.code, 1, r.stderr);
  assert.match(r.stderr, /node m1 replicates a postgres repository; this node's is sqlite/);
});

test.run();
