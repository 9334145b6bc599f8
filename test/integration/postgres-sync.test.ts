/**
 * PostgreSQL replicas as the source of what leaves the cluster: the backlog cap and ferry resync
 * (backup and restore into a PostgreSQL replica), and a mode-2 sync task read from a PostgreSQL
 * replica, every row in the files exactly once; a Parquet task whose PostgreSQL types DuckDB reads
 * back typed.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { cleanup, tempDir } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { readerRows, readFiles, replay, syncCluster, type SyncCluster } from "../helpers/sync.js";
import { duck, duckTypes, lit } from "../helpers/duckdb.js";

let sc: SyncCluster;

test.after.each(async () => {
  await sc?.cl.close();
  await cleanup();
});

const CAP = 64 * 1024;

test("a PostgreSQL replica past the backlog cap is disconnected with the seed's message, and ferry resync restores it", async () => {
  sc = await syncCluster(["s1", "s2"], { replication: { maxBacklogBytes: CAP } }, { postgres: true });
  const cl = sc.cl;
  const c = await cl.client();
  const alerts: Record<string, unknown>[] = [];
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  await cl.sql("CREATE TABLE big(id bigserial PRIMARY KEY, pad text, at timestamptz DEFAULT now())");
  await cl.nodes.get("s2")!.stop();
  for (let i = 0; i < 40; i++) await cl.sql(`INSERT INTO big(pad) SELECT md5(random()::text) || repeat('x', 500) FROM generate_series(1, 3)`);
  const alert = await waitFor("the backlog alert", () => alerts.find((a) => a.kind === "backlog-exceeded"));
  assert.match(String(alert.message), /^Slave has \d+ bytes sqls to be processed since last disconnection, which exceeds current available memory/);
  cl.startNode("s2", "slave");
  await cl.waitMember("s2", "needing resync", (m) => m.needsResync === true);
  const r = await cl.cli(["resync", "--node", "s2"]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /s2 restored \d+ rows from m1 at LSN \d+/);
  await cl.sql("INSERT INTO big(pad) VALUES ('after resync')");
  const dump = await cl.waitConverged("m1", ["s1", "s2"], 60_000);
  assert.is(dump.split("\n").filter((l) => l.startsWith("big|")).length, 121);
  await cl.waitMember("s2", "streaming again", (m) => m.replica === "streaming" && !m.needsResync);
});

test("mode 2 from a PostgreSQL replica: snapshot, then every change; replaying the files gives the table, nothing doubled", async () => {
  sc = await syncCluster(["s1"], { sync: { maxPackBytes: 4096 } }, { postgres: true });
  sc.collector("c1", "h1", "s1");
  sc.cl.startProcess("st1", "synctool");
  await sc.cl.sql("CREATE TABLE acct(id bigint PRIMARY KEY, owner text, balance numeric, pic bytea, at timestamptz)");
  await sc.cl.sql("INSERT INTO acct SELECT g, 'o' || g, g * 10.5, CASE WHEN g % 3 = 0 THEN '\\x00ff'::bytea END, '2026-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 1000) g");
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  const created = await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "public.acct", "-m", "2", "-d", dest]);
  assert.ok(created.partitions >= 1);
  for (let i = 0; i < 20; i++) {
    await sc.cl.sql(
      `INSERT INTO acct(id, owner, balance) VALUES (${2000 + i}, 'new${i}', ${i}); UPDATE acct SET balance = balance + 1 WHERE id = ${i + 1}; ` +
        `DELETE FROM acct WHERE id = ${500 + i}; UPDATE acct SET id = ${5000 + i} WHERE id = ${100 + i}`,
    );
  }
  const last = await sc.cl.sql("UPDATE acct SET owner = 'last' WHERE id = 1");
  await sc.caughtUp(last.lsn, ["s1"]);
  const want = new Map((await readerRows(sc.cl.repoUrl("m1"), "acct")).map((r) => [JSON.stringify([r.id]), JSON.stringify(r)]));
  assert.is(want.size, 1000);
  await waitFor("replaying acct gives the table", () => {
    const got = replay(readFiles(dest, "acct"), ["id"]);
    return got.size === want.size && [...want].every(([k, v]) => got.get(k) === v);
  }, { timeoutMs: 60_000, intervalMs: 250 });
  const files = readFiles(dest, "acct");
  const keys = files.snapshot.map((r) => JSON.stringify(r.id));
  assert.is(new Set(keys).size, keys.length, "no snapshot row doubled");
  const lines = files.stream.map((c) => JSON.stringify(c));
  assert.is(new Set(lines).size, lines.length, "no change record doubled");
  for (const op of ["insert", "update", "delete"]) assert.ok(files.stream.some((c) => c.op === op), `${op} records`);
  const wrong = await sc.cl.cli(["task", "create", "--format", "jsonl", "-t", "main.acct", "-m", "0", "-d", tempDir("ferry-dest-")]);
  assert.is(wrong.code, 2, "a usage error");
  assert.match(wrong.stderr, /database main does not exist: the repositories name theirs public/);
});

test("mode 0 to Parquet from PostgreSQL: integers INT64, floats DOUBLE (NaN kept), booleans, bytea, the rest as exact text", async () => {
  sc = await syncCluster(["s1"], {}, { postgres: true });
  await sc.cl.sql(
    "CREATE TABLE typed(id bigint PRIMARY KEY, i integer, s smallint, d double precision, r real, n numeric, ok boolean, b bytea, t text, at timestamptz); " +
      "INSERT INTO typed SELECT g, g * 3, g % 100, g / 7.0, g / 4.0, g * 1.25, g % 2 = 0, CASE WHEN g % 3 = 0 THEN '\\x00ff'::bytea END, 't' || g, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 minute' FROM generate_series(1, 2000) g; " +
      "INSERT INTO typed VALUES (9223372036854775807, NULL, NULL, 'NaN', 'Infinity', 12345678901234567890.123, NULL, '\\x', '', NULL)",
  );
  await sc.startSync("s1");
  const dest = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "-t", "public.typed", "-m", "0", "-d", dest]);
  await sc.waitTaskGone("public.typed", 60_000);
  const src = `read_parquet(${lit(`${dest}/typed/**/*.parquet`)}, hive_partitioning = true)`;
  const types = await duckTypes(`SELECT * EXCLUDE (part) FROM ${src}`);
  assert.equal(types, { id: "BIGINT", i: "BIGINT", s: "BIGINT", d: "DOUBLE", r: "DOUBLE", n: "VARCHAR", ok: "BOOLEAN", b: "BLOB", t: "VARCHAR", at: "VARCHAR" });
  const [agg] = await duck(`SELECT count(*) AS c, sum(i) AS i, count(b) AS b, sum(ok::INT) AS ok FROM ${src}`);
  assert.equal(agg, { c: 2001n, i: 6003000n, b: 667n, ok: 1000n });
  const [edge] = await duck(`SELECT id, d, r, n, b, t FROM ${src} WHERE id > 1000000`);
  assert.equal({ ...edge, d: String(edge.d), r: String(edge.r) }, { id: 9223372036854775807n, d: "NaN", r: "Infinity", n: "12345678901234567890.123", b: "", t: "" });
  const [one] = await duck(`SELECT i, s, d, n, ok, b, "at" FROM ${src} WHERE id = 3`);
  assert.equal(one, { i: 9n, s: 3n, d: 3 / 7, n: "3.75", ok: false, b: "00FF", at: "2026-01-01 00:03:00+00" });
});

test.run();
