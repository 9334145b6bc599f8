/**
 * Failover on PostgreSQL: the master's ferry killed together with its server (pg_ctl stop -m
 * immediate) under synchronous replication, and the old master's rejoin. (Outages of a server and
 * a lost capture slot: postgres-outage.test.ts.)
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { idsIn, startWriter } from "../helpers/workload.js";

let cl: TestCluster;
let alerts: Record<string, any>[] = [];

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

async function cluster(config: Record<string, unknown> = {}, watchdog = true) {
  cl = await TestCluster.start({ config: { failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 5 }, ...config }, postgres: true });
  alerts = [];
  const c = await cl.client();
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  await Promise.all(["m1", "s1", "s2"].map((n) => cl.pgServer(n)));
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave", ["--designated", "standby"]);
  cl.startNode("s2", "slave");
  for (const s of ["s1", "s2"]) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
  if (watchdog) {
    cl.startWatchdog("w1", "primary");
    await cl.waitMember("w1", "active", (m) => m.state === "active");
  }
  await cl.sql("CREATE TABLE w(id bigint PRIMARY KEY, who text)");
  await cl.waitConverged("m1", ["s1", "s2"]);
  return cl;
}

const newMaster = (not: string) => cl.waitNewMaster(not, 30_000);

test("kill -9 of the master's ferry and pg_ctl stop -m immediate of its server under load, syncReplicas 1: no acknowledged write lost, the old master rejoins", async () => {
  await cluster({ replication: { syncReplicas: 1, syncTimeoutMs: 3000 } });
  // A serial column: the promoted master's sequence must continue past what the old master handed out.
  await cl.sql("CREATE TABLE s(n bigserial PRIMARY KEY, who text)");
  const w = startWriter(cl);
  const serial = startWriter(cl, { who: "serial", statement: (_id, who) => ({ sql: `INSERT INTO s(who) VALUES ('${who}')` }) });
  await waitFor("writes before the crash", () => w.acked().length > 100 && serial.acked().length > 50, { timeoutMs: 30_000 });
  const killedAt = Date.now();
  cl.nodes.get("m1")!.kill("SIGKILL");
  await cl.pg.get("m1")!.server.stop("immediate");
  const m = await newMaster("m1");
  await waitFor("writes on the new master", () => w.acked().some((r) => r.node === m.node && r.invokedAt > killedAt), { timeoutMs: 30_000 });
  await waitFor("serial inserts on the new master", () => serial.acked().some((r) => r.node === m.node && r.invokedAt > killedAt), { timeoutMs: 30_000 });
  await w.stop();
  await serial.stop();
  const survivor = m.node === "s1" ? "s2" : "s1";
  const dump = await cl.waitConverged(m.node, [survivor], 60_000);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  assert.equal(w.acked().filter((r) => !ids.includes(r.id)), [], "every acknowledged write survives");
  assert.ok(idsIn(dump, "s").length >= serial.acked().length, "no serial insert collided");

  // The old master comes back (server and ferry) and rejoins as a replica of the new one.
  await cl.pg.get("m1")!.server.start();
  cl.startNode("m1", "master");
  const back = await cl.waitMember("m1", "a replica again", (x) => x.state === "standby" && (x.replica === "streaming" || x.needsResync === true), 30_000);
  if (back.needsResync) assert.is((await cl.cli(["resync", "--node", "m1"])).code, 0);
  await cl.sql(`INSERT INTO w(id, who) VALUES (1000000, 'after rejoin')`);
  await cl.waitConverged(m.node, ["m1", survivor], 60_000);
  assert.ok(alerts.some((a) => a.kind === "promoted"), "the promotion was alerted");
});

test.run();
