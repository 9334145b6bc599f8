/**
 * Parquet and CSV sync files read by an outside reader, DuckDB, with real processes (nats-server,
 * ferry nodes, collectors, synctools, SQLite repositories): the table's types and every value
 * come back; a mode-2 stream replayed in DuckDB (latest _op per key) is the table; kill -9 of the
 * synctool and of a collector leave every row exactly once; a full disk FAILS the subtasks with
 * the OS's error and the task resumes where it stopped once there is space again.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { cleanup, tempDir } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { duck, duckTypes, lit } from "../helpers/duckdb.js";
import { readFiles, syncCluster, type SyncCluster } from "../helpers/sync.js";

let sc: SyncCluster;
const mounts: string[] = [];

test.after.each(async () => {
  await sc?.cl.close();
  for (const m of mounts.splice(0)) execFileSync("umount", [m]);
  await cleanup();
});

const json = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));

/** Rows of a repository's table by a query, 64-bit integers exact. */
function sqliteRows(repo: string, sql: string): Record<string, unknown>[] {
  const db = new Database(repo, { readonly: true });
  try {
    return db.prepare(sql).safeIntegers(true).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

const parquetOf = (dest: string, table: string) => `read_parquet(${lit(join(dest, table, "**", "*.parquet"))}, hive_partitioning = true)`;
const csvOf = (dest: string, table: string) => `read_csv(${lit(join(dest, table, "**", "*.csv"))}, hive_partitioning = true, header = true, allow_quoted_nulls = false)`;

const EVERY_TYPE = `
  CREATE TABLE every(id INTEGER PRIMARY KEY, big INTEGER, r REAL, t TEXT, b BLOB);
  WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000)
  INSERT INTO every SELECT x,
    CASE WHEN x % 97 = 0 THEN NULL WHEN x = 1 THEN 9223372036854775807 WHEN x = 2 THEN -9223372036854775808 ELSE x * 92233720368547 END,
    CASE WHEN x % 11 = 0 THEN NULL ELSE x / 7.0 END,
    CASE x % 5 WHEN 0 THEN 'plain ' || x WHEN 1 THEN 'comma, "quote" ' || x WHEN 2 THEN 'line' || char(13, 10) || 'break ' || x WHEN 3 THEN 'ünï ' || x ELSE '' END,
    CASE WHEN x % 10 = 0 THEN NULL WHEN x % 10 = 1 THEN zeroblob(0) ELSE randomblob(8) END
  FROM n`;
const AGGREGATES = "count(*) AS n, sum(id) AS ids, min(big) AS big_min, max(big) AS big_max, min(r) AS r_min, max(r) AS r_max, min(t) AS t_min, max(t) AS t_max, count(t) AS t_n, count(b) AS b_n";

test("mode 0 of 100,000 rows of every type: DuckDB's read_parquet and read_csv give the replica's aggregates, types and rows", async () => {
  sc = await syncCluster(["s1"], { sync: { maxPackBytes: 65536 } });
  sc.collector("c1", "h1", "s1");
  sc.cl.startProcess("st1", "synctool");
  const r = await sc.cl.sql(EVERY_TYPE);
  await sc.caughtUp(r.lsn, ["s1"]);
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  const replica = sc.cl.repo("s1");
  const wantAgg = json(sqliteRows(replica, `SELECT ${AGGREGATES} FROM every`));
  const wantRows = json(sqliteRows(replica, "SELECT id, big, r, t, CASE WHEN b IS NULL THEN NULL ELSE hex(b) END AS b FROM every ORDER BY id"));

  const pq = tempDir("ferry-dest-");
  const created = await sc.cliJson(["task", "create", "-t", "main.every", "-m", "0", "-d", pq]);
  assert.is(created.format, "parquet", "parquet is the default format");
  await sc.waitTaskGone("main.every", 120_000);
  assert.equal(readdirSync(join(pq, "every")).sort(), ["part=0", "part=1", "part=2", "part=3"]);
  const types = await duckTypes(`SELECT * FROM ${parquetOf(pq, "every")}`);
  assert.equal(types, { id: "BIGINT", big: "BIGINT", r: "DOUBLE", t: "VARCHAR", b: "BLOB", part: "BIGINT" });
  assert.is(json(await duck(`SELECT ${AGGREGATES} FROM ${parquetOf(pq, "every")}`)), wantAgg, "the same aggregates as on the replica");
  assert.is(json(await duck(`SELECT id, big, r, t, b FROM ${parquetOf(pq, "every")} ORDER BY id`)), wantRows, "every row and value");
  const parts = await duck(`SELECT count(*) AS n FROM ${parquetOf(pq, "every")} WHERE id % 4 <> part`);
  assert.is(parts[0].n, 0n, "each row in its partition's directory");
  // 64 KiB packs (about 40 a partition) are combined: one file, one snappy row group, a partition.
  const meta = await duck(`SELECT DISTINCT file_name, row_group_id, row_group_num_rows, compression FROM parquet_metadata(${lit(join(pq, "every", "**", "*.parquet"))})`);
  assert.is(new Set(meta.map((m) => m.file_name)).size, 4);
  assert.ok(meta.every((m) => m.compression === "SNAPPY" && m.row_group_id === 0n && Number(m.row_group_num_rows) >= 20_000), json(meta.slice(0, 3)));

  const csv = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "--format", "csv", "-t", "main.every", "-m", "0", "-d", csv]);
  await sc.waitTaskGone("main.every", 120_000);
  const csvTypes = await duckTypes(`SELECT * FROM ${csvOf(csv, "every")}`);
  assert.equal([csvTypes.id, csvTypes.big, csvTypes.r, csvTypes.t], ["BIGINT", "BIGINT", "DOUBLE", "VARCHAR"]);
  assert.is(json(await duck(`SELECT ${AGGREGATES} FROM ${csvOf(csv, "every")}`)), wantAgg, "the same aggregates from CSV");
  const csvRows = await duck(`SELECT id, big, r, t, CASE WHEN b IS NULL THEN NULL ELSE substr(b, 3) END AS b FROM ${csvOf(csv, "every")} ORDER BY id`);
  assert.is(json(csvRows), wantRows, "every row and value from CSV (blobs as \\x and their HEX)");
  const status = await sc.cl.cli(["task", "status"]);
  assert.is(status.code, 0);
});

