/**
 * The replica machine on a simulated clock: every I/O actor is a stub whose completion the test
 * controls (each call is recorded with its input and a deferred result).
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromPromise } from "xstate";
import {
  replicaMachine,
  type ApplyResult,
  type FetchResult,
  type MasterRef,
  type ReplicaInput,
} from "../../src/machines/replica.js";
import { ClusterError, ReplicationError, RepositoryError, TimeoutError } from "../../src/errors.js";
import { deferred, harness } from "../helpers/harness.js";

const POLL = 1000;
const RETRY = 300;
const M1: MasterRef = { node: "m1", epoch: 2 };

type Call<I, O> = { input: I; resolve: (v: O) => void; reject: (e: unknown) => void };

function setup(input: Partial<ReplicaInput> = {}) {
  const fetches: Call<{ master: MasterRef }, FetchResult>[] = [];
  const accepts: Call<{ master: MasterRef; lsn: number }, FetchResult>[] = [];
  const aborted: string[] = [];
  const applies: Call<void, ApplyResult>[] = [];
  const restores: Call<{ master: MasterRef }, { lsn: number }>[] = [];
  const marks: ({ code: string; message: string } | null)[] = [];
  const record = <I, O>(list: Call<I, O>[], input: I) => {
    const d = deferred<O>();
    list.push({ input, resolve: d.resolve, reject: d.reject });
    return d.promise;
  };
  const machine = replicaMachine.provide({
    actors: {
      fetch: fromPromise<FetchResult, { master: MasterRef }>(({ input, signal }) => {
        signal.addEventListener("abort", () => aborted.push(input.master.node));
        return record(fetches, input);
      }),
      accept: fromPromise<FetchResult, { master: MasterRef; lsn: number }>(({ input }) => record(accepts, input)),
      apply: fromPromise<ApplyResult, void>(() => record(applies, undefined)),
      restore: fromPromise<{ lsn: number }, { master: MasterRef }>(({ input }) => record(restores, input)),
      markResync: fromPromise<void, { code: string; message: string } | null>(async ({ input }) => {
        marks.push(input);
      }),
    },
  });
  const h = harness(machine, { fresh: false, needsResync: false, pollMs: POLL, retryMs: RETRY, ...input });
  const snap = () => h.child().getSnapshot();
  const ctx = () => snap().context as { master: MasterRef | null; head: number; received: number; error: { code: string; message: string } | null; fresh: boolean; needsResync: boolean };
  const send = async (e: Record<string, unknown> & { type: string }) => {
    h.child().send(e);
    await h.settle();
  };
  const is = (value: unknown) => assert.ok(snap().matches(value), `expected ${JSON.stringify(value)}, in ${h.state()}`);
  const last = <T>(list: T[]) => list[list.length - 1];
  return { h, fetches, accepts, aborted, applies, restores, marks, snap, ctx, send, is, last };
}

/** A streaming replica that knows M1, whose initial apply found nothing, waiting on its first fetch. */
async function streamingWithMaster() {
  const s = setup();
  await s.h.settle();
  s.last(s.applies).resolve({ applied: 0, more: false });
  await s.send({ type: "MASTER", master: M1 });
  s.is({ streaming: { fetch: "pulling", apply: "idle" } });
  return s;
}

// --- boot -------------------------------------------------------------------------------------

test("boot: a replica marked for resync starts in needsResync and records why", async () => {
  const s = setup({ needsResync: true });
  await s.h.settle();
  s.is("needsResync");
  assert.equal(s.marks, [null]);
  assert.is(s.fetches.length, 0);
  s.h.stop();
});

test("boot: needsResync wins over fresh", async () => {
  const s = setup({ needsResync: true, fresh: true });
  await s.h.settle();
  s.is("needsResync");
  assert.is(s.restores.length, 0);
  s.h.stop();
});

