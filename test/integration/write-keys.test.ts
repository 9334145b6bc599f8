/**
 * Write keys across a failover: a client's retry of a write reaches a master other than the one that
 * ran it, and the write still happens once. Real nats-server and ferry processes, short leases.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runSql } from "../../src/client/sql.js";
import { RepositoryError } from "../../src/errors.js";
import { encodeJson, errorReply, unwrapReply } from "../../src/nats/codec.js";
import type { SqlReply } from "../../src/client/sql.js";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

async function cluster() {
  cl = await TestCluster.start({ config: { failover: { waitMs: 0, prerequisites: 0, maxAutomatic: 5 }, replication: { syncReplicas: 1 } } });
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave", ["--designated", "standby"]);
  cl.startNode("s2", "slave");
  for (const s of ["s1", "s2"]) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
  cl.startWatchdog("w1");
  await cl.waitMember("w1", "active", (m) => m.state === "active");
  // No key of its own in a row: a write run twice shows as two rows.
  await cl.sql("CREATE TABLE k(n INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)");
  await cl.waitConverged("m1", ["s1", "s2"]);
}

const rows = async () => (await cl.sql("SELECT v, count(*) FROM k GROUP BY v ORDER BY v", undefined, 10_000)).results[0].rows;

/** One attempt with a chosen key, as a client whose first answer was lost would send it again. */
async function send(sql: string, id: string): Promise<SqlReply> {
  const c = await cl.client();
  return unwrapReply<SqlReply>(c.subj.sql, (await c.nc.request(c.subj.sql, encodeJson({ sql, id }), { timeout: 10_000 })).data);
}

test("a write acknowledged by the old master, its answer lost: the retry on the new master answers from the replicated key", async () => {
  await cluster();
  const first = await send("INSERT INTO k(v) VALUES ('once')", "key-lost-answer");
  assert.is(first.node, "m1");
  await cl.waitConverged("m1", ["s1", "s2"]);
  cl.nodes.get("m1")!.kill("SIGKILL");
  // s1 or s2: the watchdog picks the replica holding the most, and heartbeat batches go on after the convergence.
  const promoted = (await cl.waitNewMaster("m1")).node;
  const retry = await send("INSERT INTO k(v) VALUES ('once')", "key-lost-answer");
  assert.is(retry.node, promoted);
  assert.equal(retry.results, first.results, "the recorded results, not a new insert's");
  // The log line may reach the file just after the answer reaches the client.
  await cl.until(`${promoted} says it replayed the write`, () => /answered from its record/.test(cl.nodes.get(promoted)!.log()) || null);
  assert.equal(await rows(), [["once", 1]]);
});

test("a request swallowed by a paused master: ferry sql retries it after its timeout and the new master runs it once", async () => {
  await cluster();
  const m1 = cl.nodes.get("m1")!;
  m1.kill("SIGSTOP");
  try {
    // m1 is still subscribed: the first attempts go to it and time out.
    const r = await runSql(await cl.client(), "INSERT INTO k(v) VALUES ('after the pause')", undefined, 30_000, 1500);
    assert.ok(["s1", "s2"].includes(r.node), `ran on ${r.node}, not on a promoted replica`);
  } finally {
    m1.kill("SIGCONT");
  }
  await waitFor("m1 back as a replica", async () => (await cl.member("m1"))?.state === "standby", { timeoutMs: 30_000 });
  assert.equal(await rows(), [["after the pause", 1]]);
});

test("a retry that ends in 'not committed' after an attempt that may have committed reports the outcome as unknown", async () => {
  cl = await TestCluster.start();
  const c = await cl.client();
  // A fake master: it never answers the first attempt, and refuses the retry before running it.
  let attempts = 0;
  c.nc.subscribe(c.subj.sql, {
    callback: (_err, msg) => {
      if (++attempts > 1) errorReply(msg, new RepositoryError("REPO_UNAVAILABLE", "repository unreadable"));
    },
  });
  await c.nc.flush();
  const err = await runSql(c, "INSERT INTO k(v) VALUES ('x')", undefined, 5000, 300).then(
    () => null,
    (e: { code?: string; message?: string }) => e,
  );
  assert.is(attempts, 2);
  assert.is(err?.code, "TIMEOUT", "the first attempt may have committed: not reported as failed");
  assert.match(err?.message ?? "", /outcome is unknown; retried until: repository unreadable/);
  // Refused at once, with no attempt in doubt: certainly not committed.
  attempts = 1;
  const direct = await runSql(c, "INSERT INTO k(v) VALUES ('x')", undefined, 5000, 300).then(
    () => null,
    (e: { code?: string }) => e,
  );
  assert.is(direct?.code, "REPO_UNAVAILABLE");
});

test.run();
