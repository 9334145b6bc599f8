/**
 * ferry compare and ferry repair with real processes: rows changed straight in a slave's file are
 * found (and nothing else) while ferry sql writes go on, repaired row by row, and a second compare
 * is clean; values that differ only in type or by one unit in the 17th digit are found; holds end
 * when their compare can no longer finish.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import Database from "better-sqlite3";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { startWriter } from "../helpers/workload.js";
import { ENDPOINTS } from "../../src/nats/protocol.js";
import { call } from "../../src/nats/rpc.js";
import type { CompareReport, RepairReport } from "../../src/client/compare.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

const CONFIG = { compare: { chunkRows: 400 } };

/** The differing rows per node and table, as "node table key kind". */
const found = (r: CompareReport) => r.tables.flatMap((t) => t.diffs.map((d) => `${t.node} ${t.table} ${d.key} ${d.kind}`)).sort();

async function compareJson(args: string[] = []): Promise<{ code: number | null; report: CompareReport; stderr: string }> {
  const r = await cl.cli(["compare", "--json", ...args]);
  return { code: r.code, report: JSON.parse(r.stdout || "null") as CompareReport, stderr: r.stderr };
}

/** Writes to a slave's repository file as an outside program would (the sqlite3 shell, an application). */
function outsideWrite(node: string, sql: string): void {
  const db = new Database(cl.repo(node), { timeout: 10_000 });
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

test("rows updated, inserted and deleted in a slave's file while writes go on: compare finds exactly those keys, repair fixes only them, compare is clean", async () => {
  cl = await TestCluster.masterAndSlaves({ config: CONFIG });
  await cl.sql(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) INSERT INTO t SELECT i, 'row-' || i FROM n`);
  await cl.waitConverged("m1", ["s1", "s2"]);
  const writer = startWriter(cl, { table: "w" });
  await cl.until("the writer has written", () => writer.acked().length > 20);
  outsideWrite("s1", `UPDATE t SET v = 'changed' WHERE id = 1234; INSERT INTO t VALUES (5000, 'stray'); DELETE FROM t WHERE id = 2999`);

  const first = await compareJson();
  assert.is(first.code, 1, first.stderr);
  assert.equal(found(first.report), ["s1 t [1234] changed", "s1 t [2999] missing", "s1 t [5000] extra"]);
  const t1 = first.report.tables.find((t) => t.node === "s1" && t.table === "t")!;
  assert.is(t1.rows, 3000);
  assert.is(t1.chunks, 8);
  assert.ok(t1.differingChunks <= 2, `only the chunks with those keys are read row by row (${t1.differingChunks})`);
  assert.ok(first.report.tables.some((t) => t.node === "s2" && t.table === "w" && t.rows > 0), "the table being written is compared too");

  // Many small chunks come in pages, and a throttled compare reads no faster than its rate.
  const paged = await cl.cli(["compare", "--node", "s1", "--table", "t", "--json"], { FERRY_COMPARE_CHUNK_ROWS: "10", FERRY_COMPARE_ROWS_PER_SECOND: "6000" });
  const pagedReport = JSON.parse(paged.stdout) as CompareReport;
  assert.equal(found(pagedReport), ["s1 t [1234] changed", "s1 t [2999] missing", "s1 t [5000] extra"]);
  assert.is(pagedReport.tables[0].chunks, 300);
  assert.ok(pagedReport.tables[0].ms >= 450, `3000 rows at 6000 rows/s take at least 0.5 s (${pagedReport.tables[0].ms} ms)`);

  const text = await cl.cli(["compare", "--node", "s1", "--table", "t"]);
  assert.is(text.code, 1);
  assert.match(text.stdout, /t on s1: 8 chunks, 3000 rows, \d chunks differ, 3 rows differ/);
  assert.match(text.stdout, /changed key \[1234\]\s+master \[1234,"row-1234"\]\s+s1 \[1234,"changed"\]/);

  const before = { m1: cl.dump("m1").split("\n").filter((l) => l.startsWith("t|")).join("\n"), s2: cl.dump("s2").split("\n").filter((l) => l.startsWith("t|")).join("\n") };
  const fixed = await cl.cli(["repair", "--node", "s1", "--json"]);
  assert.is(fixed.code, 0, fixed.stderr);
  const rep = JSON.parse(fixed.stdout) as RepairReport;
  assert.is(rep.changed, 3);

  const second = await compareJson();
  assert.is(second.code, 0, second.stderr + JSON.stringify(found(second.report)));
  assert.equal(found(second.report), []);
  assert.ok(second.report.identical);
  await writer.stop();
  assert.ok(writer.acked().length > 20);
  await cl.waitConverged("m1", ["s1", "s2"]);
  assert.is(cl.dump("m1").split("\n").filter((l) => l.startsWith("t|")).join("\n"), before.m1, "the master's rows are untouched");
  assert.is(cl.dump("s2").split("\n").filter((l) => l.startsWith("t|")).join("\n"), before.s2, "the other slave's rows are untouched");
});

test("values that differ only in type or in their last digit are found: integers beyond 2^53, 1.0 against 1, NULL against '', blobs", async () => {
  cl = await TestCluster.masterAndSlaves({ config: CONFIG, slaves: ["s1"] });
  await cl.sql(`CREATE TABLE x(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
    INSERT INTO x VALUES ('big', 9007199254740993), ('real', 1.0), ('empty', ''), ('blob', x'00ff'), ('text', '1'), ('same', 0.30000000000000004)`);
  await cl.waitConverged("m1", ["s1"]);
  const clean = await compareJson();
  assert.is(clean.code, 0, JSON.stringify(found(clean.report)));
  outsideWrite("s1", `UPDATE x SET v = 9007199254740992 WHERE k = 'big'; UPDATE x SET v = 1 WHERE k = 'real'; UPDATE x SET v = NULL WHERE k = 'empty';
    UPDATE x SET v = x'00fe' WHERE k = 'blob'; UPDATE x SET v = 1 WHERE k = 'text'`);
  const r = await compareJson(["--node", "s1"]);
  assert.is(r.code, 1);
  assert.equal(found(r.report), ['s1 x ["big"] changed', 's1 x ["blob"] changed', 's1 x ["empty"] changed', 's1 x ["real"] changed', 's1 x ["text"] changed']);
  assert.is((await cl.cli(["repair", "--node", "s1"])).code, 0);
  assert.is((await compareJson()).code, 0);
  assert.is(cl.dump("s1"), cl.dump("m1"));
});

test("repair refuses a difference past compare.maxRepairRows (resync instead), and a second repair of a held node is answered at once with IN_PROGRESS", async () => {
  cl = await TestCluster.masterAndSlaves({ config: CONFIG, slaves: ["s1"] });
  await cl.sql(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')`);
  await cl.waitConverged("m1", ["s1"]);
  outsideWrite("s1", `DELETE FROM t`);
  const big = await cl.cli(["repair", "--node", "s1"], { FERRY_COMPARE_MAX_REPAIR_ROWS: "2" });
  assert.is(big.code, 1);
  assert.match(big.stderr, /s1 differs from the master in 3 rows, more than compare.maxRepairRows \(2\) \[REPAIR_TOO_LARGE\]/);
  assert.match(big.stderr, /hint: run: ferry resync --node s1/);
  assert.is((await compareJson()).code, 1, "nothing was written");

  const c = await cl.client();
  const subject = c.subj.node("s1").compare;
  await call(c.nc, ENDPOINTS.compare, subject, { op: "hold", holder: "another-repair" }, { timeoutMs: 5000 });
  const started = Date.now();
  const busy = await cl.cli(["repair", "--node", "s1"]);
  assert.is(busy.code, 1);
  assert.match(busy.stderr, /\[IN_PROGRESS\]/);
  assert.ok(Date.now() - started < 5000, "answered at once");
  await call(c.nc, ENDPOINTS.compare, subject, { op: "release", holder: "another-repair" }, { timeoutMs: 5000 });

  const ok = await cl.cli(["repair", "--node", "s1"]);
  assert.is(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /s1: 3 rows changed/);
  const again = await cl.cli(["repair", "--node", "s1"]);
  assert.match(again.stdout, /s1: 0 rows changed/, "a repeated repair changes nothing");
  assert.is((await compareJson()).code, 0);
});

test("a compare that stops midway (its holder gone) lets go of the replica after compare.holdMs: nothing is lost", async () => {
  cl = await TestCluster.masterAndSlaves({ config: { compare: { holdMs: 1500 } }, slaves: ["s1"] });
  await cl.sql(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`);
  await cl.waitConverged("m1", ["s1"]);
  const c = await cl.client();
  const held = await call<{ applied: number }>(c.nc, ENDPOINTS.compare, c.subj.node("s1").compare, { op: "hold", holder: "gone" }, { timeoutMs: 5000 });
  const heldAt = Date.now();
  const w = await cl.sql(`INSERT INTO t VALUES (1, 'while held')`);
  assert.ok(w.lsn > held.applied);
  await cl.waitConverged("m1", ["s1"], 10_000);
  assert.ok(Date.now() - heldAt >= 1400, "a held replica applies nothing new until the hold expires");
  const master = await compareJson(["--node", "m1"]);
  assert.is(master.code, 2);
  assert.match(master.stderr, /m1 is the master; compare a replica with it \[USAGE\]/);
});

test("a hold taken under the old master ends when the replica follows a new one: it does not wait for compare.holdMs", async () => {
  cl = await TestCluster.masterAndSlaves({ config: { compare: { holdMs: 60_000 } } });
  await cl.sql(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)`);
  await cl.waitConverged("m1", ["s1", "s2"]);
  const c = await cl.client();
  // A compare of m1's that stopped answering: its client would let go only after compare.timeoutMs.
  await call(c.nc, ENDPOINTS.compare, c.subj.node("s1").compare, { op: "hold", holder: "under-m1" }, { timeoutMs: 5000 });
  const sw = await cl.cli(["switchover", "--to", "s2"]);
  assert.is(sw.code, 0, sw.stderr);
  await cl.waitMaster("s2");
  await cl.sql(`INSERT INTO t VALUES (1, 'written on s2')`);
  await cl.waitConverged("s2", ["s1"], 20_000);
  assert.match(cl.nodes.get("s1")!.log(), /compare hold by under-m1 ended/);
});

test.run();