test("boot: a fresh replica goes to resyncing and waits for a master, saying there is none", async () => {
  const s = setup({ fresh: true });
  await s.h.settle();
  s.is({ resyncing: "waitingForMaster" });
  assert.is(s.ctx().error?.code, "NO_ACTIVE_MASTER");
  await s.h.advance(10 * RETRY);
  s.is({ resyncing: "waitingForMaster" });
  assert.is(s.restores.length, 0);
  s.h.stop();
});

test("boot: a replica with state streams, applying what is spooled at once", async () => {
  const s = setup();
  await s.h.settle();
  s.is({ streaming: { fetch: "locating", apply: "applying" } });
  assert.is(s.applies.length, 1);
  s.h.stop();
});

// --- locating ---------------------------------------------------------------------------------

test("locating: no master is reported in context and retried; MASTER starts pulling from that master", async () => {
  const s = setup();
  await s.h.settle();
  assert.equal(s.ctx().error, { code: "NO_ACTIVE_MASTER", message: "no active master" });
  await s.h.advance(5 * RETRY);
  s.is({ streaming: { fetch: "locating" } });
  assert.is(s.fetches.length, 0);
  assert.is(s.ctx().error?.code, "NO_ACTIVE_MASTER");
  await s.send({ type: "MASTER", master: M1 });
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 1);
  assert.equal(s.fetches[0].input, { master: M1 });
  assert.is(s.ctx().error, null, "a known master clears NO_ACTIVE_MASTER");
  s.last(s.fetches).reject(new TimeoutError("slow"));
  await s.h.settle();
  assert.is(s.ctx().error?.code, "TIMEOUT");
  await s.h.advance(RETRY);
  s.last(s.fetches).resolve({ records: 0, head: 0, received: 0, more: false });
  await s.h.settle();
  assert.is(s.ctx().error, null, "a successful fetch clears the error");
  s.h.stop();
});

test("locating: MASTER null keeps looking", async () => {
  const s = setup();
  await s.h.settle();
  await s.send({ type: "MASTER", master: null });
  await s.h.advance(RETRY);
  s.is({ streaming: { fetch: "locating" } });
  assert.is(s.fetches.length, 0);
  s.h.stop();
});

// --- pulling ----------------------------------------------------------------------------------

test("pulling: records are spooled, SPOOLED wakes the applier, and it pulls again at once", async () => {
  const s = await streamingWithMaster();
  assert.is(s.applies.length, 1);
  s.fetches[0].resolve({ records: 3, head: 7, received: 3, more: true });
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling", apply: "applying" } });
  assert.is(s.fetches.length, 2, "pulled again without waiting");
  assert.is(s.applies.length, 2, "SPOOLED started an apply");
  assert.is(s.ctx().head, 7);
  s.h.stop();
});

test("pulling: no records waits for a notification, with the master's head recorded", async () => {
  const s = await streamingWithMaster();
  s.fetches[0].resolve({ records: 0, head: 5, received: 5, more: false });
  await s.h.settle();
  s.is({ streaming: { fetch: "waiting", apply: "idle" } });
  assert.is(s.ctx().head, 5);
  assert.is(s.applies.length, 1, "nothing new to apply");
  s.h.stop();
});

test("pulling: a transient error backs off for retryMs, then locates and pulls again", async () => {
  const s = await streamingWithMaster();
  s.fetches[0].reject(new TimeoutError("master m1 did not answer within 5000 ms"));
  await s.h.settle();
  s.is({ streaming: { fetch: "backoff" } });
  assert.equal(s.ctx().error, { code: "TIMEOUT", message: "master m1 did not answer within 5000 ms" });
  await s.h.advance(RETRY - 1);
  assert.is(s.fetches.length, 1);
  await s.h.advance(1);
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 2);
  s.h.stop();
});

