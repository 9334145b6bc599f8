/**
 * Online-to-offline sync with real processes: nats-server, ferry nodes, collectors and a synctool,
 * SQLite repositories and a destination directory; modes 0, 1 and 2 and the task commands. Every
 * check reads the destination's files. (Failures: sync-failover.test.ts.)
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cleanup, tempDir } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { canon, readFiles, replay, syncCluster, tableRows, type SyncCluster } from "../helpers/sync.js";

let sc: SyncCluster;

test.after.each(async () => {
  await sc?.cl.close();
  await cleanup();
});

test("mode 0 on a 100,000-row table with 4 partitions: the files hold exactly its rows, then the task is gone", async () => {
  sc = await syncCluster(["s1"]);
  sc.collector("c1", "h1", "s1");
  sc.cl.startProcess("st1", "synctool");
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  await sc.cl.sql("CREATE TABLE big(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB)");
  const r = await sc.cl.sql(
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) INSERT INTO big SELECT x, 'name-' || x, x / 7.0, CASE WHEN x % 10 = 0 THEN randomblob(4) END FROM n",
  );
  await sc.caughtUp(r.lsn, ["s1"]);
  const dest = tempDir("ferry-dest-");
  const created = await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "main.big", "-m", "0", "-d", dest]);
  assert.is(created.partitions, 4);
  await sc.waitTaskGone("main.big");
  const files = readFiles(dest, "big");
  assert.is(files.stream.length, 0, "mode 0 writes no change records");
  assert.is(files.parts.size, 4);
  for (const [p, list] of files.parts) for (const f of list) for (const row of f.lines) assert.is(row.id % 4, p, `row ${row.id} in partition ${p}`);
  const want = canon(tableRows(sc.cl.repo("m1"), "big"), "id");
  const got = canon(files.snapshot, "id");
  assert.is(files.snapshot.length, 100_000, "no row doubled or missing");
  assert.is(got.size, 100_000);
  for (const [id, row] of want) assert.is(got.get(id), row, `row ${id}`);
  // Packs are at most sync.maxPackBytes (1 MiB).
  for (const d of readdirSync(join(dest, "big"))) {
    for (const f of readdirSync(join(dest, "big", d))) assert.ok(readFileSync(join(dest, "big", d, f)).length <= 1024 * 1024, `${f} within 1 MiB`);
  }
  const kv = await (await sc.cl.client()).buckets().then((b) => b.tasks.get("main.big"));
  assert.ok(!kv || kv.operation !== "PUT", "the task is no longer in the tasks bucket");
});

test("task commands refuse bad input with a clear error and create nothing; malformed requests are answered", async () => {
  sc = await syncCluster([], { sync: { tsColumns: { ev: "ts" } } });
  sc.cl.startProcess("st1", "synctool");
  await sc.cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE ev(id INTEGER PRIMARY KEY, ts INTEGER)");
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  const refused = async (args: string[], code: number, text: RegExp) => {
    const r = await sc.cl.cli(["task", "create", ...args]);
    assert.is(r.code, code, `${args.join(" ")}: exit ${r.code} (${r.stderr})`);
    assert.match(r.stderr, text);
    assert.not.match(r.stderr, /\n\s+at /, "no stack trace");
  };
  await refused(["-t", "main.nope", "-m", "0", "-d", dest], 2, /table main\.nope does not exist/);
  await refused(["-t", "main.t", "-m", "3", "-d", dest], 2, /-m must be 0 \(FULL\), 1 .* or 2/);
  await refused(["-t", "main.t", "-m", "1", "-d", dest], 2, /mode 1 .*needs -ts N/);
  await refused(["-t", "main.t", "-m", "1", "-ts", "5", "-d", dest], 2, /needs the timestamp column of t/);
  await refused(["-t", "main.t", "-m", "1", "-ts", "5", "--ts-column", "nope", "-d", dest], 2, /has no column nope/);
  await refused(["-t", "other.t", "-m", "0", "-d", dest], 2, /database other does not exist/);
  await refused(["-t", "main.t", "-m", "0", "--format", "orc", "-d", dest], 2, /--format "orc" is not a format ferry writes: give one of jsonl, csv, parquet/);
  await refused(["-t", "main.t", "-m", "0", "-d", "/dev/null/sub"], 1, /cannot write to \/dev\/null\/sub\/t.*DESTINATION_UNWRITABLE/);
  assert.equal(await sc.tasks(), [], "nothing created");
  // Mode 1 with the column from the config (sync.tsColumns), then a second task for the same table.
  const ok = await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "main.ev", "-m", "1", "-ts", "10", "-d", dest, "--partitions", "2"]);
  assert.is(ok.tsColumn, "ts");
  assert.is(ok.partitions, 2);
  // The same request again, and twice at once, is answered with the task that runs: one task, one id.
  const evArgs = ["task", "create", "--format", "jsonl", "-t", "main.ev", "-m", "1", "-ts", "10", "-d", dest, "--partitions", "2"];
  const again = await sc.cliJson(evArgs);
  assert.is(again.id, ok.id, "a repeated create names the running task");
  assert.is(again.already, true);
  const both = await Promise.all([sc.cliJson(evArgs), sc.cliJson(evArgs)]);
  assert.equal(both.map((b) => b.id), [ok.id, ok.id]);
  const tDest = tempDir("ferry-dest-");
  const tArgs = ["task", "create", "--format", "jsonl", "-t", "main.t", "-m", "2", "-d", tDest];
  const raced = await Promise.all([sc.cliJson(tArgs), sc.cliJson(tArgs)]);
  assert.is(raced[0].id, raced[1].id, "two creates at once make one task");
  assert.equal(raced.map((r) => r.already).sort(), [false, true], "one created it, the other found it");
  await refused(["-t", "main.ev", "-m", "0", "-d", tempDir("ferry-dest-")], 1, /main\.ev already has another sync task.*TASK_EXISTS/);
  await refused(["-t", "main.ev", "-m", "1", "-ts", "11", "-d", dest, "--partitions", "2"], 1, /TASK_EXISTS/);
  // Two deletes at once: one deletes, the other finds it deleted; a repeat later says so too.
  const dels = await Promise.all([sc.cliJson(["task", "delete", "-t", "main.ev"]), sc.cliJson(["task", "delete", "-t", "main.ev"])]);
  assert.equal(dels.map((d) => d.already).sort(), [false, true]);
  assert.is((await sc.cliJson(["task", "delete", "-t", "main.ev"])).already, true);
  const delT = await sc.cl.cli(["task", "delete", "-t", "main.t"]);
  assert.is(delT.code, 0, delT.stderr);
  assert.match(delT.stdout, /deleted task main\.t/);
  const delAgain = await sc.cl.cli(["task", "delete", "-t", "main.t"]);
  assert.is(delAgain.code, 0, delAgain.stderr);
  assert.match(delAgain.stdout, /main\.t was already deleted or completed/);
  // Files of an earlier task in the destination would be doubled.
  const used = tempDir("ferry-dest-");
  mkdirSync(join(used, "ev", "part-0"), { recursive: true });
  writeFileSync(join(used, "ev", "part-0", "snapshot-00000000000000000001-000000000001-000000000001.jsonl"), '{"id":1}\n');
  await refused(["-t", "main.ev", "-m", "0", "-d", used], 1, /already holds files.*DESTINATION_NOT_EMPTY/);
  const del = await sc.cl.cli(["task", "delete", "-t", "main.nope"]);
  assert.is(del.code, 1);
  assert.match(del.stderr, /main\.nope has no sync task.*NOT_FOUND/s);
  assert.equal(await sc.tasks(), []);
  // Malformed requests on the synctool's subjects are answered with an error; it keeps running.
  const c = await sc.cl.client();
  for (const subject of [c.subj.synctool.create, c.subj.synctool.delete]) {
    const m = await c.nc.request(subject, new TextEncoder().encode("{not json"), { timeout: 5000 });
    const body = JSON.parse(new TextDecoder().decode(m.data));
    assert.is(body.ok, false);
    assert.is(body.error.code, "MALFORMED_MESSAGE");
  }
  const tool = await sc.cliJson(["tool-status"]);
  assert.is(tool.state, "active");
  assert.is(tool.node, "st1");
});

test("mode 2: snapshot, then inserts, updates (also of keys) and deletes as change records; replaying the files gives the table", async () => {
  sc = await syncCluster(["s1"], { sync: { maxPackBytes: 4096 } });
  sc.collector("c1", "h1", "s1");
  sc.cl.startProcess("st1", "synctool");
  await sc.cl.sql(
    "CREATE TABLE acct(id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER, pic BLOB); CREATE TABLE tags(name TEXT PRIMARY KEY, w REAL) WITHOUT ROWID; CREATE TABLE loose(a TEXT, b INTEGER)",
  );
  await sc.cl.sql(
    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000) INSERT INTO acct SELECT x, 'o' || x, x * 10, CASE WHEN x % 3 = 0 THEN x'00FF' END FROM n; " +
      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 300) INSERT INTO tags SELECT 'tag-' || x, x / 4.0 FROM n; " +
      "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 200) INSERT INTO loose SELECT 'l' || x, x FROM n",
  );
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  for (const t of ["acct", "tags", "loose"]) await sc.cliJson(["task", "create", "--format", "jsonl", "-t", `main.${t}`, "-m", "2", "-d", dest]);
  // Changes while the snapshots are read and after.
  for (let i = 0; i < 20; i++) {
    await sc.cl.sql(
      `INSERT INTO acct(id, owner, balance) VALUES (${2000 + i}, 'new${i}', ${i}); UPDATE acct SET balance = balance + 1 WHERE id = ${i + 1}; DELETE FROM acct WHERE id = ${500 + i}; ` +
        `UPDATE acct SET id = ${5000 + i} WHERE id = ${100 + i}; ` +
        `INSERT INTO tags VALUES ('new-${i}', ${i}); UPDATE tags SET name = 'moved-${i}' WHERE name = 'tag-${i + 1}'; DELETE FROM tags WHERE name = 'tag-${200 + i}'; ` +
        `UPDATE loose SET b = b * 2 WHERE rowid = ${i + 1}; DELETE FROM loose WHERE rowid = ${150 + i}; INSERT INTO loose VALUES ('n${i}', ${i})`,
    );
  }
  const last = await sc.cl.sql("UPDATE acct SET owner = 'last' WHERE id = 1");
  await sc.caughtUp(last.lsn, ["s1"]);
  for (const [t, key] of [
    ["acct", ["id"]],
    ["tags", ["name"]],
    ["loose", ["rowid"]],
  ] as const) {
    const rows = tableRows(sc.cl.repo("m1"), t, t === "loose" ? "rowid, *" : "*");
    const want = new Map(rows.map((r) => [JSON.stringify(key.map((k) => r[k])), JSON.stringify(r)]));
    await waitFor(`replaying ${t} gives the table`, () => {
      const got = replay(readFiles(dest, t), [...key]);
      return got.size === want.size && [...want].every(([k, v]) => got.get(k) === v);
    }, { timeoutMs: 30_000, intervalMs: 250 });
    const files = readFiles(dest, t);
    const ops = new Set(files.stream.map((c) => c.op));
    for (const op of ["insert", "update", "delete"]) assert.ok(ops.has(op), `${t}: ${op} records`);
    for (const c of files.stream) assert.ok(Number.isInteger(c.lsn) && c.lsn > 0, "every change record carries its LSN");
    const keys = files.snapshot.map((r) => JSON.stringify(key.map((k) => r[k])));
    assert.is(new Set(keys).size, keys.length, `${t}: no snapshot row doubled`);
    const lines = files.stream.map((c) => JSON.stringify(c));
    assert.is(new Set(lines).size, lines.length, `${t}: no change record doubled`);
  }
  // A malformed pack request is answered with an error; the collector keeps serving.
  const c = await sc.cl.client();
  const bad = await c.nc.request(c.subj.collector("c1").pack, new TextEncoder().encode(JSON.stringify({ task: "x" })), { timeout: 5000 });
  assert.is(JSON.parse(new TextDecoder().decode(bad.data)).error.code, "MALFORMED_MESSAGE");
  // A key change within a table shows the old key (or moves the row between partitions).
  const acct = readFiles(dest, "acct");
  assert.ok(acct.stream.some((c) => c.op === "update" && c.old) || acct.stream.some((c) => c.op === "delete" && c.row.id >= 100 && c.row.id < 120));
  const status = await sc.tasks();
  assert.is(status.length, 3, "mode 2 tasks keep running");
  for (const t of status) for (const s of t.subtasks) assert.is(s.state, "RUNNING");
});

test("mode 1: only rows at or after the timestamp, then every later change", async () => {
  sc = await syncCluster(["s1"]);
  sc.collector("c1", "h1", "s1");
  sc.cl.startProcess("st1", "synctool");
  await sc.cl.sql("CREATE TABLE ev(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, v TEXT)");
  await sc.cl.sql("WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 999) INSERT INTO ev SELECT x, x, 'v' || x FROM n");
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "main.ev", "-m", "1", "-ts", "600", "--ts-column", "ts", "-d", dest]);
  await waitFor("the snapshot part is written", async () => (await sc.tasks())[0]?.subtasks.every((s: any) => s.position.startsWith("stream")), { timeoutMs: 30_000, intervalMs: 200 });
  const snap = readFiles(dest, "ev").snapshot;
  assert.equal(snap.map((r) => r.id).sort((a, b) => a - b), Array.from({ length: 400 }, (_, i) => 600 + i), "exactly the rows with ts >= 600");
  const r = await sc.cl.sql("INSERT INTO ev VALUES (5000, 10, 'old ts, later change'); INSERT INTO ev VALUES (5001, 900, 'new'); UPDATE ev SET v = 'upd' WHERE id = 700; DELETE FROM ev WHERE id = 800");
  await sc.caughtUp(r.lsn, ["s1"]);
  await waitFor("later changes written", () => readFiles(dest, "ev").stream.length >= 4, { timeoutMs: 20_000 });
  const stream = readFiles(dest, "ev").stream;
  assert.equal(
    stream.map((c) => `${c.op}:${c.row.id}`).sort(),
    ["delete:800", "insert:5000", "insert:5001", "update:700"],
  );
  assert.ok(stream.every((c) => c.lsn === r.lsn), "one transaction, one LSN");
  assert.equal(stream.find((c) => c.row.id === 700)?.row, { id: 700, ts: 700, v: "upd" });
});

test.run();
