/**
 * Regressions found by the chaos suite (scripts/chaos): a master that loses the lease, follows
 * another master for a while and is promoted again.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

const holder = async () => (await cl.status()).leases.master as { node: string; epoch: number } | undefined;

test("a master promoted again after applying DDL as a replica ships the current schema fingerprint (chaos master-pause seed 2)", async () => {
  cl = await TestCluster.start({ config: { failover: { waitMs: 0, prerequisites: 0, maxAutomatic: 10 } } });
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  // m1 sequences batches (its heartbeat rows) while the schema is still empty.
  await cl.waitMember("m1", "a first batch", (m) => m.appliedLsn >= 1);
  cl.startNode("s1", "slave", ["--designated", "standby"]);
  cl.startNode("s2", "slave");
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.waitMember("s2", "streaming", (m) => m.replica === "streaming");
  cl.startWatchdog("w1");
  await cl.waitMember("w1", "active", (m) => m.state === "active");

  // m1 loses the lease; s1 is master while the schema changes; m1 follows as a replica.
  cl.nodes.get("m1")!.kill("SIGSTOP");
  await waitFor("s1 holds the lease", async () => (await holder())?.node === "s1", { timeoutMs: 20_000 });
  // Not before s1 serves: the paused m1 is still subscribed and would swallow a request sent sooner.
  await cl.waitMaster("s1");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'on s1')", undefined, 10_000);
  cl.nodes.get("m1")!.kill("SIGCONT");
  const back = await cl.waitMember("m1", "a replica", (m) => m.state === "standby" && (m.replica === "streaming" || m.needsResync), 30_000);
  // Paused between a heartbeat row and its capture, m1 holds a change nobody has: an operator resyncs it.
  if (back.needsResync) assert.is((await cl.cli(["resync", "--node", "m1"])).code, 0);
  await cl.waitMember("m1", "a streaming replica", (m) => m.state === "standby" && m.replica === "streaming" && !m.needsResync, 30_000);
  await cl.waitConverged("s1", ["m1", "s2"]);

  // m1 becomes master again: its batches must carry the schema it has now.
  cl.nodes.get("s1")!.kill("SIGSTOP");
  await waitFor("m1 holds the lease again", async () => (await holder())?.node === "m1", { timeoutMs: 20_000 });
  await cl.waitMaster("m1");
  await cl.sql("INSERT INTO t VALUES (2, 'on m1 again')", undefined, 10_000);
  await cl.waitConverged("m1", ["s2"]);
  const s2 = await cl.member("s2");
  assert.is(s2?.needsResync, false, `s2 streams from m1 without a resync: ${JSON.stringify(s2?.error)}`);
  assert.not.match(cl.nodes.get("s2")!.log(), /fingerprint mismatch/);
  cl.nodes.get("s1")!.kill("SIGCONT");
});

test.run();
