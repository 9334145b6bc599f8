/**
 * Outages, the backlog cap with the Data Mover message, backup-and-restore (ferry resync),
 * heartbeats and the heartbeat table.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import Database from "better-sqlite3";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

const CAP = 64 * 1024;

test("a slave whose backlog passes the cap is disconnected with the seed's message, shown as needing resync, and ferry resync brings it back", async () => {
  cl = await TestCluster.start({ config: { replication: { maxBacklogBytes: CAP } } });
  const c = await cl.client();
  const alerts: Record<string, unknown>[] = [];
  const sub = c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave");
  cl.startNode("s2", "slave");
  await cl.waitMember("s2", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE big(id INTEGER PRIMARY KEY, pad TEXT)");
  await cl.nodes.get("s2")!.stop();

  // Well past the cap while s2 is away: its batches stay on the master's disk until then.
  for (let i = 0; i < 40; i++) await cl.sql(`INSERT INTO big(pad) SELECT hex(randomblob(500)) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)`);
  const alert = await waitFor("the backlog alert", () => alerts.find((a) => a.kind === "backlog-exceeded"));
  const n = Number(/^Slave has (\d+) bytes sqls to be processed since last disconnection/.exec(String(alert.message))?.[1]);
  assert.ok(n > CAP, `the message carries the real backlog (${n} > ${CAP})`);
  assert.match(
    String(alert.message),
    /which exceeds current available memory on the master sync service\. Slave node will be disconnected\. Please run backup and restore to sync the master and slave nodes\./,
  );

  cl.startNode("s2", "slave");
  const s2 = await cl.waitMember("s2", "needing resync", (m) => m.needsResync === true);
  assert.match(String(s2.error?.message ?? s2.resyncReason), /Slave has \d+ bytes sqls/);
  const shown = await cl.cli(["status"]);
  assert.match(shown.stdout, /NEEDS RESYNC/);

  const r = await cl.cli(["resync", "--node", "s2"]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /s2 restored \d+ rows from m1 at LSN \d+/);
  await cl.sql("INSERT INTO big(pad) VALUES ('after resync')");
  await cl.waitConverged("m1", ["s1", "s2"]);
  await cl.waitMember("s2", "streaming again", (m) => m.replica === "streaming" && !m.needsResync);
  sub.unsubscribe();
});

test("a slave down for a while catches up by itself from the master's spool on disk", async () => {
  cl = await TestCluster.start();
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave");
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  await cl.nodes.get("s1")!.stop();
  for (let i = 0; i < 50; i++) await cl.sql(`INSERT INTO t(v) VALUES ('while down ${i}')`);
  // The member record is the latest heartbeat: wait for one sent after the last insert.
  await cl.waitMember("m1", "holding the backlog of 50 inserts", (m) => m.spooledLsn > 50 && (m.replicas ?? []).some((r: { node: string; backlogBytes: number }) => r.node === "s1" && r.backlogBytes > 0));
  cl.startNode("s1", "slave");
  const dump = await cl.waitConverged("m1", ["s1"]);
  assert.is(dump.split("\n").filter((l) => l.startsWith("t|")).length, 50);
});

test("a new slave with an empty repository initialises itself from a snapshot of the master", async () => {
  cl = await TestCluster.start();
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v)");
  await cl.sql(`INSERT INTO t(v) SELECT 'row ' || value FROM json_each('[${Array.from({ length: 500 }, (_, i) => i).join(",")}]')`);
  cl.startNode("s1", "slave");
  await cl.waitConverged("m1", ["s1"]);
  const logged = await waitFor("s1 logged its snapshot", () => /resync from m1 at LSN \d+: (\d+) rows/.exec(cl.nodes.get("s1")!.log()));
  assert.ok(Number(logged[1]) >= 500, `snapshot of ${logged[1]} rows`);
  await cl.sql("INSERT INTO t(v) VALUES ('streamed')");
  await cl.waitConverged("m1", ["s1"]);
});

test("heartbeats every second on ferry.<cluster>.hb.<role>.<node>, members in the bucket, and the replicated heartbeat table gives lag in ms", async () => {
  cl = await TestCluster.start();
  const c = await cl.client();
  const beats: Record<string, unknown>[] = [];
  const sub = c.nc.subscribe(`ferry.${cl.name}.hb.>`, { callback: (_e, m) => void beats.push({ subject: m.subject, ...m.json<object>() }) });
  cl.startNode("m1", "master");
  cl.startNode("s1", "slave");
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  const since = beats.length;
  await waitFor("three more heartbeats from each", () => {
    const recent = beats.slice(since);
    return ["m1", "s1"].every((n) => recent.filter((b) => b.node === n).length >= 3);
  }, { timeoutMs: 6000 });
  assert.ok(beats.some((b) => b.subject === `ferry.${cl.name}.hb.master.m1` && b.role === "master"));
  assert.ok(beats.some((b) => b.subject === `ferry.${cl.name}.hb.slave.s1` && b.role === "slave"));
  const b = await c.buckets();
  assert.ok((await b.members.get("m1"))?.json<{ node: string }>().node === "m1");
  // Nobody writes, yet the slave's lag is known from the heartbeat rows the master writes.
  const s1 = await cl.waitMember("s1", "a lag in ms", (m) => typeof m.lagMs === "number" && m.lagMs < 2000);
  assert.ok(s1.appliedLsn > 0);
  const db = new Database(cl.repo("s1"), { readonly: true });
  const row = await waitFor("the heartbeat row on s1", () => db.prepare("SELECT node, ts FROM ferry_heartbeat").get() as { node: string; ts: number } | undefined);
  db.close();
  assert.is(row.node, "m1");
  assert.ok(Date.now() - row.ts < 5000);
  const status = await cl.cli(["status", "--json"]);
  const parsed = JSON.parse(status.stdout);
  assert.is(parsed.leases.master.node, "m1");
  assert.ok(parsed.members.find((m: { node: string }) => m.node === "s1").lagMs !== undefined);
  sub.unsubscribe();
});

test.run();