test("pulling: a master that stops answering and is gone leaves the replica locating with NO_ACTIVE_MASTER", async () => {
  const s = await streamingWithMaster();
  await s.send({ type: "MASTER", master: null });
  s.fetches[0].reject(new ClusterError("NO_ACTIVE_MASTER", "master m1 does not answer (no active master)"));
  await s.h.settle();
  await s.h.advance(RETRY);
  s.is({ streaming: { fetch: "locating" } });
  assert.is(s.ctx().error?.code, "NO_ACTIVE_MASTER");
  await s.h.advance(3 * RETRY);
  assert.is(s.fetches.length, 1);
  s.h.stop();
});

test("pulling: an error that is not a FerryError is recorded as INTERNAL and retried", async () => {
  const s = await streamingWithMaster();
  s.fetches[0].reject(new Error("boom"));
  await s.h.settle();
  s.is({ streaming: { fetch: "backoff" } });
  assert.equal(s.ctx().error, { code: "INTERNAL", message: "boom" });
  s.h.stop();
});

for (const [code, err] of [
  ["BACKLOG_EXCEEDED", new ReplicationError("BACKLOG_EXCEEDED", "Slave has 300 bytes sqls to be processed since last disconnection")],
  ["SNAPSHOT_REQUIRED", new ReplicationError("SNAPSHOT_REQUIRED", "LSN 3 is no longer held by m1")],
  ["SCHEMA_MISMATCH", new RepositoryError("SCHEMA_MISMATCH", "schema fingerprint mismatch")],
  ["NEEDS_RESYNC", new ReplicationError("NEEDS_RESYNC", "s1 holds LSNs 4..5 from epoch 1 that were never replicated")],
] as const) {
  test(`pulling: ${code} stops streaming in needsResync and records the reason`, async () => {
    const s = await streamingWithMaster();
    s.fetches[0].reject(err);
    await s.h.settle();
    s.is("needsResync");
    assert.equal(s.ctx().error, { code, message: err.message });
    assert.equal(s.marks, [{ code, message: err.message }]);
    await s.h.advance(10 * POLL);
    assert.is(s.fetches.length, 1, "no more pulls");
    s.is("needsResync");
    s.h.stop();
  });
}

test("pulling: no records but the master is already past the asked LSN (spooled while it answered) pulls again at once", async () => {
  const s = await streamingWithMaster();
  // The NOTIFY for LSN 6 overtook the empty answer: it raised the head while pulling ...
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 6 });
  s.fetches[0].resolve({ records: 0, head: 6, received: 5, more: true });
  await s.h.settle();
  // ... so waiting would ignore it (not newer) and sit until pollMs: it must not wait.
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 2);
  s.fetches[1].resolve({ records: 1, head: 6, received: 6, more: true });
  await s.h.settle();
  s.fetches[2].resolve({ records: 0, head: 6, received: 6, more: false });
  await s.h.settle();
  s.is({ streaming: { fetch: "waiting" } });
  s.h.stop();
});

test("pulling: another master abandons the pull still waiting on the old one and pulls from the new one at once", async () => {
  const s = await streamingWithMaster();
  assert.is(s.fetches.length, 1);
  await s.send({ type: "MASTER", master: { node: "s1", epoch: 3 } });
  assert.equal(s.aborted, ["m1"], "the pull from m1 is stopped, not left to time out");
  s.is({ streaming: { fetch: "pulling", apply: "idle" } });
  assert.is(s.fetches.length, 2);
  assert.equal(s.fetches[1].input.master, { node: "s1", epoch: 3 });
  await s.send({ type: "MASTER", master: { node: "s1", epoch: 3 } });
  assert.is(s.fetches.length, 2, "the same master again changes nothing");
  s.h.stop();
});

test("backoff: a new master ends the backoff at once", async () => {
  const s = await streamingWithMaster();
  s.fetches[0].reject(new ClusterError("NO_ACTIVE_MASTER", "master m1 does not answer"));
  await s.h.settle();
  s.is({ streaming: { fetch: "backoff", apply: "idle" } });
  await s.send({ type: "MASTER", master: { node: "s2", epoch: 3 } });
  s.is({ streaming: { fetch: "pulling", apply: "idle" } });
  assert.equal(s.last(s.fetches).input.master.node, "s2");
  s.h.stop();
});

