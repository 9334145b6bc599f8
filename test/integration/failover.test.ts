/**
 * Leases, epochs, watchdogs and automatic failover with the Unity prerequisites; switchover; rejoin.
 * Real nats-server, real ferry processes, short leases (1.5 s).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import Database from "better-sqlite3";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup, ferryRun } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { idsIn, startWriter } from "../helpers/workload.js";

let cl: TestCluster;
let alerts: Record<string, any>[] = [];

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

async function cluster(config: Record<string, unknown> = {}, opts: { slaves?: string[]; watchdogs?: number } = {}) {
  cl = await TestCluster.start({ config: { failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 5 }, ...config } });
  alerts = [];
  const c = await cl.client();
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  for (const s of opts.slaves ?? ["s1", "s2"]) cl.startNode(s, "slave", s === "s1" ? ["--designated", "standby"] : []);
  // The watchdogs start beside the slaves (a process takes about a second to start).
  const w = opts.watchdogs ?? 1;
  if (w >= 1) cl.startWatchdog("w1", "primary");
  if (w >= 2) cl.startWatchdog("w2", "secondary");
  for (const s of opts.slaves ?? ["s1", "s2"]) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
  if (w >= 1) await cl.waitMember("w1", "active", (m) => m.state === "active");
  await cl.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
  await cl.waitConverged("m1", opts.slaves ?? ["s1", "s2"]);
  return cl;
}

const alertOf = (kind: string) => waitFor(`alert ${kind}`, () => alerts.find((a) => a.kind === kind), { timeoutMs: 20_000 });
const newMaster = (not: string) => cl.waitNewMaster(not, 20_000);

test("kill -9 of the master under load, synchronous mode: a slave is promoted, writes resume, no acknowledged write lost", async () => {
  await cluster({ replication: { syncReplicas: 1, syncTimeoutMs: 3000 } });
  const w = startWriter(cl);
  await waitFor("writes before the crash", () => w.acked().length > 100);
  const killedAt = Date.now();
  cl.nodes.get("m1")!.kill("SIGKILL");
  const m = await newMaster("m1");
  await waitFor("writes on the new master", () => w.acked().some((r) => r.node === m.node && r.invokedAt > killedAt));
  await w.stop();
  const dump = await cl.waitConverged(m.node, ["s2"]);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  const missing = w.acked().filter((r) => !ids.includes(r.id));
  assert.equal(missing, [], "every acknowledged write survives");
  assert.ok(m.epoch > 1);
  const promoted = await alertOf("promoted");
  assert.match(promoted.message, new RegExp(`${m.node} promoted with epoch \\d+ \\(was m1\\)`));
});

test("SIGSTOP of the master past its lease, then SIGCONT: the old master accepts no write after the new epoch began", async () => {
  await cluster({ replication: { syncReplicas: 1, syncTimeoutMs: 3000 } });
  const w = startWriter(cl, { waitMs: 20_000 });
  await waitFor("writes before the pause", () => w.acked().length > 50);
  const m1 = cl.nodes.get("m1")!;
  m1.kill("SIGSTOP");
  const m = await newMaster("m1");
  const promotedAt = Date.now();
  await waitFor("writes on the new master", () => w.acked().some((r) => r.node === m.node));
  m1.kill("SIGCONT");
  await cl.waitMember("m1", "back as a replica", (x) => x.state === "standby", 20_000);
  await waitFor("more writes after the old master is back", () => w.acked().filter((r) => r.invokedAt > promotedAt).length > 50);
  await w.stop();
  const late = w.acked().filter((r) => r.node === "m1" && r.doneAt > promotedAt);
  assert.equal(late, [], "no write acknowledged by m1 after the new master took over");
  for (const r of w.acked()) assert.is(r.epoch, r.node === "m1" ? 1 : m.epoch, `write ${r.id} carries its master's epoch`);
  assert.ok(/fenced itself|lost the master lease/.test(m1.log()), "the old master says it was fenced or lost the lease");
  const dump = await cl.waitConverged(m.node, ["s2"]);
  const ids = idsIn(dump);
  for (const r of w.acked()) assert.ok(ids.includes(r.id), `acknowledged row ${r.id} present`);
});

test("prerequisite 2: a member reporting contact from the old master blocks the failover, and the alert says which", async () => {
  await cluster({ failover: { waitMs: 2000, prerequisites: 2, maxAutomatic: 5 } });
  const c = await cl.client();
  const m1 = cl.nodes.get("m1")!;
  m1.kill("SIGSTOP");
  // Something still speaks for m1: notifications in its name reach the slaves during the wait.
  const t = setInterval(() => c.nc.publish(c.subj.notify, new TextEncoder().encode(JSON.stringify({ node: "m1", epoch: 1, lsn: 1 }))), 150);
  try {
    const aborted = await alertOf("failover-aborted");
    assert.match(aborted.message, /prerequisite 2: contact from the old master reported by s\d/);
    assert.is((await cl.status()).leases.master.node, "m1", "no promotion");
  } finally {
    clearInterval(t);
  }
  // Once the contact stops, the next attempt goes through.
  await newMaster("m1");
  m1.kill("SIGCONT");
});

test("prerequisite 4: a change table advancing during the wait blocks the failover", async () => {
  await cluster({ failover: { waitMs: 2500, prerequisites: 4, maxAutomatic: 5 } });
  cl.nodes.get("m1")!.kill("SIGSTOP");
  await alertOf("wait-started");
  // A writer still at work somewhere: s2's repository gets capture triggers and a write.
  const init = await ferryRun(["repo", "init", "--repo", `sqlite:${cl.repo("s2")}`]);
  assert.is(init.code, 0, init.stderr);
  const db = new Database(cl.repo("s2"));
  let strayError: unknown = null;
  const writes = setInterval(() => {
    try {
      db.prepare("INSERT INTO w(who) VALUES ('stray')").run();
    } catch (err) {
      strayError = err;
    }
  }, 200);
  try {
    const aborted = await alertOf("failover-aborted");
    assert.is(strayError, null);
    assert.match(aborted.message, /prerequisite 4: positions advanced during the wait \(.*s2 change table \d+ -> \d+/);
    assert.is((await cl.status()).leases.master.node, "m1");
  } finally {
    clearInterval(writes);
    db.close();
  }
});

test("prerequisite 1: a candidate that cannot reach a member connected before the loss is not promoted", async () => {
  await cluster({ failover: { waitMs: 0, prerequisites: 1, maxAutomatic: 5 } });
  // s2 stops first, so it cannot spool a batch that s1 lacks and be ranked the candidate itself.
  cl.nodes.get("s2")!.kill("SIGSTOP");
  cl.nodes.get("m1")!.kill("SIGSTOP");
  const aborted = await alertOf("failover-aborted");
  assert.match(aborted.message, /prerequisite 1: s1 cannot reach s2/);
  const skipped = alerts.find((a) => a.kind === "wait-skipped");
  assert.ok(skipped, "waitMs 0 warns that checks 2 and 4 are skipped");
  assert.is((await cl.status()).leases.master.node, "m1");
  cl.nodes.get("s2")!.kill("SIGCONT");
  await newMaster("m1");
  cl.nodes.get("m1")!.kill("SIGCONT");
});

test("failover.maxAutomatic reached: the next master death is not failed over until ferry failover reset", async () => {
  await cluster({ failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 1 } });
  cl.nodes.get("m1")!.kill("SIGKILL");
  const first = await newMaster("m1");
  cl.nodes.get(first.node)!.kill("SIGKILL");
  const limit = await alertOf("failover-limit");
  assert.match(limit.message, /automatic failover is disabled/);
  const shown = await cl.cli(["status"]);
  assert.match(shown.stdout, /automatic failover DISABLED/);
  assert.is((await cl.status()).leases.master.node, first.node, "no second automatic failover");
  const reset = await cl.cli(["failover", "reset"]);
  assert.is(reset.code, 0, reset.stderr);
  const second = await newMaster(first.node);
  assert.is.not(second.node, "m1");
});

test("the active watchdog killed: the secondary takes over and still performs a failover", async () => {
  await cluster({}, { watchdogs: 2 });
  await cl.waitMember("w2", "standing by", (m) => m.state === "standby");
  cl.nodes.get("w1")!.kill("SIGKILL");
  await cl.waitMember("w2", "active", (m) => m.state === "active", 15_000);
  assert.is((await cl.status()).leases.watchdog.node, "w2");
  cl.nodes.get("m1")!.kill("SIGKILL");
  const m = await newMaster("m1");
  assert.ok(["s1", "s2"].includes(m.node));
  assert.ok(alerts.some((a) => a.kind === "promoted" && a.node === "w2"));
});

test("rejoin: an old master without unreplicated batches continues as a slave", async () => {
  await cluster();
  for (let i = 0; i < 20; i++) await cl.sql(`INSERT INTO w(id, who) VALUES (${i}, 'before')`);
  await cl.waitConverged("m1", ["s1", "s2"]);
  cl.nodes.get("m1")!.kill("SIGKILL");
  const m = await newMaster("m1");
  await cl.sql(`INSERT INTO w(id, who) VALUES (100, 'after')`);
  cl.startNode("m1", "master");
  await cl.waitMember("m1", "a streaming replica", (x) => x.state === "standby" && x.replica === "streaming");
  await cl.sql(`INSERT INTO w(id, who) VALUES (101, 'after rejoin')`);
  await cl.waitConverged(m.node, ["m1", "s1", "s2"].filter((n) => n !== m.node));
});

test("rejoin: an old master holding batches that touched more rows than compare.maxRepairRows reports their LSNs and needs a resync", async () => {
  // No pushes: batches pushed to a paused slave wait in its socket and are taken when it resumes,
  // from a master it still follows; the writes below must reach no one.
  await cluster({ compare: { maxRepairRows: 2 }, replication: { pushBytes: 0 } });
  await cl.sql(`INSERT INTO w(id, who) VALUES (1, 'replicated')`);
  await cl.waitConverged("m1", ["s1", "s2"]);
  cl.nodes.get("s1")!.kill("SIGSTOP");
  cl.nodes.get("s2")!.kill("SIGSTOP");
  for (let i = 2; i < 6; i++) await cl.sql(`INSERT INTO w(id, who) VALUES (${i}, 'lost with m1')`);
  cl.nodes.get("m1")!.kill("SIGKILL");
  cl.nodes.get("s1")!.kill("SIGCONT");
  cl.nodes.get("s2")!.kill("SIGCONT");
  const m = await newMaster("m1");
  cl.startNode("m1", "master");
  const rejoined = await cl.waitMember("m1", "needing resync", (x) => x.needsResync === true, 20_000);
  const why = String(rejoined.error?.message ?? rejoined.resyncReason);
  assert.match(why, /holds LSNs \d+\.\.\d+ from epoch 1 that were never replicated/, why);
  assert.ok(alerts.some((a) => a.kind === "replica-diverged" && /never replicated/.test(a.message)));
  const r = await cl.cli(["resync", "--node", "m1"]);
  assert.is(r.code, 0, r.stderr);
  const dump = await cl.waitConverged(m.node, ["m1"]);
  assert.not.match(dump, /lost with m1/);
});

test("rejoin: an old master with changes committed but never sequenced says why it needs a resync", async () => {
  await cluster();
  cl.nodes.get("m1")!.kill("SIGSTOP");
  const m = await newMaster("m1");
  // An application writes to m1's file while m1 is stopped: its capture triggers record the row, nobody sequences it.
  const db = new Database(cl.repo("m1"), { timeout: 5000 });
  try {
    db.prepare("INSERT INTO w(id, who) VALUES (100, 'on the old master only')").run();
  } finally {
    db.close();
  }
  cl.nodes.get("m1")!.kill("SIGCONT");
  const back = await cl.waitMember("m1", "needing resync", (x) => x.needsResync === true, 20_000);
  assert.match(String(back.resyncReason), /m1 holds 1 changes committed while it was master that were never replicated/);
  assert.match((await cl.cli(["status"])).stdout, /NEEDS RESYNC: m1 holds 1 changes/);
  assert.is((await cl.cli(["resync", "--node", "m1"])).code, 0);
  const dump = await cl.waitConverged(m.node, ["m1"]);
  assert.not.match(dump, /on the old master only/);
});

test("planned switchover under load: no write lost or doubled, the old master becomes a slave", async () => {
  await cluster({}, { watchdogs: 0 });
  const w = startWriter(cl);
  await waitFor("writes before the switchover", () => w.acked().length > 100);
  // Asked twice at once: one handover; the other is told one is in progress (or, arriving after it, that s2 is the master).
  const twice = await Promise.all([0, 1].map(() => cl.cli(["switchover", "--to", "s2", "--json"])));
  const r = twice.find((x) => x.code === 0)!;
  assert.ok(r, twice.map((x) => x.stderr).join("\n"));
  const other = twice.find((x) => x !== r)!;
  assert.is(other.code, 1, other.stdout);
  assert.match(other.stderr, /\[IN_PROGRESS\]|s2 is already the master/, other.stderr);
  const out = JSON.parse(r.stdout);
  assert.is(out.to, "s2");
  await waitFor("writes on s2", () => w.acked().filter((x) => x.node === "s2").length > 100);
  await w.stop();
  await cl.waitMember("m1", "a streaming replica", (x) => x.state === "standby" && x.replica === "streaming");
  const dump = await cl.waitConverged("s2", ["m1", "s1"]);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  for (const x of w.acked()) assert.ok(ids.includes(x.id), `acknowledged row ${x.id} present`);
  assert.equal(w.records.filter((x) => x.outcome === "unknown"), [], "no write of unknown outcome");
});

test("invalid failover settings are refused at start with the field named", async () => {
  cl = await TestCluster.start();
  const neg = await cl.cli(["start", "--role", "watchdog", "--node", "wx"], { FERRY_FAILOVER_WAIT_MS: "-5" });
  assert.is(neg.code, 2);
  assert.match(neg.stderr, /failover\.waitMs/);
  const nan = await cl.cli(["start", "--role", "watchdog", "--node", "wx"], { FERRY_FAILOVER_WAIT_MS: "soon" });
  assert.match(nan.stderr, /failover\.waitMs: .*expected number/);
  const bits = await cl.cli(["start", "--role", "watchdog", "--node", "wx"], { FERRY_FAILOVER_PREREQUISITES: "9" });
  assert.match(bits.stderr, /failover\.prerequisites/);
});

test.run();