/** The table as DuckDB replays a mode-1/2 destination: the latest record per key, unless it is a delete. */
const replayed = (src: string, cols: string) =>
  `SELECT ${cols} FROM (SELECT *, row_number() OVER (PARTITION BY id ORDER BY _lsn DESC, _seq DESC) AS rn FROM ${src}) WHERE rn = 1 AND _op <> 'delete' ORDER BY id`;

test("mode 2 in Parquet with inserts, updates (also of keys) and deletes during the stream: DuckDB's replay is the table; status shows format and bytes", async () => {
  sc = await syncCluster(["s1"], { sync: { maxPackBytes: 4096, fileMaxAgeMs: 300 } });
  sc.collector("c1", "h1", "s1");
  sc.cl.startProcess("st1", "synctool");
  await sc.cl.sql(
    "CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER, pic BLOB); " +
      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000) INSERT INTO acct SELECT x, 'o' || x, x * 10, CASE WHEN x % 3 = 0 THEN x'00FF' END FROM n",
  );
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "--format", "parquet", "-t", "main.acct", "-m", "2", "-d", dest]);
  let last = 0;
  for (let i = 0; i < 30; i++) {
    const r = await sc.cl.sql(
      `INSERT INTO acct(id, owner, balance) VALUES (${5000 + i}, 'new${i}', ${i}); UPDATE acct SET balance = balance + 1, owner = NULL WHERE id = ${i + 1}; ` +
        `DELETE FROM acct WHERE id = ${500 + i}; UPDATE acct SET id = ${9000 + i} WHERE id = ${100 + i}; UPDATE acct SET pic = x'${(i + 16).toString(16)}' WHERE id = ${5000 + i}`,
    );
    last = r.lsn;
  }
  await sc.caughtUp(last, ["s1"]);
  const want = json(sqliteRows(sc.cl.repo("m1"), "SELECT id, owner, balance, CASE WHEN pic IS NULL THEN NULL ELSE hex(pic) END AS pic FROM acct ORDER BY id"));
  const src = parquetOf(dest, "acct");
  await waitFor("DuckDB's replay of the files is the table", async () => json(await duck(replayed(src, "id, owner, balance, pic"))) === want, { timeoutMs: 60_000, intervalMs: 500 });
  const ops = (await duck(`SELECT _op, count(*) AS n FROM ${src} GROUP BY _op ORDER BY _op`)).map((o) => o._op);
  assert.equal(ops, ["delete", "insert", "update"]);
  const dup = await duck(`SELECT count(*) - count(DISTINCT (part, _seq, id)) AS d FROM ${src}`);
  assert.is(dup[0].d, 0n, "no record written twice");
  const types = await duckTypes(`SELECT * FROM ${src}`);
  assert.equal(types, { id: "BIGINT", owner: "VARCHAR", balance: "BIGINT", pic: "BLOB", _op: "VARCHAR", _lsn: "BIGINT", _seq: "BIGINT", part: "BIGINT" });
  const [t] = await sc.tasks();
  assert.is(t.format, "parquet");
  const onDisk = readdirSync(join(dest, "acct")).reduce((n, d) => n + Number(execFileSync("du", ["-sb", "--apparent-size", join(dest, "acct", d)]).toString().split("\t")[0]), 0);
  assert.ok(t.bytes > 0 && t.bytes <= onDisk, `status counts the files' bytes (${t.bytes} of ${onDisk})`);
  const text = await sc.cl.cli(["task", "status"]);
  assert.match(text.stdout, /main\.acct: mode 2 FULL_AND_CONTINUOUS -> .* \(parquet\)/);
  assert.match(text.stdout, new RegExp(`table main\\.acct: RUNNING, \\d+ rows, ${t.bytes} bytes of parquet`));
});

