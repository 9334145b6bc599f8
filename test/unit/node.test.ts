/**
 * The node machine with stub children: lease, replica, sequencer, masterServices and heartbeat
 * are callback actors that record their inputs, the events they receive and when they stop;
 * promote and demote are promises the test completes.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromCallback, fromPromise, type AnyEventObject } from "xstate";
import { nodeMachine, type NodeInput } from "../../src/machines/node.js";
import type { LeaseValue } from "../../src/machines/lease.js";
import { ClusterError } from "../../src/errors.js";
import { deferred, harness } from "../helpers/harness.js";

type Kid = "lease" | "replica" | "sequencer" | "masterServices" | "heartbeat";

interface Rec {
  inputs: unknown[];
  events: AnyEventObject[];
  started: number;
  stopped: number;
  /** The running instance's sendBack (to send to the node as that child). */
  send: (e: AnyEventObject) => void;
}

const INPUT: NodeInput = {
  node: "n1",
  lease: { key: "master", node: "n1", instance: "i1", ttlMs: 1500, safetyMarginMs: 500, wants: false },
  replica: { fresh: false, needsResync: false, pollMs: 500, retryMs: 1000 },
  sequencer: { intervalMs: 5, retryMs: 1000 },
};

const m2: LeaseValue = { node: "m2", epoch: 4, instance: "x" };
const self: LeaseValue = { node: "n1", epoch: 5, instance: "i1" };

function setup(input: NodeInput = INPUT) {
  const kids = {} as Record<Kid, Rec>;
  const stub = (name: Kid) => {
    const rec: Rec = { inputs: [], events: [], started: 0, stopped: 0, send: () => {} };
    kids[name] = rec;
    return fromCallback<AnyEventObject, unknown>(({ input, receive, sendBack }) => {
      rec.inputs.push(input);
      rec.started++;
      rec.send = sendBack;
      receive((e) => rec.events.push(e));
      return () => {
        rec.stopped++;
      };
    });
  };
  const promotes: { input: { epoch: number }; d: ReturnType<typeof deferred<void>> }[] = [];
  const demotes: { input: { holder: LeaseValue | null }; d: ReturnType<typeof deferred<{ needsResync: boolean; fresh: boolean }>> }[] = [];
  const machine = nodeMachine.provide({
    actors: {
      lease: stub("lease"),
      replica: stub("replica"),
      sequencer: stub("sequencer"),
      masterServices: stub("masterServices"),
      heartbeat: stub("heartbeat"),
      promote: fromPromise<void, { epoch: number }>(({ input }) => {
        const d = deferred<void>();
        promotes.push({ input, d });
        return d.promise;
      }),
      demote: fromPromise<{ needsResync: boolean; fresh: boolean }, { holder: LeaseValue | null }>(({ input }) => {
        const d = deferred<{ needsResync: boolean; fresh: boolean }>();
        demotes.push({ input, d });
        return d.promise;
      }),
    },
  });
  const h = harness(machine, input);
  const snap = () => h.child().getSnapshot();
  const is = (v: string) => assert.is(JSON.stringify(snap().value), JSON.stringify(v), `expected ${v}, in ${h.state()}`);
  const fromLease = async (e: AnyEventObject) => {
    kids.lease.send(e);
    await h.settle();
  };
  const send = async (e: AnyEventObject) => {
    h.child().send(e);
    await h.settle();
  };
  const types = (k: Kid) => kids[k].events.map((e) => e.type);
  const last = <T>(l: T[]) => l[l.length - 1];
  return { h, kids, promotes, demotes, snap, is, fromLease, send, types, last };
}

/** A node in standby after its start-up demote. */
async function standby(input: NodeInput = INPUT) {
  const s = setup(input);
  await s.h.settle();
  s.demotes[0].d.resolve({ needsResync: false, fresh: input.replica.fresh });
  await s.h.settle();
  s.is("standby");
  return s;
}