test("backoff: a notification from the master pulled from ends the backoff at once; one from another node does not", async () => {
  const s = await streamingWithMaster();
  const master = s.last(s.fetches).input.master;
  s.fetches[0].reject(new ClusterError("NOT_MASTER", `${master.node} is still promoting`));
  await s.h.settle();
  s.is({ streaming: { fetch: "backoff", apply: "idle" } });
  await s.send({ type: "NOTIFY", node: "elsewhere", epoch: master.epoch, lsn: 9 });
  await s.send({ type: "NOTIFY", node: master.node, epoch: master.epoch - 1, lsn: 9 });
  s.is({ streaming: { fetch: "backoff", apply: "idle" } });
  await s.send({ type: "NOTIFY", node: master.node, epoch: master.epoch, lsn: 10 });
  s.is({ streaming: { fetch: "pulling", apply: "idle" } });
  assert.is(s.fetches.length, 2);
  s.h.stop();
});

// --- waiting ----------------------------------------------------------------------------------

test("waiting: a NOTIFY at or below the known head is ignored, a newer one pulls at once", async () => {
  const s = await streamingWithMaster();
  s.fetches[0].resolve({ records: 0, head: 5, received: 5, more: false });
  await s.h.settle();
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 5 });
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 4 });
  s.is({ streaming: { fetch: "waiting" } });
  assert.is(s.fetches.length, 1);
  assert.is(s.ctx().head, 5);
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 6 });
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 2);
  assert.is(s.ctx().head, 6);
  s.h.stop();
});

test("waiting: a call for acknowledgements from its master pulls at once though nothing is new; another node's call is ignored", async () => {
  const s = await streamingWithMaster();
  s.fetches[0].resolve({ records: 0, head: 5, received: 5, more: false });
  await s.h.settle();
  await s.send({ type: "NOTIFY", node: "m9", epoch: 2, lsn: 5, ack: true });
  s.is({ streaming: { fetch: "waiting" } });
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 5, ack: true });
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 2);
  s.h.stop();
});

test("waiting: without a notification it pulls after pollMs, not before", async () => {
  const s = await streamingWithMaster();
  s.fetches[0].resolve({ records: 0, head: 5, received: 5, more: false });
  await s.h.settle();
  await s.h.advance(POLL - 1);
  s.is({ streaming: { fetch: "waiting" } });
  assert.is(s.fetches.length, 1);
  await s.h.advance(1);
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 2);
  s.h.stop();
});

test("a NOTIFY while pulling raises the known head but does not start a second pull", async () => {
  const s = await streamingWithMaster();
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 9 });
  assert.is(s.ctx().head, 9);
  assert.is(s.fetches.length, 1);
  s.h.stop();
});

test("only the followed master's NOTIFY moves the head; a new master starts it again, so its lower LSN still wakes the replica", async () => {
  const s = setup();
  await s.h.settle();
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 4 });
  assert.is(s.ctx().head, 0, "no master followed yet");
  s.is({ streaming: { fetch: "locating" } });
  s.h.stop();
  const t = await streamingWithMaster();
  await t.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 9 });
  await t.send({ type: "NOTIFY", node: "m9", epoch: 1, lsn: 50 });
  assert.is(t.ctx().head, 9, "another node's head is not this replica's master's");
  await t.send({ type: "MASTER", master: { node: "s2", epoch: 3 } });
  assert.is(t.ctx().head, 0);
  await t.send({ type: "NOTIFY", node: "s2", epoch: 3, lsn: 7 });
  assert.is(t.ctx().head, 7);
  t.h.stop();
});

