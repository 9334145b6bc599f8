/**
 * Online-to-offline sync when processes die: kill -9 of collectors and synctools, standbys taking
 * over, and the exactly-once result in the destination's files.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { cleanup, tempDir } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { assignments, canon, fileCount, readFiles, states, syncCluster, tableRows, type SyncCluster } from "../helpers/sync.js";

let sc: SyncCluster;

test.after.each(async () => {
  await sc?.cl.close();
  await cleanup();
});

/** Collectors started with this answer a pack in 30 ms. */
const SLOW = { FERRY_SYNC_PACK_DELAY_MS: "30" };

/** Slaves s1 and s2, table t of 20,000 rows on both, small packs, an active synctool st1. */
async function twentyThousandRows() {
  sc = await syncCluster(["s1", "s2"], { sync: { maxPackBytes: 1024, reassignWaitMs: 3000 } });
  await sc.cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  const r = await sc.cl.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000) INSERT INTO t SELECT x, 'value-' || x FROM n");
  await sc.caughtUp(r.lsn, ["s1", "s2"]);
  const st = sc.cl.startProcess("st1", "synctool");
  await sc.waitActive("st1");
  return st;
}

/** Slowed collector ca on s1's host, then a mode-0 JSON Lines task of main.t into a new directory. */
async function slowCollectorAndTask() {
  const ca = sc.collector("ca", "ha", "s1", SLOW);
  await sc.waitActive("ca");
  const dest = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "main.t", "-m", "0", "-d", dest]);
  return { ca, dest };
}

test("kill -9 of the only collector during a mode-0 sync: REASSIGNING, then FAILED; kill -9 of one of two: REASSIGNED to another host's, rows exactly once", async () => {
  const st = await twentyThousandRows();

  // The only collector anywhere dies: its subtasks look for another, find none, and FAIL.
  const { ca, dest: destA } = await slowCollectorAndTask();
  await waitFor("packs written", () => fileCount(destA, "t") >= 8);
  ca.kill("SIGKILL");
  await ca.exited;
  await waitFor("every subtask FAILED", async () => (await sc.tasksNow())[0]?.subtasks.every((s: any) => s.state === "FAILED"), { timeoutMs: 30_000 });
  const text = await sc.cl.cli(["task", "status"]);
  assert.match(text.stdout, /table main\.t: FAILED, \d+ rows, \d+ bytes of jsonl; 4 of 4 subtasks FAILED/);
  assert.match(text.stdout, /NO_COLLECTOR: no active collector/);
  for (let p = 0; p < 4; p++) {
    const seen = states(st.logLines(), `sync-task main.t/${p}`);
    assert.ok(seen.some((v) => v.includes("reassigning")), `subtask ${p} went through REASSIGNING`);
    assert.is(seen[seen.length - 1], '"failed"');
  }
  const partial = readFiles(destA, "t").snapshot.map((row) => row.id);
  assert.ok(partial.length > 0 && partial.length < 20000);
  assert.is(new Set(partial).size, partial.length, "what was written is there once");
  await sc.cliJson(["task", "delete", "-t", "main.t"]);

  // A collector on the master's host and one on s1's; both are up, the slave's is preferred.
  sc.collector("cm", "hm", "m1");
  const ca2 = sc.collector("ca2", "ha2", "s1", SLOW);
  await sc.waitActive("cm");
  await sc.waitActive("ca2");
  const destB = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "main.t", "-m", "0", "-d", destB]);
  await waitFor("every subtask on ca2 has written", async () => {
    const t = (await sc.tasksNow())[0];
    return t?.subtasks.every((s: any) => s.collector === "ca2" && s.rows > 0);
  });
  sc.collector("cb", "hb", "s2");
  await sc.waitActive("cb");
  ca2.kill("SIGKILL");
  await ca2.exited;
  await sc.waitTaskGone("main.t");
  const rows = readFiles(destB, "t").snapshot;
  assert.is(rows.length, 20000, "no row doubled or missing");
  const want = canon(tableRows(sc.cl.repo("m1"), "t"), "id");
  const got = canon(rows, "id");
  for (const [id, row] of want) assert.is(got.get(id), row, `row ${id}`);
  const given = assignments(st.logLines(), "main.t").slice(-8);
  assert.equal(given.map((g) => g.collector).sort(), ["ca2", "ca2", "ca2", "ca2", "cb", "cb", "cb", "cb"], "ca2 (a slave's) first, then cb (a slave's), never cm (the master's)");
  for (let p = 0; p < 4; p++) assert.ok(states(st.logLines(), `sync-task main.t/${p}`).some((v) => v.includes("reassigning")));
});