/** A node that took the lease with epoch 5 and finished promoting. */
async function active() {
  const s = await standby();
  await s.fromLease({ type: "LEASE_HELD", key: "master", epoch: 5, revision: 10 });
  s.last(s.promotes).d.resolve();
  await s.h.settle();
  s.is("active");
  return s;
}

test("starting: the lease and heartbeat run from the start; the start-up demote has no holder; then standby", async () => {
  const s = setup();
  await s.h.settle();
  s.is("starting");
  assert.is(s.kids.lease.started, 1);
  assert.equal(s.kids.lease.inputs[0], INPUT.lease);
  assert.is(s.kids.heartbeat.started, 1);
  assert.equal(s.demotes[0].input, { holder: null });
  assert.is(s.kids.replica.started, 0, "no replica before the demote is done");
  s.demotes[0].d.resolve({ needsResync: false, fresh: false });
  await s.h.settle();
  s.is("standby");
  assert.is(s.kids.replica.started, 1);
  assert.equal(s.kids.replica.inputs[0], INPUT.replica);
  assert.equal(s.kids.replica.events, [{ type: "MASTER", master: null }]);
  s.h.stop();
});

test("starting: a failed start-up demote still goes to standby", async () => {
  const s = setup();
  await s.h.settle();
  s.demotes[0].d.reject(new Error("disk"));
  await s.h.settle();
  s.is("standby");
  assert.is(s.kids.replica.started, 1);
  s.h.stop();
});

test("the lease taken while the start-up demote runs promotes as soon as the demote is done", async () => {
  const s = setup();
  await s.h.settle();
  await s.fromLease({ type: "LEASE_HELD", epoch: 3 });
  s.is("starting");
  s.demotes[0].d.resolve({ needsResync: false, fresh: true });
  await s.h.settle();
  s.is("promoting");
  assert.equal(s.promotes[0].input, { epoch: 3 });
  s.h.stop();
});

test("the lease taken and lost again while starting: standby, no promote", async () => {
  const s = setup();
  await s.h.settle();
  await s.fromLease({ type: "LEASE_HELD", epoch: 3 });
  await s.fromLease({ type: "LEASE_LOST", holder: m2 });
  s.demotes[0].d.resolve({ needsResync: false, fresh: true });
  await s.h.settle();
  s.is("standby");
  assert.is(s.promotes.length, 0);
  s.h.stop();
});

test("a live master seen while starting is given to the replica as soon as it starts", async () => {
  const s = setup();
  await s.h.settle();
  await s.fromLease({ type: "LEASE_SEEN", key: "master", holder: m2, live: true });
  s.demotes[0].d.resolve({ needsResync: false, fresh: false });
  await s.h.settle();
  assert.equal(s.kids.replica.events, [{ type: "MASTER", master: { node: "m2", epoch: 4 } }]);
  s.h.stop();
});

test("standby: LEASE_SEEN reaches the replica as MASTER; an expired lease or our own is no master", async () => {
  const s = await standby();
  await s.fromLease({ type: "LEASE_SEEN", key: "master", holder: m2, live: true });
  assert.equal(s.last(s.kids.replica.events), { type: "MASTER", master: { node: "m2", epoch: 4 } });
  assert.equal(s.snap().context.holder, m2);
  await s.fromLease({ type: "LEASE_SEEN", key: "master", holder: m2, live: false });
  assert.equal(s.last(s.kids.replica.events), { type: "MASTER", master: null });
  await s.fromLease({ type: "LEASE_SEEN", key: "master", holder: self, live: true });
  assert.equal(s.last(s.kids.replica.events), { type: "MASTER", master: null });
  await s.fromLease({ type: "LEASE_SEEN", key: "master", holder: null, live: false });
  assert.equal(s.last(s.kids.replica.events), { type: "MASTER", master: null });
  s.h.stop();
});