test("a NOTIFY that overtook the pull's answer (which predates it) pulls again at once; one chased is not chased twice", async () => {
  const s = await streamingWithMaster();
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 6 });
  s.fetches[0].resolve({ records: 0, head: 5, received: 5, more: false });
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 2, "LSN 6 was announced after the answer was made");
  // An announcement the master's answer does not bear out (a stray or forged one) costs one pull, not a loop.
  s.fetches[1].resolve({ records: 0, head: 5, received: 5, more: false });
  await s.h.settle();
  s.is({ streaming: { fetch: "waiting" } });
  assert.is(s.fetches.length, 2);
  s.h.stop();
});

// --- pushed batches ---------------------------------------------------------------------------

/** A replica caught up at LSN 5 from M1, waiting. */
async function caughtUp() {
  const s = await streamingWithMaster();
  s.fetches[0].resolve({ records: 0, head: 5, received: 5, more: false });
  await s.h.settle();
  s.is({ streaming: { fetch: "waiting", apply: "idle" } });
  return s;
}

test("push: the next batch from the master followed is taken without a pull, applied, and the replica waits again", async () => {
  const s = await caughtUp();
  await s.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 6 });
  s.is({ streaming: { fetch: "accepting" } });
  assert.equal(s.accepts.map((a) => a.input), [{ master: M1, lsn: 6 }]);
  s.accepts[0].resolve({ records: 1, head: 6, received: 6, more: false });
  await s.h.settle();
  s.is({ streaming: { fetch: "waiting", apply: "applying" } });
  assert.is(s.fetches.length, 1, "no pull");
  assert.is(s.ctx().received, 6);
  // Its announcement, which follows the push, is not newer.
  await s.send({ type: "NOTIFY", node: "m1", epoch: 2, lsn: 6 });
  s.is({ streaming: { fetch: "waiting" } });
  assert.is(s.fetches.length, 1);
  s.h.stop();
});

test("push: a batch past the next one (one was missed) is pulled; one from another node or epoch is ignored", async () => {
  const s = await caughtUp();
  await s.send({ type: "PUSH", node: "m9", epoch: 2, lsn: 6 });
  await s.send({ type: "PUSH", node: "m1", epoch: 1, lsn: 6 });
  s.is({ streaming: { fetch: "waiting" } });
  assert.is(s.accepts.length + s.fetches.length, 1);
  await s.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 8 });
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.accepts.length, 0);
  assert.is(s.fetches.length, 2);
  s.h.stop();
});

test("push: a push the I/O could not take (or pulls due) pulls at once; a newer push during a take pulls after it", async () => {
  const s = await caughtUp();
  await s.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 6 });
  s.accepts[0].resolve({ records: 0, head: 6, received: 5, more: true });
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling" } });
  s.fetches[1].resolve({ records: 1, head: 6, received: 6, more: false });
  await s.h.settle();
  await s.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 7 });
  await s.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 8 });
  s.is({ streaming: { fetch: "accepting" } });
  s.accepts[1].resolve({ records: 1, head: 7, received: 7, more: false });
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.fetches.length, 3, "LSN 8 came while 7 was taken: pulled");
  s.h.stop();
});

test("push: a take that fails backs off like a pull; one that needs a resync stops streaming", async () => {
  const s = await caughtUp();
  await s.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 6 });
  s.accepts[0].reject(new ClusterError("STALE_EPOCH", "old"));
  await s.h.settle();
  s.is({ streaming: { fetch: "backoff" } });
  s.h.stop();
  const t = await caughtUp();
  await t.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 6 });
  t.accepts[0].reject(new ReplicationError("NEEDS_RESYNC", "gone"));
  await t.h.settle();
  t.is("needsResync");
  t.h.stop();
});

test("push: another master abandons a take under way", async () => {
  const s = await caughtUp();
  await s.send({ type: "PUSH", node: "m1", epoch: 2, lsn: 6 });
  await s.send({ type: "MASTER", master: { node: "s2", epoch: 3 } });
  s.is({ streaming: { fetch: "pulling" } });
  assert.equal(s.last(s.fetches).input, { master: { node: "s2", epoch: 3 } });
  s.h.stop();
});