test("kill -9 of the synctool between writing a pack file and saving its progress: after restart every row is there once", async () => {
  sc = await syncCluster(["s1"], { sync: { maxPackBytes: 4096 } });
  sc.collector("c1", "h1", "s1");
  await sc.cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  const r = await sc.cl.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5000) INSERT INTO t SELECT x, 'value-' || x FROM n");
  await sc.caughtUp(r.lsn, ["s1"]);
  const st = sc.cl.startProcess("st1", "synctool", [], { FERRY_SYNC_DRILL_HALT_AFTER_FILES: "3" });
  await sc.waitActive("c1");
  await sc.waitActive("st1");
  const dest = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "main.t", "-m", "0", "--partitions", "1", "-d", dest]);
  await waitFor("the synctool paused between file and progress", () => st.log().includes("fault drill (sync.drillHaltAfterFiles): halted"));
  assert.is(fileCount(dest, "t"), 3, "the third file is renamed, its progress not saved");
  st.kill("SIGKILL");
  await st.exited;
  const again = sc.cl.startProcess("st1", "synctool");
  await sc.waitTaskGone("main.t");
  const ids = readFiles(dest, "t").snapshot.map((row) => row.id);
  assert.is(ids.length, 5000, "no row doubled or missing");
  assert.is(new Set(ids).size, 5000);
  assert.match(again.log(), /the destination holds packs past the saved progress; advanced to snapshot at LSN \d+, \d+ rows/);
});

test("a standby collector on the same host takes over when the active one dies; a standby synctool takes over when the active one dies", async () => {
  sc = await syncCluster(["s1"]);
  // Both on host h1, finding their replica by its repository (no --source).
  const onS1 = ["--host", "h1", "--repo", `sqlite:${sc.cl.repo("s1")}`];
  const c1 = sc.cl.startProcess("c1", "collector", onS1);
  await sc.waitActive("c1");
  sc.cl.startProcess("c2", "collector", onS1);
  await sc.cl.waitMember("c2", "standby", (m) => m.state === "standby");
  const st1 = sc.cl.startProcess("st1", "synctool");
  await sc.waitActive("st1");
  const st2 = sc.cl.startProcess("st2", "synctool");
  await sc.cl.waitMember("st2", "standby", (m) => m.state === "standby");
  const status = await sc.cl.cli(["status"]);
  assert.match(status.stdout, /c2\s+.*collector\s+.*standby/);
  assert.match(status.stdout, /st1\s+.*synctool\s+.*active/);
  const tool = await sc.cliJson(["tool-status"]);
  assert.equal(tool.synctools.map((s: any) => `${s.node}:${s.state}`), ["st1:active", "st2:standby"]);
  assert.equal(tool.collectors.map((c: any) => `${c.node}:${c.state}:${c.source}`), ["c1:active:s1", "c2:standby:s1"]);

  await sc.cl.sql("CREATE TABLE items(id INTEGER PRIMARY KEY, v TEXT)");
  await sc.cl.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 500) INSERT INTO items SELECT x, 'v' || x FROM n");
  const dest = tempDir("ferry-dest-");
  await sc.cliJson(["task", "create", "--format", "jsonl", "-t", "main.items", "-m", "2", "-d", dest]);
  await sc.expectReplay(dest, "items");

  c1.kill("SIGKILL");
  await c1.exited;
  await sc.waitActive("c2");
  await sc.cl.sql("INSERT INTO items VALUES (1001, 'after c1'); UPDATE items SET v = 'u' WHERE id <= 10; DELETE FROM items WHERE id BETWEEN 20 AND 30");
  await sc.expectReplay(dest, "items");
  assert.ok(assignments(st1.logLines(), "main.items").some((a) => a.collector === "c2"), "subtasks moved to c2");

  st1.kill("SIGKILL");
  await st1.exited;
  await sc.waitActive("st2");
  await sc.cl.sql("INSERT INTO items VALUES (1002, 'after st1'); UPDATE items SET v = 'w' WHERE id BETWEEN 40 AND 50; DELETE FROM items WHERE id = 60");
  await sc.expectReplay(dest, "items");
  assert.match(st2.log(), /progress rebuilt from the destination's files/);
  const t = (await sc.tasks())[0];
  assert.is(t.task, "main.items");
  for (const s of t.subtasks) assert.is(s.state, "RUNNING", "resumed directly in RUNNING");
  assert.not.ok(states(st2.logLines(), "sync-task main.items/0").some((v) => v.includes("init")), "never INIT after a takeover");
});

test("a collector paused mid-pack and resumed after its subtasks moved to another: its late packs are dropped, rows exactly once", async () => {
  const st = await twentyThousandRows();
  const { ca, dest } = await slowCollectorAndTask();
  await waitFor("every subtask on ca has written", async () => (await sc.tasksNow())[0]?.subtasks.every((s: any) => s.collector === "ca" && s.rows > 0));
  sc.collector("cb", "hb", "s2", SLOW);
  await sc.waitActive("cb");
  // Paused, ca keeps the pack requests it was answering; resumed once its subtasks are cb's, it answers them.
  ca.kill("SIGSTOP");
  await waitFor("every subtask reassigned to cb", () => assignments(st.logLines(), "main.t").slice(-4).every((g) => g.collector === "cb"), { timeoutMs: 20_000 });
  ca.kill("SIGCONT");
  await waitFor("a late pack from ca dropped", () => st.logLines().some((l) => /arrived after the subtask moved on; dropped/.test(String(l.msg))), { timeoutMs: 20_000 });
  await sc.waitTaskGone("main.t");
  const rows = readFiles(dest, "t").snapshot;
  assert.is(rows.length, 20000, "no row doubled or missing");
  assert.is(new Set(rows.map((row) => row.id)).size, 20000);
});

test.run();
