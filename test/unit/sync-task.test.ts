/** The sync-task machine on XState's SimulatedClock: every transition, with scripted I/O. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fromPromise } from "xstate";
import { syncTaskMachine, syncTaskState, type ChooseInput, type CollectorRef, type StepResult, type SyncTaskInput } from "../../src/machines/sync-task.js";
import { harness, type Harness } from "../helpers/harness.js";

const POLL = 100;
const RETRY = 50;
const WAIT = 1000;

type Step = StepResult | { error: string };

/** A subtask whose collectors and packs are scripted: `collectors` is what choose sees, `steps` the step outcomes in order. */
function setup(input: Partial<SyncTaskInput> = {}, script: { collectors?: CollectorRef[]; steps?: Step[] } = {}) {
  const collectors = script.collectors ?? [{ node: "c1", instance: "i1" }];
  const steps = [...(script.steps ?? [])];
  const calls = { choose: [] as (CollectorRef | null)[], why: [] as (string | null)[], step: [] as string[] };
  const machine = syncTaskMachine.provide({
    actors: {
      choose: fromPromise<CollectorRef, ChooseInput>(async ({ input }) => {
        calls.choose.push(input.exclude);
        calls.why.push(input.why);
        const c = collectors.find((x) => !(input.exclude && x.node === input.exclude.node && x.instance === input.exclude.instance));
        if (!c) throw Object.assign(new Error("no active collector"), { code: "NO_COLLECTOR" });
        return c;
      }),
      step: fromPromise<StepResult, { collector: CollectorRef }>(async ({ input }) => {
        calls.step.push(input.collector.node);
        const s = steps.shift() ?? { kind: "idle", rows: 0 };
        if ("error" in s) throw Object.assign(new Error(`failed with ${s.error}`), { code: s.error });
        return s;
      }),
    },
  });
  const h = harness(machine, {
    task: "main.t",
    part: 0,
    resumed: false,
    done: false,
    rows: 0,
    pollMs: POLL,
    retryMs: RETRY,
    reassignWaitMs: WAIT,
    maxErrors: 3,
    ...input,
  });
  const ctx = () => h.child().getSnapshot().context;
  const state = () => syncTaskState(h.child().getSnapshot().value);
  return { h, calls, collectors, steps, ctx, state };
}

const data = (rows: number): Step => ({ kind: "data", rows });
const idle: Step = { kind: "idle", rows: 0 };
const done: Step = { kind: "done", rows: 0 };

/** Settles until the machine is in `want` (the step actors resolve on microtasks). */
async function until(h: Harness, state: () => string, want: string) {
  for (let i = 0; i < 20 && state() !== want; i++) await h.settle();
  return state();
}

test("INIT until the first pack, then RUNNING; packs in a row, then idle polling", async () => {
  const s = setup({}, { steps: [idle, data(10), data(5), idle] });
  // Before the first step resolves the subtask is INIT with its collector chosen.
  assert.is(s.state(), "INIT");
  await s.h.settle();
  assert.is(s.ctx().collector.node, "c1");
  assert.is(s.state(), "RUNNING", "a first reply, even empty, is the first pack");
  assert.is(s.h.state(), "{running:waiting}");
  await s.h.advance(POLL);
  assert.is(s.ctx().rows, 15, "data steps follow each other at once");
  assert.is(s.h.state(), "{running:waiting}");
  assert.is(s.calls.step.length, 4);
  await s.h.advance(POLL);
  assert.is(s.calls.step.length, 5, "an idle subtask asks again after pollMs");
  s.h.stop();
});

test("INIT -> SUCCESS when the snapshot completes at once; RUNNING -> SUCCESS after packs", async () => {
  const a = setup({}, { steps: [done] });
  assert.is(await until(a.h, a.state, "SUCCESS"), "SUCCESS");
  assert.is(a.h.child().getSnapshot().status, "done");
  a.h.stop();
  const b = setup({}, { steps: [data(3), data(4), done] });
  assert.is(await until(b.h, b.state, "SUCCESS"), "SUCCESS");
  assert.is(b.ctx().rows, 7);
  b.h.stop();
});

test("a resumed subtask starts directly in RUNNING (choosing its collector there); a complete one in SUCCESS", async () => {
  const s = setup({ resumed: true, rows: 42 }, { steps: [data(1)] });
  assert.is(s.state(), "RUNNING");
  assert.is(s.h.state(), "{running:{choosing:trying}}");
  await s.h.settle();
  assert.is(s.ctx().rows, 43);
  assert.is(s.state(), "RUNNING");
  s.h.stop();
  const d = setup({ done: true });
  assert.is(d.state(), "SUCCESS");
  assert.is(d.calls.choose.length, 0);
  d.h.stop();
});

