/**
 * A crashed master is failed over well before its lease expires; one that may still be alive
 * (paused, cut off) is not, until the lease has expired and it has fenced itself. Writes follow
 * the lease: an attempt in flight to the old master is sent again to the new one as soon as the
 * lease moves, not after its timeout. Long leases (10 s) keep the two paths apart.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { FaultProxy } from "../../scripts/chaos/proxy.js";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { idsIn, startWriter } from "../helpers/workload.js";

const TTL = 10_000;
const MARGIN = 2000;
/** The observers' last view of a renew is at most one renew period old when the master stops. */
const EARLIEST_EXPIRY = TTL - (TTL - MARGIN) / 3;
/** Far beyond any failover here: an attempt that waited for it would show. */
const ATTEMPT_TIMEOUT = 60_000;

let cl: TestCluster;
let proxy: FaultProxy | null = null;
let alerts: Record<string, any>[] = [];

test.after.each(async () => {
  await proxy?.stop();
  proxy = null;
  await cl?.close();
  await cleanup();
});

async function cluster(viaProxy = false) {
  cl = await TestCluster.start({
    config: {
      lease: { ttlMs: TTL, safetyMarginMs: MARGIN },
      failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 5 },
      replication: { syncReplicas: 1, syncTimeoutMs: 3000 },
    },
  });
  alerts = [];
  const c = await cl.client();
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  if (viaProxy) proxy = await FaultProxy.start("m1", [cl.nats.port]);
  cl.startNode("m1", "master", proxy ? ["--nats", proxy.urls[0]] : []);
  await cl.waitMaster("m1");
  for (const s of ["s1", "s2"]) cl.startNode(s, "slave");
  cl.startWatchdog("w1", "primary");
  for (const s of ["s1", "s2"]) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
  await cl.waitMember("w1", "active", (m) => m.state === "active");
  await cl.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
  await cl.waitConverged("m1", ["s1", "s2"]);
  const w = startWriter(cl, { waitMs: 60_000, timeoutMs: ATTEMPT_TIMEOUT });
  await waitFor("writes before the fault", () => w.acked().length > 30);
  return w;
}

/** The promotion alert's time, and the first write acknowledged by the new master after `since`. */
async function takeover(w: ReturnType<typeof startWriter>, since: number) {
  const promoted = await waitFor("a promotion", () => alerts.find((a) => a.kind === "promoted"), { timeoutMs: 40_000 });
  const node = promoted.data.candidate as string;
  const first = await waitFor("a write acknowledged by the new master", () => w.acked().find((r) => r.node === node && r.doneAt > since), { timeoutMs: 40_000 });
  return { node, promotedAt: Date.parse(promoted.ts), firstAck: first.doneAt };
}

async function exactlyOnce(w: ReturnType<typeof startWriter>, master: string) {
  await w.stop();
  const ids = idsIn(await cl.waitConverged(master, [master === "s1" ? "s2" : "s1"]));
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  assert.equal(w.acked().filter((r) => !ids.includes(r.id)), [], "every acknowledged write is present");
}

test("kill -9 of the master: a replica is promoted and acknowledges the writer's next write well before the lease TTL", async () => {
  const w = await cluster();
  const killedAt = Date.now();
  cl.nodes.get("m1")!.kill("SIGKILL");
  const t = await takeover(w, killedAt);
  assert.ok(t.firstAck - killedAt < TTL / 2, `first write on ${t.node} ${t.firstAck - killedAt} ms after the kill (lease TTL ${TTL} ms)`);
  const lost = alerts.find((a) => a.kind === "master-lease-lost");
  assert.match(lost?.message ?? "", /has no connection to NATS/);
  await exactlyOnce(w, t.node);
});

test("SIGSTOP of the master: nobody is promoted before the lease expired; the write in flight goes to the new master without waiting for its timeout", async () => {
  const w = await cluster();
  const m1 = cl.nodes.get("m1")!;
  const stoppedAt = Date.now();
  m1.kill("SIGSTOP");
  const t = await takeover(w, stoppedAt);
  assert.ok(t.promotedAt - stoppedAt >= EARLIEST_EXPIRY, `promoted ${t.promotedAt - stoppedAt} ms after the pause, before the lease could expire`);
  assert.ok(t.firstAck - stoppedAt < ATTEMPT_TIMEOUT / 2, `first write on ${t.node} ${t.firstAck - stoppedAt} ms after the pause`);
  const lost = alerts.find((a) => a.kind === "master-lease-lost");
  assert.match(lost?.message ?? "", /lost its lease/);
  m1.kill("SIGCONT");
  await cl.waitMember("m1", "back as a replica", (x) => x.state === "standby", 30_000);
  assert.match(m1.log(), /fenced itself|lost the master lease/);
  assert.equal(w.acked().filter((r) => r.node === "m1" && r.doneAt > t.promotedAt), [], "m1 acknowledged nothing after the takeover");
  await exactlyOnce(w, t.node);
});

test("a blackhole cut of the master's NATS link: nobody is promoted before the lease expired; writes resume on the new master", async () => {
  const w = await cluster(true);
  const cutAt = Date.now();
  proxy!.set({ mode: "blackhole" });
  const t = await takeover(w, cutAt);
  assert.ok(t.promotedAt - cutAt >= EARLIEST_EXPIRY, `promoted ${t.promotedAt - cutAt} ms after the cut, before the lease could expire`);
  assert.ok(t.firstAck - cutAt < ATTEMPT_TIMEOUT / 2, `first write on ${t.node} ${t.firstAck - cutAt} ms after the cut`);
  proxy!.set({ mode: "pass" });
  await cl.waitMember("m1", "back as a replica", (x) => x.state === "standby", 40_000);
  assert.match(cl.nodes.get("m1")!.log(), /fenced itself|lost the master lease/);
  assert.equal(w.acked().filter((r) => r.node === "m1" && r.doneAt > t.promotedAt), [], "m1 acknowledged nothing after the takeover");
  await exactlyOnce(w, t.node);
});

test.run();
