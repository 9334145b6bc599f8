/**
 * Bad input and faults: each gives a clear error and loses nothing, and the processes keep running.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { renameSync, writeFileSync } from "node:fs";
import Database from "better-sqlite3";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup, ferryRun } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { encodeFrame, encodeJson } from "../../src/nats/codec.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

async function masterAndSlave() {
  cl = await TestCluster.start();
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave");
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  return cl;
}

const logHas = (name: string, re: RegExp) => re.test(cl.nodes.get(name)!.log());

test("a slave started while no master runs reports 'no active master', keeps retrying, and catches up once one starts", async () => {
  cl = await TestCluster.start();
  cl.startNode("s1", "slave");
  const s1 = await cl.waitMember("s1", "reporting no master", (m) => m.error?.code === "NO_ACTIVE_MASTER");
  assert.match(s1.error.message, /no active master/);
  await waitFor("s1 logs no active master", () => logHas("s1", /"msg":"no active master"/));
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'after')");
  await cl.waitConverged("m1", ["s1"]);
  assert.ok(cl.nodes.get("s1")!.running);
});

test("a second process with a node id in use, or on a repository in use, is refused", async () => {
  await masterAndSlave();
  const sameId = await cl.cli(["start", "--role", "slave", "--node", "s1", "--repo", `sqlite:${cl.dir}/other.db`, "--data", `${cl.dir}/other`]);
  assert.is.not(sameId.code, 0);
  assert.match(sameId.stderr, /node id s1 is in use/);
  assert.match(sameId.stderr, /NODE_ID_IN_USE/);
  const sameRepo = await cl.cli(["start", "--role", "slave", "--node", "s9", "--repo", `sqlite:${cl.repo("m1")}`, "--data", `${cl.dir}/s9`]);
  assert.is.not(sameRepo.code, 0);
  assert.match(sameRepo.stderr, /REPO_IN_USE/);
  assert.not.match(sameRepo.stderr, /\n\s+at /, "no stack trace for a user's mistake");
  assert.ok(cl.nodes.get("m1")!.running && cl.nodes.get("s1")!.running);
});

test("invalid config, flag or environment value: refused at start with the field named", async () => {
  cl = await TestCluster.start();
  const bad = await cl.cli(["start", "--role", "slave", "--node", "x1", "--repo", "nope"]);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /node\.repo: must look like sqlite:PATH or postgres:\/\/USER\[:PASS\]@HOST:PORT\/DB \(from flag --repo\)/);
  const env = await cl.cli(["start", "--role", "slave", "--node", "x1", "--repo", `sqlite:${cl.dir}/x.db`], { FERRY_REPLICATION_MAX_BACKLOG_BYTES: "lots" });
  assert.is(env.code, 2);
  assert.match(env.stderr, /replication\.maxBacklogBytes.*FERRY_REPLICATION_MAX_BACKLOG_BYTES/);
  writeFileSync(`${cl.dir}/bad.json`, JSON.stringify({ lease: { ttlMs: 1000, safetyMarginMs: 2000 } }));
  const file = await ferryRun(["status", "--config", `${cl.dir}/bad.json`]);
  assert.is(file.code, 2);
  assert.match(file.stderr, /lease\.safetyMarginMs/);
  writeFileSync(`${cl.dir}/mixed.json`, JSON.stringify({ nats: { servers: ["nats://127.0.0.1:4222", "nats://localhost:4223"] } }));
  const mixed = await ferryRun(["status", "--config", `${cl.dir}/mixed.json`]);
  assert.is(mixed.code, 2);
  assert.match(mixed.stderr, /mixes host names and IP addresses/);
  const flag = await cl.cli(["sql", "SELECT 1", "--params", "{not json"]);
  assert.is(flag.code, 2);
  assert.match(flag.stderr, /--params is not JSON/);
});

test("a bad SQL statement returns the database's error, applies nothing, and the master keeps running", async () => {
  await masterAndSlave();
  await cl.sql("INSERT INTO t VALUES (1, 'kept')");
  const r = await cl.cli(["sql", "INSERT INTO t VALUES (2, 'half'); INSERT INTO nosuch VALUES (3)"]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /no such table: nosuch/);
  assert.match(r.stderr, /SQL_ERROR/);
  const dup = await cl.cli(["sql", "INSERT INTO t VALUES (1, 'dup')"]);
  assert.match(dup.stderr, /UNIQUE constraint failed/);
  const txn = await cl.cli(["sql", "BEGIN; INSERT INTO t VALUES (5, 'x'); COMMIT"]);
  assert.match(txn.stderr, /BEGIN is not allowed/);
  await cl.sql("INSERT INTO t VALUES (4, 'after')");
  const dump = await cl.waitConverged("m1", ["s1"]);
  assert.match(dump, /t\|1\|'kept'/);
  assert.match(dump, /t\|4\|'after'/);
  assert.not.match(dump, /'half'|'dup'|t\|5\|/);
  assert.ok(cl.nodes.get("m1")!.running);
});

test("malformed JSON and random bytes on every subject ferry listens to: logged, answered with an error, nothing lost", async () => {
  await masterAndSlave();
  await cl.sql("INSERT INTO t VALUES (1, 'before')");
  const c = await cl.client();
  const s = c.subj;
  const junk = [new TextEncoder().encode("{not json"), new Uint8Array([0, 255, 7, 1, 2, 3]), encodeJson({ op: "nope" }), encodeJson([1, 2])];
  const requestSubjects = [s.sql, s.node("m1").pull, s.node("m1").snapshot, s.node("m1").changes, s.node("s1").snapshot, s.node("s1").changes, s.node("s1").resync, s.node("m1").control];
  for (const subject of requestSubjects) {
    for (const body of junk) {
      const m = await c.nc.request(subject, body, { timeout: 3000 });
      const text = new TextDecoder().decode(m.data);
      const reply = JSON.parse(text);
      assert.is(reply.ok, false, `${subject} answered an error to ${new TextDecoder().decode(body)}: ${text.slice(0, 200)}`);
      assert.ok(typeof reply.error?.code === "string" && reply.error.message, `${subject} error has a code and message`);
    }
  }
  for (const body of junk) c.nc.publish(s.notify, body);
  // Pushed batches: junk, a frame whose header is no push or whose payload overruns it, and a
  // well-formed one from a master of another epoch (ignored: the replica takes only its master's).
  const meta = { lsn: 90, epoch: 7, ts: Date.now(), parts: 1, bytes: 4, cum: 4, firstId: 1, lastId: 1, fp: "", ddl: false };
  const push = { node: "m1", epoch: 7, head: 90, ack: false, records: [{ lsn: 90, part: 0, parts: 1, len: 4, meta }] };
  const pushes = [...junk, encodeFrame({ ...push, records: [] }, []), encodeFrame({ ...push, records: [{ ...push.records[0], len: 400 }] }, [new Uint8Array(4)]), encodeFrame(push, [new Uint8Array(4)])];
  for (const body of pushes) c.nc.publish(s.push, body);
  await c.nc.flush();
  await cl.sql("INSERT INTO t VALUES (2, 'after')");
  const dump = await cl.waitConverged("m1", ["s1"]);
  assert.match(dump, /'before'[\s\S]*'after'/);
  assert.ok(cl.nodes.get("m1")!.running && cl.nodes.get("s1")!.running);
  assert.ok(logHas("m1", /malformed message on ferry\.[^"]+\.sql/), "master logged the malformed SQL request");
  assert.ok(logHas("s1", /malformed notification ignored/), "slave logged the malformed notification");
  assert.ok(logHas("s1", /malformed pushed batch ignored/), "slave logged the malformed pushed batches");
});

test("the master's repository unavailable: replication pauses, the master says why, and resumes by itself", async () => {
  await masterAndSlave();
  await cl.sql("INSERT INTO t VALUES (1, 'one')");
  await cl.waitConverged("m1", ["s1"]);
  const file = cl.repo("m1");
  renameSync(file, `${file}.away`);
  const m1 = await cl.waitMember("m1", "reporting the repository unavailable", (m) => /unavailable/.test(m.error?.message ?? ""));
  assert.match(m1.error.message, /the file is missing/);
  const refused = await cl.cli(["sql", "INSERT INTO t VALUES (2, 'while away')"]);
  assert.is(refused.code, 1, `ferry sql exited ${refused.code} (null: killed after 60 s); stderr: ${refused.stderr}\n${cl.diagnose()}`);
  assert.match(refused.stderr, /REPO_UNAVAILABLE/);
  assert.ok(logHas("m1", /replication paused/));
  renameSync(`${file}.away`, file);
  await cl.waitMember("m1", "repository back", (m) => m.error === null);
  await cl.sql("INSERT INTO t VALUES (3, 'back')");
  const dump = await cl.waitConverged("m1", ["s1"]);
  assert.match(dump, /'back'/);
  assert.not.match(dump, /while away/);
  assert.ok(logHas("m1", /repository is back; replication resumed/));
});

test("the master's repository locked by another process: reported, writes wait or fail cleanly, and all resumes when the lock goes", async () => {
  await masterAndSlave();
  const locker = new Database(cl.repo("m1"), { timeout: 5000 });
  locker.exec("BEGIN EXCLUSIVE");
  try {
    await cl.waitMember("m1", "reporting the lock", (m) => /locked|busy/i.test(m.error?.message ?? ""));
    const r = await cl.cli(["sql", "INSERT INTO t VALUES (1, 'during lock')"]);
    assert.is(r.code, 1);
    assert.match(r.stderr, /REPO_UNAVAILABLE/);
    assert.ok(cl.nodes.get("m1")!.running);
  } finally {
    locker.exec("ROLLBACK");
    locker.close();
  }
  await cl.waitMember("m1", "lock gone", (m) => m.error === null);
  await cl.sql("INSERT INTO t VALUES (2, 'after lock')");
  const dump = await cl.waitConverged("m1", ["s1"]);
  assert.match(dump, /'after lock'/);
  assert.not.match(dump, /during lock/);
});

test("a long transaction of ferry's own holds the write lock: the heartbeat row waits, and no outage is reported", async () => {
  await masterAndSlave();
  const c = await cl.client();
  const alerts: { kind: string }[] = [];
  const sub = c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  // The SQL worker holds the write lock from BEGIN IMMEDIATE to COMMIT: several heartbeat periods (250 ms) here.
  const t0 = Date.now();
  const r = await cl.sql("INSERT INTO t SELECT 1, 'long' FROM (WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 30000000) SELECT max(x) FROM n)", undefined, 5000, 60_000);
  const heldMs = Date.now() - t0;
  assert.ok(heldMs >= 1000, `the transaction held the lock for ${heldMs} ms, longer than two heartbeat periods`);
  await cl.waitConverged("m1", ["s1"]);
  sub.unsubscribe();
  assert.ok(r.lsn > 0);
  assert.equal(alerts.filter((a) => a.kind === "repository-unavailable"), [], "no outage alert for ferry's own lock");
  assert.ok(logHas("m1", /heartbeat row waits: ferry's own SQL worker holds the write lock/), "the heartbeat row met the lock and waited");
});

test("a schema fingerprint mismatch: the slave refuses with a clear error, and resync repairs it", async () => {
  await masterAndSlave();
  await cl.sql("INSERT INTO t VALUES (1, 'x')");
  await cl.waitConverged("m1", ["s1"]);
  await cl.nodes.get("s1")!.stop();
  const db = new Database(cl.repo("s1"));
  db.exec("ALTER TABLE t ADD COLUMN extra TEXT");
  db.close();
  cl.startNode("s1", "slave");
  const s1 = await cl.waitMember("s1", "refusing on schema", (m) => m.needsResync && /fingerprint mismatch/.test(m.error?.message ?? ""));
  assert.is(s1.error.code, "SCHEMA_MISMATCH");
  const r = await cl.cli(["resync", "--node", "s1"]);
  assert.is(r.code, 0, r.stderr);
  await cl.sql("INSERT INTO t VALUES (2, 'y')");
  await cl.waitConverged("m1", ["s1"]);
});

test("resync requests repeated at once: ten in a burst start one restore; two ferry resync at once both end done; the replica streams and is identical", async () => {
  await masterAndSlave();
  await cl.sql("WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 20000) INSERT INTO t SELECT x, 'row ' || x FROM n");
  await cl.waitConverged("m1", ["s1"]);
  const c = await cl.client();
  const alerts: { kind: string; message: string }[] = [];
  const sub = c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  const subject = c.subj.node("s1").resync;
  const replies = await Promise.all(Array.from({ length: 10 }, () => c.nc.request(subject, encodeJson({}), { timeout: 5000 }).then((m) => m.json<{ ok: boolean; started: boolean; running: boolean }>())));
  assert.ok(replies.every((r) => r.ok && r.running), JSON.stringify(replies));
  assert.is(replies.filter((r) => r.started).length, 1, "one restore started, the others joined it");
  await cl.waitMember("s1", "streaming after the restore", (m) => m.replica === "streaming" && !m.needsResync);
  await waitFor("the restore's alert", () => alerts.some((a) => a.kind === "resynced"));
  assert.is(alerts.filter((a) => a.kind === "resynced").length, 1, alerts.map((a) => `${a.kind}: ${a.message}`).join("\n"));
  sub.unsubscribe();
  const both = await Promise.all([0, 1].map(() => cl.cli(["resync", "--node", "s1", "--json"])));
  for (const r of both) {
    assert.is(r.code, 0, r.stderr);
    assert.is(JSON.parse(r.stdout).phase, "done");
  }
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming" && !m.needsResync);
  await cl.sql("INSERT INTO t VALUES (0, 'after')");
  await cl.waitConverged("m1", ["s1"]);
});

test("promote, promote-cancel and failover reset repeated at once: every copy answered alike, the master keeps its epoch, nothing started twice", async () => {
  await masterAndSlave();
  const c = await cl.client();
  const ask = (node: string, op: string) => c.nc.request(c.subj.node(node).control, encodeJson({ op }), { timeout: 5000 }).then((m) => m.json<Record<string, unknown>>());
  const before = await cl.waitMaster("m1");
  const promotes = await Promise.all(Array.from({ length: 5 }, () => ask("m1", "promote")));
  assert.ok(promotes.every((r) => r.ok && r.accepted && r.already === "active"), JSON.stringify(promotes));
  const cancels = await Promise.all(Array.from({ length: 5 }, () => ask("s1", "promote-cancel")));
  assert.ok(cancels.every((r) => r.ok), JSON.stringify(cancels));
  const resets = await Promise.all([0, 1, 2].map(() => cl.cli(["failover", "reset", "--json"])));
  for (const r of resets) assert.is(r.code, 0, r.stderr);
  const after = await cl.waitMaster("m1");
  assert.is(after.epoch, before.epoch, "the master was not promoted again");
  await cl.waitMember("s1", "still streaming", (m) => m.state === "standby" && m.replica === "streaming");
  await cl.sql("INSERT INTO t VALUES (1, 'after the repeats')");
  await cl.waitConverged("m1", ["s1"]);
});

test.run();