// --- apply ------------------------------------------------------------------------------------

test("apply: more to apply applies again, then idles until SPOOLED", async () => {
  const s = setup();
  await s.h.settle();
  s.applies[0].resolve({ applied: 3, more: true });
  await s.h.settle();
  s.is({ streaming: { apply: "applying" } });
  assert.is(s.applies.length, 2);
  s.applies[1].resolve({ applied: 5, more: false });
  await s.h.settle();
  s.is({ streaming: { apply: "idle" } });
  await s.h.advance(10 * POLL);
  assert.is(s.applies.length, 2, "idle does not poll");
  await s.send({ type: "SPOOLED" });
  s.is({ streaming: { apply: "applying" } });
  assert.is(s.applies.length, 3);
  s.h.stop();
});

test("apply: a transient error retries after retryMs, and the fetch side keeps going", async () => {
  const s = await streamingWithMaster();
  await s.send({ type: "SPOOLED" });
  s.applies[1].reject(new RepositoryError("REPO_UNAVAILABLE", "database is locked"));
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling", apply: "retry" } });
  assert.equal(s.ctx().error, { code: "REPO_UNAVAILABLE", message: "database is locked" });
  await s.h.advance(RETRY - 1);
  assert.is(s.applies.length, 2);
  await s.h.advance(1);
  s.is({ streaming: { apply: "applying" } });
  assert.is(s.applies.length, 3);
  s.h.stop();
});

test("apply: SPOOLED raised by a fetch ends a retry wait early", async () => {
  const s = await streamingWithMaster();
  await s.send({ type: "SPOOLED" });
  s.applies[1].reject(new RepositoryError("REPO_UNAVAILABLE", "database is locked"));
  await s.h.settle();
  s.is({ streaming: { apply: "retry" } });
  s.fetches[0].resolve({ records: 1, head: 1, received: 1, more: true });
  await s.h.settle();
  s.is({ streaming: { apply: "applying" } });
  assert.is(s.applies.length, 3);
  s.h.stop();
});

test("apply: a resync error (schema mismatch after DDL) stops streaming in needsResync", async () => {
  const s = await streamingWithMaster();
  await s.send({ type: "SPOOLED" });
  s.applies[1].reject(new RepositoryError("SCHEMA_MISMATCH", "schema fingerprint mismatch after LSN 4"));
  await s.h.settle();
  s.is("needsResync");
  assert.equal(s.marks, [{ code: "SCHEMA_MISMATCH", message: "schema fingerprint mismatch after LSN 4" }]);
  s.h.stop();
});

// --- resync -----------------------------------------------------------------------------------

test("RESYNC from needsResync restores from the master and then streams as a replica with state", async () => {
  const s = setup({ needsResync: true });
  await s.h.settle();
  await s.send({ type: "MASTER", master: M1 });
  s.is("needsResync");
  await s.send({ type: "RESYNC" });
  s.is({ resyncing: "restoring" });
  assert.equal(s.restores[0].input, { master: M1 });
  s.restores[0].resolve({ lsn: 42 });
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling", apply: "applying" } });
  assert.is(s.ctx().fresh, false);
  assert.is(s.ctx().needsResync, false);
  assert.is(s.ctx().error, null);
  s.h.stop();
});

test("RESYNC repeated while a restore runs joins it: one restore, and its outcome is the replica's", async () => {
  const s = setup({ needsResync: true });
  await s.h.settle();
  await s.send({ type: "MASTER", master: M1 });
  await s.send({ type: "RESYNC" });
  s.is({ resyncing: "restoring" });
  for (let i = 0; i < 9; i++) await s.send({ type: "RESYNC" });
  s.is({ resyncing: "restoring" });
  assert.is(s.restores.length, 1, "no second restore started");
  s.restores[0].resolve({ lsn: 42 });
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling", apply: "applying" } });
  assert.is(s.ctx().needsResync, false);
  s.h.stop();
});

