/**
 * The master lease against a compare-and-set the KV should have refused (nats-server 2.9's
 * clustered race, nats-io/nats-server#4320): a holder that lost to the master renews its own
 * outdated revision, and the KV takes it. Epochs order the holders, so the master writes over it.
 * The race itself needs a NATS cluster and luck; the test writes what it leaves in the bucket.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { idsIn, startWriter } from "../helpers/workload.js";
import { decodeLease } from "../../src/nats/records.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

test("a lease value below the master's epoch, written over its revision, is overwritten by its next renew; nobody is demoted and writes go on", async () => {
  cl = await TestCluster.masterAndSlaves({ slaves: ["s1"] });
  const c = await cl.client();
  const alerts: { kind: string }[] = [];
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  await cl.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
  const w = startWriter(cl, { waitMs: 30_000 });
  await waitFor("writes before the stale lease write", () => w.acked().length > 10);
  const { leases } = await c.buckets();
  const held = decodeLease((await leases.get("master"))?.value)!;
  const stale = await leases.put("master", JSON.stringify({ node: "ghost", epoch: held.epoch - 1, instance: "lost-holder", role: "master", ts: Date.now() }));
  const renewed = await waitFor("m1's renew over the stale write", async () => {
    const e = await leases.get("master");
    const v = decodeLease(e?.value);
    return e && e.revision > stale && v?.node === "m1" ? v : null;
  });
  assert.equal([renewed.epoch, renewed.instance], [held.epoch, held.instance]);
  const since = Date.now();
  await waitFor("m1 acknowledging writes after its renew", () => w.acked().filter((r) => r.node === "m1" && r.doneAt > since).length > 5);
  await w.stop();
  assert.equal(alerts.filter((a) => ["master-lease-lost", "demoted", "promoted"].includes(a.kind)).map((a) => a.kind), []);
  const ids = idsIn(await cl.waitConverged("m1", ["s1"]));
  assert.equal(w.acked().filter((r) => !ids.includes(r.id)), [], "every acknowledged write is present");
});

test.run();
