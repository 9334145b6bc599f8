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

  // m1 loses the lease; a slave is master while the schema changes; m1 follows as a replica. The
  // watchdog promotes the slave holding the most, which may be either.
  cl.nodes.get("m1")!.kill("SIGSTOP");
  await waitFor("a slave holds the lease", async () => ["s1", "s2"].includes((await holder())?.node ?? ""), { timeoutMs: 20_000 });
  const a = (await holder())!.node;
  const b = a === "s1" ? "s2" : "s1";
  // Not before it serves: the paused m1 is still subscribed and would swallow a request sent sooner.
  await cl.waitMaster(a);
  await cl.sql(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'on ${a}')`, undefined, 10_000);
  cl.nodes.get("m1")!.kill("SIGCONT");
  const back = await cl.waitMember("m1", "a replica", (m) => m.state === "standby" && (m.replica === "streaming" || m.needsResync), 30_000);
  // Paused between a heartbeat row and its capture, m1 holds a change nobody has: an operator resyncs it.
  if (back.needsResync) assert.is((await cl.cli(["resync", "--node", "m1"])).code, 0);
  await cl.waitMember("m1", "a streaming replica", (m) => m.state === "standby" && m.replica === "streaming" && !m.needsResync, 30_000);
  await cl.waitConverged(a, ["m1", b]);

  // m1 becomes master again: its batches must carry the schema it has now. The other slave is
  // paused until the watchdog counts it out (its heartbeat older than 3 s), so m1 is the candidate.
  cl.nodes.get(b)!.kill("SIGSTOP");
  await waitFor(`${b} counted out`, async () => {
    const m = (await cl.status()).members.find((x) => x.node === b);
    return m && (m.heartbeatAgeMs as number) > 4000;
  }, { timeoutMs: 20_000 });
  cl.nodes.get(a)!.kill("SIGSTOP");
  await waitFor("m1 holds the lease again", async () => (await holder())?.node === "m1", { timeoutMs: 20_000 });
  await cl.waitMaster("m1");
  cl.nodes.get(b)!.kill("SIGCONT");
  await cl.sql("INSERT INTO t VALUES (2, 'on m1 again')", undefined, 10_000);
  await cl.waitConverged("m1", [b]);
  const follower = await cl.member(b);
  assert.is(follower?.needsResync, false, `${b} streams from m1 without a resync: ${JSON.stringify(follower?.error)}`);
  assert.not.match(cl.nodes.get(b)!.log(), /fingerprint mismatch/);
  cl.nodes.get(a)!.kill("SIGCONT");
});

test.run();