for (const from of ["waiting", "backoff", "pulling"] as const) {
  test(`RESYNC while streaming (${from}) goes to resyncing`, async () => {
    const s = await streamingWithMaster();
    if (from === "waiting") s.fetches[0].resolve({ records: 0, head: 1, received: 1, more: false });
    if (from === "backoff") s.fetches[0].reject(new TimeoutError("slow"));
    await s.h.settle();
    s.is({ streaming: { fetch: from } });
    await s.send({ type: "RESYNC" });
    s.is({ resyncing: "restoring" });
    assert.is(s.restores.length, 1);
    s.h.stop();
  });
}

test("RESYNC while locating waits for a master, then restores from it", async () => {
  const s = setup();
  await s.h.settle();
  await s.send({ type: "RESYNC" });
  s.is({ resyncing: "waitingForMaster" });
  assert.is(s.ctx().error?.code, "NO_ACTIVE_MASTER");
  await s.h.advance(5 * RETRY);
  assert.is(s.restores.length, 0);
  await s.send({ type: "MASTER", master: M1 });
  s.is({ resyncing: "restoring" });
  assert.is(s.ctx().error, null);
  s.h.stop();
});

test("a failed restore of a replica with state leaves it in needsResync with the reason", async () => {
  const s = setup({ needsResync: true });
  await s.h.settle();
  await s.send({ type: "MASTER", master: M1 });
  await s.send({ type: "RESYNC" });
  s.restores[0].reject(new TimeoutError("master m1 did not answer within 5000 ms"));
  await s.h.settle();
  s.is("needsResync");
  assert.equal(s.ctx().error, { code: "TIMEOUT", message: "master m1 did not answer within 5000 ms" });
  assert.equal(s.last(s.marks), { code: "TIMEOUT", message: "master m1 did not answer within 5000 ms" });
  await s.h.advance(10 * RETRY);
  assert.is(s.restores.length, 1, "not retried without a new RESYNC");
  s.h.stop();
});

test("a failed restore of a fresh replica backs off and tries again by itself", async () => {
  const s = setup({ fresh: true });
  await s.h.settle();
  await s.send({ type: "MASTER", master: M1 });
  s.is({ resyncing: "restoring" });
  s.restores[0].reject(new ClusterError("NO_ACTIVE_MASTER", "master m1 does not answer"));
  await s.h.settle();
  s.is({ resyncing: "backoff" });
  assert.is(s.ctx().error?.code, "NO_ACTIVE_MASTER");
  assert.is(s.marks.length, 0, "a fresh replica is not marked for resync");
  await s.h.advance(RETRY - 1);
  assert.is(s.restores.length, 1);
  await s.h.advance(1);
  s.is({ resyncing: "restoring" });
  assert.is(s.restores.length, 2);
  s.restores[1].resolve({ lsn: 3 });
  await s.h.settle();
  s.is({ streaming: { fetch: "pulling" } });
  assert.is(s.ctx().fresh, false);
  s.h.stop();
});

test("a fresh replica whose master disappears during backoff waits for the next one", async () => {
  const s = setup({ fresh: true });
  await s.h.settle();
  await s.send({ type: "MASTER", master: M1 });
  s.restores[0].reject(new TimeoutError("slow"));
  await s.h.settle();
  await s.send({ type: "MASTER", master: null });
  await s.h.advance(RETRY);
  s.is({ resyncing: "waitingForMaster" });
  assert.is(s.ctx().error?.code, "NO_ACTIVE_MASTER");
  const m2 = { node: "m2", epoch: 3 };
  await s.send({ type: "MASTER", master: m2 });
  assert.equal(s.last(s.restores).input, { master: m2 });
  s.h.stop();
});

test.run();