test("kill -9 of the synctool between renaming a Parquet file and saving its progress, then of the collector: every row once", async () => {
  sc = await syncCluster(["s1", "s2"], { sync: { maxPackBytes: 1024, fileBytes: 8192 } });
  await sc.cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, w REAL)");
  const r = await sc.cl.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000) INSERT INTO t SELECT x, 'value-' || x, x / 3.0 FROM n");
  await sc.caughtUp(r.lsn, ["s1", "s2"]);
  const slow = { FERRY_SYNC_PACK_DELAY_MS: "50" };
  const ca = sc.collector("ca", "ha", "s1", slow);
  await sc.waitActive("ca");
  const st = sc.cl.startProcess("st1", "synctool", [], { FERRY_SYNC_DRILL_HALT_AFTER_FILES: "3" });
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "-t", "main.t", "-m", "0", "-d", dest]);
  await waitFor("the synctool halted between a file and its progress", () => st.log().includes("fault drill (sync.drillHaltAfterFiles): halted"));
  st.kill("SIGKILL");
  await st.exited;
  const again = sc.cl.startProcess("st1", "synctool");
  await waitFor("the restarted synctool writes on", async () => (await sc.tasksNow())[0]?.rows >= 2000, { timeoutMs: 30_000 });
  // The halted subtask's file is past its saved progress (or it had none yet): the files say where it stands.
  assert.match(again.log(), /(the destination holds packs past the saved progress; advanced to|progress rebuilt from the destination's files:) snapshot at LSN \d+, \d+ rows/);
  sc.collector("cb", "hb", "s2");
  await sc.waitActive("cb");
  const running = (await sc.tasksNow())[0]?.subtasks.filter((s: any) => s.state === "RUNNING").length;
  assert.ok(running > 0, "the collector dies while subtasks still read from it");
  ca.kill("SIGKILL");
  await sc.waitTaskGone("main.t", 90_000);
  const src = parquetOf(dest, "t");
  const [c] = await duck(`SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(id) AS s FROM ${src}`);
  assert.equal([c.n, c.ids, c.s], [20000n, 20000n, 200010000n], "no row missing or doubled");
  const want = json(sqliteRows(sc.cl.repo("m1"), "SELECT id, v, w FROM t ORDER BY id"));
  assert.is(json(await duck(`SELECT id, v, w FROM ${src} ORDER BY id`)), want);
});

