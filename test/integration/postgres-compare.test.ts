/**
 * ferry compare and ferry repair on PostgreSQL servers the test starts itself: rows changed straight
 * in a replica's database are found while ferry sql writes go on (exact types: -0 against 0, NaN,
 * numeric beyond a double, bytea, NULL against ''; a table without a primary key), repaired, and a
 * second compare is clean.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import pg from "pg";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { startWriter } from "../helpers/workload.js";
import type { CompareReport } from "../../src/client/compare.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

const found = (r: CompareReport) => r.tables.flatMap((t) => t.diffs.map((d) => `${t.node} ${t.table} ${d.key} ${d.kind}`)).sort();

async function compareJson(): Promise<{ code: number | null; report: CompareReport; stderr: string }> {
  const r = await cl.cli(["compare", "--json"]);
  return { code: r.code, report: JSON.parse(r.stdout || "null") as CompareReport, stderr: r.stderr };
}

test("PostgreSQL: rows changed in a replica's database are found exactly while writes go on, repaired, and compare is clean", async () => {
  cl = await TestCluster.masterAndSlaves({ postgres: true, slaves: ["s1"], config: { compare: { chunkRows: 300 } } });
  await cl.sql(`CREATE TABLE t(id int PRIMARY KEY, f float8, n numeric, b bytea, s text);
    CREATE TABLE bag(v text, w int);
    CREATE TABLE w(id bigint PRIMARY KEY, who text);
    INSERT INTO t SELECT g, g / 7.0, g * 1000000000000000000000, '\\x00ff', 'r' || g FROM generate_series(1, 1000) g;
    INSERT INTO bag VALUES ('a', 1), ('a', 1), ('b', 2)`);
  await cl.sql(`UPDATE t SET f = 0, n = 'NaN', s = '' WHERE id IN (10, 20, 30)`);
  await cl.waitConverged("m1", ["s1"]);
  const writer = startWriter(cl, { table: "w" });
  await cl.until("the writer has written", () => writer.acked().length > 20);
  const s1 = new pg.Client({ connectionString: cl.repoUrl("s1") });
  await s1.connect();
  try {
    await s1.query(`UPDATE t SET f = '-0' WHERE id = 10; UPDATE t SET n = 0 WHERE id = 20; UPDATE t SET s = NULL WHERE id = 30;
      UPDATE t SET b = '\\x00fe' WHERE id = 500; DELETE FROM t WHERE id = 999; INSERT INTO t VALUES (5000, 1, 1, NULL, 'stray');
      DELETE FROM bag WHERE ctid = (SELECT ctid FROM bag WHERE v = 'a' LIMIT 1); INSERT INTO bag VALUES ('c', 3)`);
  } finally {
    await s1.end();
  }
  const first = await compareJson();
  assert.is(first.code, 1, first.stderr);
  assert.equal(found(first.report), [
    's1 bag ["a",1] missing',
    's1 bag ["c",3] extra',
    "s1 t [10] changed",
    "s1 t [20] changed",
    "s1 t [30] changed",
    "s1 t [5000] extra",
    "s1 t [500] changed",
    "s1 t [999] missing",
  ]);
  const fixed = await cl.cli(["repair", "--node", "s1"]);
  assert.is(fixed.code, 0, fixed.stderr);
  const second = await compareJson();
  assert.is(second.code, 0, second.stderr + JSON.stringify(found(second.report)));
  await writer.stop();
  await cl.waitConverged("m1", ["s1"]);
});

test.run();
