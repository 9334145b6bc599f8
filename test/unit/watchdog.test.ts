/**
 * The watchdog's failover machine on XState's SimulatedClock: the lease children, heartbeats, the
 * failover count and the diverged marks are events the test sends; reach, promote and the
 * continuous compare are stubs it completes.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromCallback, fromPromise } from "xstate";
import { chooseCandidate, SETTLE_MS, watchdogMachine, type MemberView, type WatchdogInput } from "../../src/machines/watchdog.js";
import { verifierMachine, type DivergedMark, type VerifyReport } from "../../src/machines/verify.js";
import { deferred, harness, type Harness } from "../helpers/harness.js";

const WAIT = 3000;
const RETRY = 2000;

const member = (node: string, over: Partial<MemberView> = {}): MemberView => ({
  node,
  role: "slave",
  state: "standby",
  replica: "streaming",
  appliedLsn: 10,
  spooledLsn: 10,
  changeSeq: 0,
  needsResync: false,
  masterContact: { node: "m1", at: 100 },
  alive: true,
  ...over,
});

function setup(over: Partial<WatchdogInput> = {}) {
  const reaches: { input: { candidate: string; members: string[] }; d: ReturnType<typeof deferred<string[]>> }[] = [];
  const promotes: { input: { candidate: string; oldMaster: string }; d: ReturnType<typeof deferred<{ epoch: number; at: number }>> }[] = [];
  const compares: { signal: AbortSignal; d: ReturnType<typeof deferred<{ report: VerifyReport; at: number } | null>> }[] = [];
  const idle = fromCallback(() => () => {});
  const machine = watchdogMachine.provide({
    actors: {
      lease: idle,
      masterLease: idle,
      members: idle,
      failoverState: idle,
      reach: fromPromise<string[], { candidate: string; members: string[] }>(({ input }) => {
        const d = deferred<string[]>();
        reaches.push({ input, d });
        return d.promise;
      }),
      promote: fromPromise<{ epoch: number; at: number }, { candidate: string; oldMaster: string }>(({ input }) => {
        const d = deferred<{ epoch: number; at: number }>();
        promotes.push({ input, d });
        return d.promise;
      }),
      verifier: verifierMachine.provide({
        actors: {
          compare: fromPromise<{ report: VerifyReport; at: number } | null>(({ signal }) => {
            const d = deferred<{ report: VerifyReport; at: number } | null>();
            compares.push({ signal, d });
            return d.promise;
          }),
        },
      }),
    },
  });
  const lease = { key: "x", node: "w1", instance: "i", ttlMs: 1000, safetyMarginMs: 300 };
  const h: Harness = harness(machine, { lease, masterLease: lease, waitMs: WAIT, prerequisites: 7, maxAutomatic: 2, windowMs: 60_000, retryMs: RETRY, verifyMs: 0, ...over });
  const emitted: { type: string; kind?: string; message?: string; state?: { history: number[] }; diverged?: DivergedMark[]; clean?: string[] }[] = [];
  h.child().on("*", (e: never) => emitted.push(e));
  const send = async (e: Record<string, unknown>) => {
    h.child().send(e as never);
    await h.settle();
  };
  const ctx = () => h.child().getSnapshot().context;
  const alerts = () => emitted.filter((e) => e.type === "alert").map((e) => e.kind);
  const alert = (kind: string) => emitted.find((e) => e.type === "alert" && e.kind === kind);
  const active = () => send({ type: "LEASE_HELD", key: "watchdog", epoch: 1, revision: 1 });
  const members = (ms: MemberView[]) => send({ type: "MEMBERS", members: ms });
  const expire = () => send({ type: "LEASE_SEEN", key: "master", holder: { node: "m1", epoch: 1, instance: "mi" }, live: false });
  const live = (node = "m1") => send({ type: "LEASE_SEEN", key: "master", holder: { node, epoch: 1, instance: "mi" }, live: true });
  return { h, reaches, promotes, compares, send, ctx, alerts, alert, emitted, active, members, expire, live };
}

const cluster = () => [member("m1", { role: "master", state: "active" }), member("s1", { standby: true }), member("s2"), member("w2", { role: "watchdog", state: "standby" })];

test("standby until its own lease is held; the master's lease events do not activate it", async () => {
  const s = setup();
  assert.is(s.h.state(), "standby");
  await s.send({ type: "LEASE_HELD", key: "master", epoch: 1, revision: 1 });
  assert.is(s.h.state(), "standby");
  await s.active();
  assert.is(s.h.state(), "monitoring");
  s.h.stop();
});

test("losing or failing to renew its own lease returns it to standby from any state", async () => {
  for (const type of ["LEASE_LOST", "LEASE_FENCED"]) {
    const s = setup();
    await s.active();
    await s.members(cluster());
    await s.expire();
    assert.ok(s.h.state().startsWith("{failover"), s.h.state());
    await s.send({ type, key: "master", holder: null, epoch: 1 });
    assert.ok(s.h.state().startsWith("{failover"), "the master lease's events are not its own");
    await s.send({ type, key: "watchdog", holder: null, epoch: 1 });
    assert.is(s.h.state(), "standby");
    s.h.stop();
  }
});

test("a full failover: lease lost, wait, candidate, reach, prerequisites, promote, back to monitoring", async () => {
  const s = setup();
  await s.active();
  await s.members(cluster());
  await s.expire();
  assert.equal(s.alerts(), ["master-lease-lost", "wait-started"]);
  assert.equal(s.ctx().connectedBefore, ["s1", "s2", "w2"]);
  await s.h.advance(WAIT - 1);
  assert.is(s.reaches.length, 0, "nothing decided before the wait is over");
  await s.h.advance(1);
  assert.is(s.reaches.length, 1);
  assert.equal(s.reaches[0].input, { candidate: "s1", members: ["s2", "w2"] });
  s.reaches[0].d.resolve([]);
  await s.h.settle();
  assert.match(s.alert("prerequisites")!.message!, /1 ok .*2 ok .*4 ok/);
  assert.equal(s.promotes[0].input, { candidate: "s1", oldMaster: "m1" });
  s.promotes[0].d.resolve({ epoch: 2, at: 5000 });
  await s.h.settle();
  assert.is(s.h.state(), "monitoring");
  assert.match(s.alert("promoted")!.message!, /s1 promoted with epoch 2 \(was m1\)/);
  assert.equal(s.emitted.find((e) => e.type === "failover")!.state!.history, [5000]);
  assert.is(s.ctx().lost, null);
  s.h.stop();
});

test("the candidate: the replica holding the most, then the designated standby, then the lowest id", () => {
  const ms = [
    member("m1", { role: "master", spooledLsn: 99 }),
    member("s3", { spooledLsn: 20, appliedLsn: 18 }),
    member("s2", { spooledLsn: 20, appliedLsn: 18 }),
    member("s1", { spooledLsn: 20, appliedLsn: 18, standby: true }),
    member("s4", { spooledLsn: 50, needsResync: true }),
    member("s5", { spooledLsn: 60, alive: false }),
    member("c1", { role: "collector", spooledLsn: 70 }),
    member("s6", { spooledLsn: 19, appliedLsn: 19 }),
  ];
  assert.is(chooseCandidate(ms, "m1").candidate?.node, "s1", "a tie goes to the designated standby");
  assert.is(chooseCandidate(ms.filter((m) => m.node !== "s1"), "m1").candidate?.node, "s2", "then the lowest id");
  assert.is(chooseCandidate([...ms, member("s7", { spooledLsn: 21 })], "m1").candidate?.node, "s7", "the most held wins");
  assert.is(chooseCandidate([member("s4", { needsResync: true }), member("m1")], "m1").candidate, null);
  assert.is(
    chooseCandidate([...ms, member("m2", { spooledLsn: 90, rejoining: true })], "m1").candidate?.node,
    "s1",
    "a node repairing the rows of batches it dropped at a rejoin is passed over, however much it holds",
  );
});

test("waitMs = 0: no wait, a warning that checks 2 and 4 are skipped, and they are reported as skipped", async () => {
  const s = setup({ waitMs: 0 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  assert.ok(s.alerts().includes("wait-skipped"));
  assert.is(s.reaches.length, 1, "straight to the reachability check");
  s.reaches[0].d.resolve([]);
  await s.h.settle();
  assert.match(s.alert("prerequisites")!.message!, /2 skipped .*4 skipped/);
  assert.is(s.promotes.length, 1);
  s.h.stop();
});

test("prerequisite 2: contact from the old master during the wait aborts, names the member, and is retried later", async () => {
  const s = setup({ prerequisites: 2 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  await s.h.advance(SETTLE_MS);
  await s.members(cluster().map((m) => (m.node === "s2" ? { ...m, masterContact: { node: "m1", at: 200 } } : m)));
  await s.h.advance(WAIT);
  assert.is(s.reaches.length, 0, "prerequisite 1 is off");
  assert.is(s.h.state(), "aborted");
  assert.match(s.alert("failover-aborted")!.message!, /prerequisite 2: contact from the old master reported by s2/);
  await s.h.advance(RETRY);
  assert.ok(s.h.state().startsWith("{failover"), "tried again while the lease stays expired");
  await s.h.advance(WAIT);
  assert.is(s.promotes.length, 1, "no new contact: promoted this time");
  s.h.stop();
});

test("prerequisite 4: an applied position or a change table advancing during the wait aborts; during the settling it only moves the baseline", async () => {
  const s = setup({ prerequisites: 4 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  // Reported late (a heartbeat in flight at the loss): part of the baseline, not a violation.
  await s.members(cluster().map((m) => (m.node === "s1" ? { ...m, appliedLsn: 11, spooledLsn: 11 } : m)));
  await s.h.advance(SETTLE_MS);
  await s.members(cluster().map((m) => (m.node === "s1" ? { ...m, appliedLsn: 11, spooledLsn: 11 } : m.node === "s2" ? { ...m, changeSeq: 3 } : m)));
  await s.h.advance(WAIT);
  assert.is(s.h.state(), "aborted");
  const msg = s.alert("failover-aborted")!.message!;
  assert.match(msg, /prerequisite 4: positions advanced during the wait \(s2 change table 0 -> 3\)/);
  assert.not.match(msg, /s1 applied/);
  s.h.stop();
});

test("prerequisite 1: a candidate that cannot reach a member, or does not answer, aborts", async () => {
  const s = setup({ prerequisites: 1, waitMs: 0 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  s.reaches[0].d.resolve(["s2"]);
  await s.h.settle();
  assert.match(s.alert("failover-aborted")!.message!, /prerequisite 1: s1 cannot reach s2/);
  await s.h.advance(RETRY);
  s.reaches[1].d.reject(new Error("no responders"));
  await s.h.settle();
  assert.match(s.emitted.filter((e) => e.kind === "failover-aborted")[1].message!, /s1 did not answer the reachability check: no responders/);
  assert.is(s.promotes.length, 0);
  s.h.stop();
});

test("a member that died after the loss no longer blocks prerequisite 1 on the next attempt", async () => {
  const s = setup({ prerequisites: 1, waitMs: 0 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  assert.equal(s.reaches[0].input.members, ["s2", "w2"]);
  s.reaches[0].d.resolve(["w2"]);
  await s.h.settle();
  assert.is(s.h.state(), "aborted");
  await s.members(cluster().map((m) => (m.node === "w2" ? { ...m, alive: false } : m)));
  await s.h.advance(RETRY);
  assert.equal(s.reaches[1].input.members, ["s2"], "w2 stopped heartbeating: it is gone, not cut off");
  s.h.stop();
});

test("no live, current replica: no candidate, aborted", async () => {
  const s = setup({ waitMs: 0 });
  await s.active();
  await s.members([member("m1", { role: "master" }), member("s1", { needsResync: true }), member("s2", { alive: false })]);
  await s.expire();
  assert.is(s.h.state(), "aborted");
  assert.match(s.alert("failover-aborted")!.message!, /no candidate/);
  s.h.stop();
});

test("prerequisites 0: no checks at all, the candidate is promoted", async () => {
  const s = setup({ prerequisites: 0, waitMs: 0 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  assert.is(s.reaches.length, 0);
  assert.is(s.promotes.length, 1);
  s.h.stop();
});

test("a promotion that fails aborts the failover and is retried", async () => {
  const s = setup({ prerequisites: 0, waitMs: 0 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  s.promotes[0].d.reject(new Error("s1 did not take the master lease in time"));
  await s.h.settle();
  assert.is(s.h.state(), "aborted");
  assert.match(s.alert("failover-aborted")!.message!, /promotion of s1 failed: s1 did not take the master lease in time/);
  await s.h.advance(RETRY);
  assert.is(s.promotes.length, 2);
  s.h.stop();
});

test("the old master renewing during the wait cancels; another holder during the wait means no failover is needed", async () => {
  const s = setup();
  await s.active();
  await s.members(cluster());
  await s.expire();
  await s.live("m1");
  assert.is(s.h.state(), "monitoring");
  assert.match(s.alert("failover-cancelled")!.message!, /m1 renewed its lease/);
  await s.expire();
  await s.live("s2");
  assert.is(s.h.state(), "monitoring");
  assert.match(s.emitted.filter((e) => e.kind === "failover-cancelled")[1].message!, /not needed: s2 holds the master lease/);
  assert.is(s.reaches.length + s.promotes.length, 0);
  s.h.stop();
});

test("while promoting, the new holder's lease is not a cancellation", async () => {
  const s = setup({ prerequisites: 0, waitMs: 0 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  await s.live("s1");
  assert.ok(s.h.state().includes("promoting"), s.h.state());
  s.promotes[0].d.resolve({ epoch: 2, at: 1 });
  await s.h.settle();
  assert.ok(s.alert("promoted"));
  s.h.stop();
});

test("aborted: the master coming back ends the failover", async () => {
  const s = setup({ waitMs: 0 });
  await s.active();
  await s.members([member("m1", { role: "master" })]);
  await s.expire();
  assert.is(s.h.state(), "aborted");
  await s.live("m1");
  assert.is(s.h.state(), "monitoring");
  s.h.stop();
});

test("maxAutomatic reached: limited with an alert, no failover, until the count is reset", async () => {
  const s = setup({ waitMs: 0, prerequisites: 0, maxAutomatic: 1 });
  await s.active();
  await s.members(cluster());
  await s.send({ type: "FAILOVER_STATE", state: { history: [1], recent: 1, enabled: true } });
  await s.expire();
  assert.is(s.h.state(), "limited");
  assert.match(s.alert("failover-limit")!.message!, /automatic failover is disabled .* Run: ferry failover reset/);
  assert.is(s.promotes.length, 0);
  await s.send({ type: "FAILOVER_STATE", state: { history: [1], recent: 1, enabled: true } });
  assert.is(s.h.state(), "limited", "an unchanged count keeps it limited");
  await s.send({ type: "FAILOVER_STATE", state: { history: [], recent: 0, enabled: true } });
  assert.is(s.promotes.length, 1, "reset: the failover goes ahead");
  s.h.stop();
});

test("a count within the limit after a failover, and disabled automatic failover", async () => {
  const s = setup({ waitMs: 0, prerequisites: 0, maxAutomatic: 1 });
  await s.active();
  await s.members(cluster());
  await s.expire();
  s.promotes[0].d.resolve({ epoch: 2, at: 10 });
  await s.h.settle();
  assert.is(s.ctx().recent, 1, "the count rises at once, before the stored state comes back");
  await s.send({ type: "LEASE_SEEN", key: "master", holder: { node: "s1", epoch: 2, instance: "x" }, live: false });
  assert.is(s.h.state(), "limited");
  const t = setup({ waitMs: 0 });
  await t.active();
  await t.send({ type: "FAILOVER_STATE", state: { history: [], recent: 0, enabled: false } });
  await t.expire();
  assert.is(t.h.state(), "limited");
  await t.live("m1");
  assert.is(t.h.state(), "monitoring", "a live master ends the limited state");
  s.h.stop();
  t.h.stop();
});

test("a lease that expired while the watchdog stood by is failed over once it becomes active", async () => {
  const s = setup({ waitMs: 0, prerequisites: 0 });
  await s.members(cluster());
  await s.expire();
  assert.is(s.h.state(), "standby");
  await s.active();
  assert.is(s.promotes.length, 1);
  s.h.stop();
});

const mark = (node: string, keys = ["[1]", "[2]", "[3]"]): DivergedMark => ({ node, master: "m1", lsn: 7, at: 1, rows: keys.length, tables: [{ table: "t", rows: keys.length, keys }] });
const report = (diffs: Record<string, string[]>, over: Partial<VerifyReport> = {}): { report: VerifyReport; at: number } => ({
  report: { master: "m1", lsn: 7, tables: ["s1", "s2"].map((node) => ({ table: "t", node, diffs: (diffs[node] ?? []).map((key) => ({ key })) })), errors: [], ...over },
  at: 1000,
});

test("the candidate passes a diverged replica over for a clean one that holds as much; with none, or only one that holds less, a diverged one is chosen", () => {
  const ms = [member("s1", { standby: true }), member("s2"), member("s3", { spooledLsn: 9, appliedLsn: 9 })];
  const one = chooseCandidate(ms, "m1", { s1: mark("s1") });
  assert.is(one.candidate?.node, "s2");
  assert.equal(one.passedOver, ["s1"]);
  const behind = chooseCandidate(ms, "m1", { s1: mark("s1"), s2: mark("s2") });
  assert.is(behind.candidate?.node, "s1", "s3 is clean but would drop LSN 10");
  assert.equal(behind.passedOver, [], "nobody was passed over: the diverged one is chosen");
  assert.is(behind.cleanBehind?.node, "s3");
  const all = chooseCandidate(ms, "m1", { s1: mark("s1"), s2: mark("s2"), s3: mark("s3") });
  assert.is(all.candidate?.node, "s1", "the usual order among diverged ones");
  assert.is(all.cleanBehind, null);
  const below = chooseCandidate(ms, "m1", { s3: mark("s3") });
  assert.is(below.candidate?.node, "s1");
  assert.equal(below.passedOver, [], "a diverged replica that would not have been chosen is not mentioned");
});

test("continuous verification: a compare verifyMs after the last one ended, never two at once, none while standby or with verifyMs 0", async () => {
  const s = setup({ verifyMs: 1000 });
  await s.h.advance(5000);
  assert.is(s.compares.length, 0, "a standby watchdog does not verify");
  await s.active();
  await s.h.advance(999);
  assert.is(s.compares.length, 0);
  await s.h.advance(1);
  assert.is(s.compares.length, 1);
  await s.h.advance(5000);
  assert.is(s.compares.length, 1, "a slow compare delays the next rather than overlapping it");
  s.compares[0].d.resolve(report({}));
  await s.h.advance(999);
  assert.is(s.compares.length, 1);
  await s.h.advance(1);
  assert.is(s.compares.length, 2);
  s.compares[1].d.resolve(null);
  await s.h.advance(1000);
  assert.is(s.compares.length, 3, "a compare skipped for want of a master is tried again at the next interval");
  s.compares[2].d.reject(new Error("compare request timed out"));
  await s.h.settle();
  assert.match(s.alert("verify-failed")!.message!, /continuous verification failed: compare request timed out; the next compare starts in 1000 ms/);
  s.h.stop();
  const off = setup({ verifyMs: 0 });
  await off.active();
  await off.h.advance(60_000);
  assert.is(off.compares.length, 0);
  off.h.stop();
});

test("a difference raises one alert naming replica, table and keys and marks the replica; the same difference again is quiet; a clean compare clears it", async () => {
  const s = setup({ verifyMs: 1000 });
  await s.active();
  await s.h.advance(1000);
  s.compares[0].d.resolve(report({ s1: ["[1234]", "[2999]", "[5000]"] }));
  await s.h.settle();
  const a = s.alert("replica-diverged")!;
  assert.match(a.message!, /^s1 differs from master m1 at LSN 7: t: 3 row\(s\), key\(s\) \[1234\], \[2999\], \[5000\]\. .*ferry repair --node s1$/);
  const marks = s.emitted.filter((e) => e.type === "marks");
  assert.equal(marks[0].diverged, [{ node: "s1", master: "m1", lsn: 7, at: 1000, rows: 3, tables: [{ table: "t", rows: 3, keys: ["[1234]", "[2999]", "[5000]"] }] }]);
  assert.equal(Object.keys(s.ctx().diverged), ["s1"]);
  await s.h.advance(1000);
  s.compares[1].d.resolve(report({ s1: ["[1234]", "[2999]", "[5000]"] }, { lsn: 9 }));
  await s.h.settle();
  assert.is(s.alerts().filter((k) => k === "replica-diverged").length, 1, "an unchanged difference is not alerted again");
  assert.is(s.emitted.filter((e) => e.type === "marks").length, 1);
  await s.h.advance(1000);
  s.compares[2].d.resolve(report({}, { errors: [{ node: "s1" }] }));
  await s.h.settle();
  assert.equal(Object.keys(s.ctx().diverged), ["s1"], "a replica that could not be compared keeps its mark");
  await s.h.advance(1000);
  s.compares[3].d.resolve(report({}, { lsn: 12 }));
  await s.h.settle();
  assert.match(s.alert("replica-clean")!.message!, /s1 matches master m1 again at LSN 12/);
  assert.equal(s.emitted.filter((e) => e.type === "marks")[1].clean, ["s1"]);
  assert.equal(s.ctx().diverged, {});
  s.h.stop();
});

test("a failover stops a compare under way, and none starts until the watchdog monitors again", async () => {
  const s = setup({ verifyMs: 1000, waitMs: 0, prerequisites: 0 });
  await s.active();
  await s.members(cluster());
  await s.h.advance(1000);
  assert.is(s.compares.length, 1);
  await s.expire();
  assert.ok(s.compares[0].signal.aborted, "the compare under way is aborted");
  await s.h.advance(5000);
  assert.is(s.compares.length, 1, "no compare while the failover is in progress");
  s.promotes[0].d.resolve({ epoch: 2, at: 1 });
  await s.h.settle();
  await s.h.advance(1000);
  assert.is(s.compares.length, 2, "back to monitoring: verification goes on");
  s.h.stop();
});

test("a failover passes a replica marked diverged over for a clean one with an alert; when every one has diverged it promotes one and says so", async () => {
  const s = setup({ waitMs: 0, prerequisites: 0 });
  await s.active();
  await s.members(cluster());
  await s.send({ type: "DIVERGED", marks: [mark("s1", ["[1234]"])] });
  await s.expire();
  assert.equal(s.promotes[0].input, { candidate: "s2", oldMaster: "m1" });
  assert.match(s.alert("diverged-passed-over")!.message!, /failover candidate s2 chosen over diverged s1 \(t: 1 row\(s\), key\(s\) \[1234\], found at LSN 7\)/);
  s.h.stop();

  const t = setup({ waitMs: 0, prerequisites: 0 });
  await t.active();
  await t.members(cluster());
  await t.send({ type: "DIVERGED", marks: [mark("s1"), mark("s2")] });
  await t.expire();
  assert.equal(t.promotes[0].input, { candidate: "s1", oldMaster: "m1" });
  assert.match(t.alert("diverged-promoted")!.message!, /s1 has diverged from the master .* chosen anyway: no clean replica is eligible/);
  t.h.stop();
});

test("a mark on the node that is now the master is cleared: replicas are compared with it", async () => {
  const s = setup({ verifyMs: 1000 });
  await s.active();
  await s.send({ type: "DIVERGED", marks: [mark("s2")] });
  await s.h.advance(1000);
  s.compares[0].d.resolve(report({}, { master: "s2", tables: [{ table: "t", node: "s1", diffs: [] }] }));
  await s.h.settle();
  assert.match(s.alert("replica-clean")!.message!, /s2 is the master now/);
  assert.equal(s.ctx().diverged, {});
  s.h.stop();
});

test.run();
