/**
 * Outages on PostgreSQL: a master's or a replica's server stopped and started again while writes
 * flow, and the master's capture slot dropped behind its back.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import pg from "pg";
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

test("the master's server stopped and started under writes: replication pauses, says why, and resumes by itself; nothing lost or doubled", async () => {
  await cluster({}, false);
  const w = startWriter(cl, { waitMs: 60_000 });
  await waitFor("writes", () => w.acked().length > 50);
  const pg = cl.pg.get("m1")!.server;
  await pg.stop("immediate");
  const m1 = await cl.waitMember("m1", "reporting the repository unavailable", (m) => /unavailable/i.test(m.error?.message ?? ""), 30_000);
  assert.not.match(String(m1.error.message), /password/i);
  await pg.start();
  await cl.waitMember("m1", "repository back", (m) => m.error === null, 30_000);
  const before = w.acked().length;
  await waitFor("writes after the server is back", () => w.acked().length > before + 50, { timeoutMs: 30_000 });
  await w.stop();
  const dump = await cl.waitConverged("m1", ["s1", "s2"], 60_000);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  assert.equal(w.acked().filter((r) => !ids.includes(r.id)), [], "every acknowledged write survives");
});

test("a replica's server stopped and started under writes: it catches up by itself", async () => {
  await cluster({}, false);
  const w = startWriter(cl);
  await waitFor("writes", () => w.acked().length > 50);
  const pg = cl.pg.get("s1")!.server;
  await pg.stop("immediate");
  await cl.waitMember("s1", "reporting its repository unavailable", (m) => /unavailable/i.test(JSON.stringify(m.error ?? "")), 30_000);
  const before = w.acked().length;
  await waitFor("writes while s1's server is down", () => w.acked().length > before + 50);
  await pg.start();
  await w.stop();
  const dump = await cl.waitConverged("m1", ["s1", "s2"], 60_000);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  assert.equal(w.acked().filter((r) => !ids.includes(r.id)), [], "every acknowledged write survives");
});

test("the master's capture slot dropped behind its back: detected, alerted, every replica marked for resync, and resync repairs it", async () => {
  await cluster({}, false);
  await cl.sql("INSERT INTO w(id, who) VALUES (1, 'before')");
  await cl.waitConverged("m1", ["s1", "s2"]);
  const c = new pg.Client({ connectionString: cl.repoUrl("m1") });
  c.on("error", () => {});
  await c.connect();
  try {
    // As an operator would: the walsender streaming it ended first (ferry streams again at once: retry until the drop gets in).
    await waitFor("the slot dropped", async () => {
      await c.query("SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_type = 'logical' AND active_pid IS NOT NULL").catch(() => null);
      const r = await c.query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_type = 'logical'").catch(() => null);
      return r !== null && r.rowCount! > 0;
    });
    await c.query("INSERT INTO w(id, who) VALUES (2, 'while no slot held changes')");
  } finally {
    await c.end();
  }
  const lost = await waitFor("the capture-lost alert", () => alerts.find((a) => a.kind === "capture-lost"));
  assert.match(lost.message, /m1 lost captured changes: the capture slot \S+ was dropped while this node was master/);
  for (const s of ["s1", "s2"]) await cl.waitMember(s, "needing resync", (m) => m.needsResync === true);
  for (const s of ["s1", "s2"]) assert.is((await cl.cli(["resync", "--node", s])).code, 0);
  await cl.sql("INSERT INTO w(id, who) VALUES (3, 'after')");
  const dump = await cl.waitConverged("m1", ["s1", "s2"], 60_000);
  assert.equal(idsIn(dump).sort(), [1, 2, 3], "the resync brought the row the slot never saw");
});

test.run();