test("standby: NOTIFY and RESYNC reach the replica", async () => {
  const s = await standby();
  await s.send({ type: "NOTIFY", node: "m2", epoch: 4, lsn: 17 });
  await s.send({ type: "RESYNC" });
  assert.equal(s.kids.replica.events.slice(1), [{ type: "NOTIFY", node: "m2", epoch: 4, lsn: 17 }, { type: "RESYNC" }]);
  s.h.stop();
});

test("PROMOTE asks the lease to ACQUIRE", async () => {
  const s = await standby();
  await s.send({ type: "PROMOTE" });
  assert.equal(s.kids.lease.events, [{ type: "ACQUIRE" }]);
  s.is("standby");
  s.h.stop();
});

test("LEASE_HELD promotes with the lease's epoch; then active runs the sequencer and master services, not the replica", async () => {
  const s = await standby();
  await s.fromLease({ type: "LEASE_HELD", key: "master", epoch: 5, revision: 10 });
  s.is("promoting");
  assert.equal(s.promotes[0].input, { epoch: 5 });
  assert.is(s.kids.replica.stopped, 1, "the replica stops when promoting starts");
  assert.is(s.kids.sequencer.started, 0, "no sequencer before the promote is done");
  s.promotes[0].d.resolve();
  await s.h.settle();
  s.is("active");
  assert.is(s.snap().context.epoch, 5);
  assert.is(s.kids.sequencer.started, 1);
  assert.equal(s.kids.sequencer.inputs[0], INPUT.sequencer);
  assert.is(s.kids.masterServices.started, 1);
  s.h.stop();
});

test("a failed promote goes back to standby and RELEASEs the lease", async () => {
  const s = await standby();
  await s.fromLease({ type: "LEASE_HELD", key: "master", epoch: 5, revision: 10 });
  s.promotes[0].d.reject(new ClusterError("NEEDS_RESYNC", "n1 cannot be promoted: resync needed"));
  await s.h.settle();
  s.is("standby");
  assert.equal(s.kids.lease.events, [{ type: "RELEASE" }]);
  assert.is(s.kids.replica.started, 2, "a new replica runs");
  assert.is(s.kids.sequencer.started, 0);
  s.h.stop();
});

test("active: KICK reaches the sequencer", async () => {
  const s = await active();
  await s.send({ type: "KICK" });
  assert.equal(s.kids.sequencer.events, [{ type: "KICK" }]);
  s.h.stop();
});

test("active -> fenced on LEASE_FENCED (sequencer and services stop) -> active again on LEASE_HELD", async () => {
  const s = await active();
  await s.fromLease({ type: "LEASE_FENCED", key: "master", epoch: 5 });
  s.is("fenced");
  assert.is(s.kids.sequencer.stopped, 1);
  assert.is(s.kids.masterServices.stopped, 1);
  assert.is(s.kids.replica.started, 1, "a fenced node is no replica");
  await s.fromLease({ type: "LEASE_HELD", key: "master", epoch: 5, revision: 12 });
  s.is("active");
  assert.is(s.kids.sequencer.started, 2);
  assert.is(s.kids.masterServices.started, 2);
  s.h.stop();
});

test("LEASE_FENCED while promoting is fenced", async () => {
  const s = await standby();
  await s.fromLease({ type: "LEASE_HELD", key: "master", epoch: 5, revision: 10 });
  await s.fromLease({ type: "LEASE_FENCED", key: "master", epoch: 5 });
  s.is("fenced");
  s.h.stop();
});

test("LEASE_LOST demotes with the new holder; demote's needsResync goes into the next replica's input", async () => {
  const s = await active();
  await s.fromLease({ type: "LEASE_LOST", key: "master", holder: m2 });
  s.is("demoting");
  assert.is(s.kids.sequencer.stopped, 1);
  assert.equal(s.last(s.demotes).input, { holder: m2 });
  s.last(s.demotes).d.resolve({ needsResync: true, fresh: false });
  await s.h.settle();
  s.is("standby");
  assert.is(s.kids.replica.started, 2);
  assert.equal(s.last(s.kids.replica.inputs), { ...INPUT.replica, needsResync: true });
  s.h.stop();
});