test("the collector lost (COLLECTOR_UNAVAILABLE): REASSIGNING, another collector is chosen, INIT, RUNNING", async () => {
  const s = setup(
    {},
    { collectors: [{ node: "c1", instance: "i1" }, { node: "c2", instance: "i2" }], steps: [data(5), { error: "COLLECTOR_UNAVAILABLE" }, data(2)] },
  );
  const seen: string[] = [];
  s.h.child().subscribe?.((snap: { value: unknown }) => seen.push(syncTaskState(snap.value)));
  await until(s.h, s.state, "RUNNING");
  for (let i = 0; i < 10; i++) await s.h.settle();
  assert.ok(seen.includes("REASSIGNING"), seen.join(","));
  assert.is(s.ctx().collector.node, "c2");
  assert.equal(s.calls.choose, [null, { node: "c1", instance: "i1" }], "the lost collector is excluded");
  assert.equal(s.calls.why, [null, "failed with COLLECTOR_UNAVAILABLE"], "and why it was given up is known");
  assert.equal(s.calls.step, ["c1", "c1", "c2", "c2"]);
  assert.is(s.ctx().rows, 7);
  assert.ok(seen.indexOf("INIT", seen.indexOf("REASSIGNING")) > 0, "INIT again after the reassignment");
  s.h.stop();
});

test("transient errors are retried after retryMs; maxErrors in a row give the collector up; a success resets the count", async () => {
  const s = setup(
    {},
    {
      collectors: [{ node: "c1", instance: "i1" }, { node: "c2", instance: "i2" }],
      steps: [data(1), { error: "TIMEOUT" }, { error: "TIMEOUT" }, data(1), { error: "TIMEOUT" }, { error: "TIMEOUT" }, { error: "TIMEOUT" }, idle],
    },
  );
  await s.h.settle();
  assert.is(s.h.state(), "{running:backoff}");
  assert.is(s.ctx().errors, 1);
  await s.h.advance(RETRY);
  assert.is(s.ctx().errors, 2);
  await s.h.advance(RETRY);
  assert.is(s.ctx().errors, 1, "reset by the success, then one more");
  assert.is(s.ctx().collector.node, "c1");
  await s.h.advance(RETRY);
  await s.h.advance(RETRY);
  assert.is(s.ctx().collector.node, "c2", "the third error in a row reassigned the subtask");
  assert.equal(s.calls.step.slice(-1), ["c2"]);
  s.h.stop();
});

test("an unrecoverable error: FAILED, not retried", async () => {
  for (const code of ["DESTINATION_UNWRITABLE", "NOT_FOUND", "INTERNAL", "SQL_ERROR"]) {
    const s = setup({}, { steps: [data(1), { error: code }] });
    assert.is(await until(s.h, s.state, "FAILED"), "FAILED", code);
    assert.is(s.ctx().error.code, code);
    await s.h.advance(10 * WAIT);
    assert.is(s.calls.step.length, 2, "no retry");
    s.h.stop();
  }
});

test("no collector within reassignWaitMs: FAILED, from INIT and from REASSIGNING", async () => {
  const a = setup({}, { collectors: [] });
  for (let t = 0; t < WAIT - RETRY; t += RETRY) await a.h.advance(RETRY);
  assert.is(a.state(), "INIT");
  assert.ok(a.calls.choose.length > 5, "choose is retried every retryMs");
  await a.h.advance(RETRY);
  assert.is(a.state(), "FAILED");
  assert.is(a.ctx().error.code, "NO_COLLECTOR");
  a.h.stop();

  // A replica that no longer holds the position: another collector is looked for, none is there.
  const b = setup({}, { steps: [data(1), { error: "SNAPSHOT_REQUIRED" }] });
  await b.h.settle();
  assert.is(b.state(), "REASSIGNING");
  await b.h.advance(WAIT);
  assert.is(b.state(), "FAILED");
  assert.is(b.ctx().error.code, "NO_COLLECTOR");
  b.h.stop();
});

test("COLLECTOR_DOWN for its own collector reassigns; for another collector or instance it is ignored", async () => {
  const s = setup({}, { collectors: [{ node: "c1", instance: "i1" }, { node: "c2", instance: "i2" }], steps: [idle, idle, idle] });
  await s.h.settle();
  assert.is(s.h.state(), "{running:waiting}");
  s.h.child().send({ type: "COLLECTOR_DOWN", node: "c9" });
  s.h.child().send({ type: "COLLECTOR_DOWN", node: "c1", instance: "old" });
  await s.h.settle();
  assert.is(s.ctx().collector.node, "c1");
  s.h.child().send({ type: "COLLECTOR_DOWN", node: "c1", instance: "i1" });
  await s.h.settle();
  assert.is(s.ctx().collector.node, "c2");
  assert.is(s.ctx().lost.node, "c1");
  s.h.stop();
});

test.run();