test("a full disk FAILS the subtasks with the OS's error and an alert; with space back, a restarted synctool resumes where they stopped", async () => {
  sc = await syncCluster(["s1"], { sync: { maxPackBytes: 8192, fileBytes: 16384 } });
  await sc.cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  const r = await sc.cl.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 50000) INSERT INTO t SELECT x, hex(randomblob(40)) FROM n");
  await sc.caughtUp(r.lsn, ["s1"]);
  sc.collector("c1", "h1", "s1");
  const st = sc.cl.startProcess("st1", "synctool");
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  mkdirSync(dest, { recursive: true });
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=512k", "tmpfs", dest]);
  mounts.push(dest);
  const c = await sc.cl.client();
  const alerts: Record<string, any>[] = [];
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  await sc.cliJson(["task", "create", "-t", "main.t", "-m", "0", "-d", dest]);
  await waitFor("a subtask FAILED", async () => (await sc.tasksNow())[0]?.subtasks.some((s: any) => s.state === "FAILED"), { timeoutMs: 60_000 });
  const failed = (await sc.tasksNow())[0].subtasks.find((s: any) => s.state === "FAILED");
  assert.is(failed.error.code, "DESTINATION_UNWRITABLE");
  assert.match(failed.error.message, /ENOSPC: no space left on device/);
  const status = await sc.cl.cli(["task", "status"]);
  assert.match(status.stdout, /DESTINATION_UNWRITABLE: cannot write to .*ENOSPC/);
  await waitFor("the FAILED alert", () => alerts.find((a) => a.kind === "sync-subtask-failed" && /ENOSPC/.test(a.message)));
  assert.not.ok(execFileSync("find", [dest, "-name", ".*.tmp"]).toString().trim(), "no partial file left");
  // Every subtask stops (FAILED, or SUCCESS when it fitted); then space comes back and the synctool restarts.
  await waitFor("no subtask running", async () => (await sc.tasksNow())[0]?.subtasks.every((s: any) => s.state === "FAILED" || s.state === "SUCCESS"), { timeoutMs: 60_000 });
  const before = (await sc.tasksNow())[0].rows;
  execFileSync("mount", ["-o", "remount,size=64m", dest]);
  st.kill("SIGKILL");
  await st.exited;
  const again = sc.cl.startProcess("st1", "synctool");
  await sc.waitTaskGone("main.t", 90_000);
  assert.ok(before > 0, "rows written before the disk filled up stayed");
  assert.not.match(again.log(), /progress rebuilt/, "the saved progress was whole");
  const [n] = await duck(`SELECT count(*) AS n, count(DISTINCT id) AS ids FROM ${parquetOf(dest, "t")}`);
  assert.equal([n.n, n.ids], [50000n, 50000n], "every row once");
});

test("a task recorded before formats existed (no format in its record) still writes JSON Lines to part-<p>/", async () => {
  sc = await syncCluster(["s1"]);
  await sc.cl.sql("CREATE TABLE old(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) INSERT INTO old SELECT x, 'v' || x FROM n");
  await sc.startSync("s1");
  const dest = tempDir("ferry-dest-");
  const legacy = { id: "legacy-task", db: "main", table: "old", mode: 0, dest, partitions: 2, columns: ["id", "v"], key: ["id"], createdAt: Date.now() };
  await (await (await sc.cl.client()).buckets()).tasks.put("main.old", JSON.stringify(legacy));
  await sc.waitTaskGone("main.old");
  assert.equal(readdirSync(join(dest, "old")).sort(), ["part-0", "part-1"]);
  const files = readFiles(dest, "old");
  assert.equal(files.snapshot.map((r) => r.id).sort((a, b) => a - b), Array.from({ length: 500 }, (_, i) => i + 1));
});

test.run();