test("the replica's input is what the node knows after the demote: a node that started fresh and was master is not fresh", async () => {
  const s = await standby({ ...INPUT, replica: { ...INPUT.replica, fresh: true } });
  await s.fromLease({ type: "LEASE_HELD", key: "master", epoch: 2, revision: 1 });
  s.last(s.promotes).d.resolve();
  await s.h.settle();
  await s.fromLease({ type: "LEASE_LOST", key: "master", holder: m2 });
  s.last(s.demotes).d.resolve({ needsResync: false, fresh: false });
  await s.h.settle();
  assert.is((s.last(s.kids.replica.inputs) as { fresh: boolean }).fresh, false);
  s.h.stop();
});

test("a demote that needs no resync keeps the replica's input as it was", async () => {
  const s = await active();
  await s.fromLease({ type: "LEASE_LOST", key: "master", holder: m2 });
  s.last(s.demotes).d.resolve({ needsResync: false, fresh: false });
  await s.h.settle();
  assert.equal(s.last(s.kids.replica.inputs), INPUT.replica);
  s.h.stop();
});

test("LEASE_LOST while fenced or promoting demotes too", async () => {
  for (const where of ["fenced", "promoting"]) {
    const s = await standby();
    await s.fromLease({ type: "LEASE_HELD", key: "master", epoch: 5, revision: 10 });
    if (where === "fenced") await s.fromLease({ type: "LEASE_FENCED", key: "master", epoch: 5 });
    s.is(where);
    await s.fromLease({ type: "LEASE_LOST", key: "master", holder: m2 });
    s.is("demoting");
    assert.equal(s.last(s.demotes).input, { holder: m2 });
    s.h.stop();
  }
});

test("a failed demote still goes to standby", async () => {
  const s = await active();
  await s.fromLease({ type: "LEASE_LOST", key: "master", holder: m2 });
  s.last(s.demotes).d.reject(new Error("disk"));
  await s.h.settle();
  s.is("standby");
  s.h.stop();
});

test("REPO_DOWN and REPO_UP from the sequencer set and clear repoDown; leaving active clears it", async () => {
  const s = await active();
  s.kids.sequencer.send({ type: "REPO_DOWN", code: "REPO_UNAVAILABLE", message: "the file is missing" });
  await s.h.settle();
  assert.equal(s.snap().context.repoDown, { code: "REPO_UNAVAILABLE", message: "the file is missing" });
  s.kids.sequencer.send({ type: "REPO_UP" });
  await s.h.settle();
  assert.is(s.snap().context.repoDown, null);
  s.kids.sequencer.send({ type: "REPO_DOWN", code: "REPO_UNAVAILABLE", message: "gone again" });
  await s.h.settle();
  assert.ok(s.snap().context.repoDown);
  await s.fromLease({ type: "LEASE_FENCED", key: "master", epoch: 5 });
  assert.is(s.snap().context.repoDown, null);
  s.h.stop();
});

test("STOP ends the node from any state and stops every child", async () => {
  for (const where of ["starting", "standby", "active"] as const) {
    const s = where === "starting" ? setup() : where === "standby" ? await standby() : await active();
    await s.h.settle();
    await s.send({ type: "STOP" });
    s.is("stopped");
    assert.is((s.snap() as unknown as { status: string }).status, "done");
    assert.is(s.kids.lease.stopped, 1);
    assert.is(s.kids.heartbeat.stopped, 1);
    if (where === "standby") assert.is(s.kids.replica.stopped, 1);
    if (where === "active") assert.is(s.kids.sequencer.stopped, 1);
    s.h.stop();
  }
});

test.run();
