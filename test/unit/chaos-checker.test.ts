/**
 * The chaos suite's invariant checker on hand-made histories: a correct run passes every
 * invariant, and histories a broken build would produce (a master that skips fencing, a write
 * acknowledged under another node's epoch, lost or doubled writes, diverged replicas, an epoch
 * going back, a sync task with a doubled row, a crash) each make the right invariant FAIL.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { checkAll, checkAcked, checkConverged, checkEpochs, checkNoCrash, checkSingleMaster, checkSync, checkUnknown } from "../../scripts/chaos/checker.js";
import type { FinalState, History, LeaseObs, WriteOp } from "../../scripts/chaos/history.js";
import { mulberry32, scenario, SCENARIOS, Rng } from "../../scripts/chaos/scenarios.js";
import { faultFigures } from "../../scripts/chaos/run.js";

const T = 1_000_000;

/** m1 holds epoch 1 until s1 takes epoch 2 at T+10 s; writes every 100 ms, acknowledged 20 ms later, none during the failover. */
function history(): History {
  const leases: LeaseObs[] = [
    { at: T, revision: 1, op: "PUT", node: "m1", epoch: 1, instance: "a" },
    { at: T + 500, revision: 2, op: "PUT", node: "m1", epoch: 1, instance: "a" },
    { at: T + 10_000, revision: 9, op: "PUT", node: "s1", epoch: 2, instance: "b" },
    { at: T + 10_500, revision: 10, op: "PUT", node: "s1", epoch: 2, instance: "b" },
  ];
  const writes: WriteOp[] = [];
  let k = 0;
  for (let t = T + 100; t < T + 8000; t += 100) writes.push({ writer: "wa", k: k++, invokedAt: t, doneAt: t + 20, outcome: "ok", epoch: 1, node: "m1", lsn: k });
  // In flight when m1 died: unknown outcome.
  writes.push({ writer: "wa", k: k++, invokedAt: T + 8000, doneAt: T + 16_000, outcome: "unknown", code: "TimeoutError" });
  for (let t = T + 10_200; t < T + 20_000; t += 100) writes.push({ writer: "wa", k: k++, invokedAt: t, doneAt: t + 20, outcome: "ok", epoch: 2, node: "s1", lsn: k });
  writes.push({ writer: "wb", k, invokedAt: T + 20_000, doneAt: T + 20_010, outcome: "failed", code: "REPO_UNAVAILABLE" });
  return {
    scenario: "hand-made",
    seed: 0,
    startedAt: T,
    workload: { from: T, to: T + 20_000 },
    writes,
    leases,
    epochs: [
      { at: T + 1000, node: "m1", instance: "a", pid: 1, epoch: 1, state: "active" },
      { at: T + 1000, node: "s1", instance: "b", pid: 2, epoch: 1, state: "standby" },
      { at: T + 11_000, node: "s1", instance: "b", pid: 2, epoch: 2, state: "active" },
      { at: T + 15_000, node: "m1", instance: "c", pid: 3, epoch: 2, state: "standby" },
    ],
    faults: [{ n: 0, kind: "kill", target: "master", resolved: "m1", offsetMs: 8000, durationMs: 3000, injectedAt: T + 8000, healedAt: T + 11_000, notes: [] }],
    exits: [
      { name: "m1", pid: 1, at: T + 8000, code: null, signal: "SIGKILL", cause: "fault:kill" },
      { name: "m1", pid: 3, at: T + 30_000, code: 0, signal: null, cause: "stop" },
    ],
    syncTasks: [{ table: "sa", dest: "/x/sa-0", createdAt: T, completedAt: T + 5000 }],
    alerts: [],
    setup: [],
  };
}

function final(h: History): FinalState {
  const present = h.writes.filter((w) => w.outcome === "ok").map((w) => w.k);
  const rows = ["[1,\"a\"]", "[2,\"b\"]", "[3,\"c\"]"];
  return {
    quiescent: { ok: true, detail: "settled", ms: 100 },
    dumps: { m1: "table w: ...\nw|1|0\n", s1: "table w: ...\nw|1|0\n", s2: "table w: ...\nw|1|0\n" },
    keys: { m1: [...present], s1: [...present], s2: [...present] },
    sync: [{ table: "sa", dest: "/x/sa-0", want: rows, got: [...rows].reverse() }],
    crashLines: {},
    running: ["m1", "s1", "s2"],
  };
}

const failed = (rs: { id: string; ok: boolean }[]) => rs.filter((r) => !r.ok).map((r) => r.id);

test("a correct run passes every invariant", () => {
  const h = history();
  const rs = checkAll(h, final(h));
  assert.equal(failed(rs), [], JSON.stringify(rs.filter((r) => !r.ok), null, 1));
  assert.is(rs.length, 7);
});

test("broken build, a master that skips fencing: the old master acknowledges writes after the new one took over -> single-master FAILs", () => {
  const h = history();
  // m1 did not fence itself: it went on acknowledging at epoch 1 while s1 (epoch 2) took writes.
  h.writes.push({ writer: "wb", k: 9001, invokedAt: T + 12_000, doneAt: T + 12_030, outcome: "ok", epoch: 1, node: "m1", lsn: 700 });
  const f = final(h); // the write is on every replica: only the fencing invariant can tell
  const r = checkSingleMaster(h);
  assert.not.ok(r.ok);
  assert.ok(r.evidence.some((e) => /after the lease had moved to epoch 2/.test(e)), r.evidence.join("\n"));
  assert.ok(r.evidence.some((e) => /two masters took writes/.test(e)), r.evidence.join("\n"));
  assert.equal(failed(checkAll(h, f)), ["single-master"]);
});

test("broken build: overlapping acknowledgements are caught even when the lease history missed the new epoch", () => {
  const h = history();
  h.leases = h.leases.filter((l) => l.epoch === 1);
  h.writes.push({ writer: "wb", k: 9002, invokedAt: T + 15_000, doneAt: T + 15_010, outcome: "ok", epoch: 1, node: "m1", lsn: 701 });
  const r = checkSingleMaster(h);
  assert.not.ok(r.ok);
  assert.ok(r.evidence.some((e) => /no lease with epoch 2 was ever seen/.test(e)));
  assert.ok(r.evidence.some((e) => /k=9002 .* two masters took writes/.test(e)), r.evidence.join("\n"));
});

test("broken build: a write acknowledged at an epoch that is not its node's lease epoch -> single-master FAILs", () => {
  const h = history();
  const w = h.writes.find((x) => x.epoch === 2)!;
  w.node = "m1"; // m1 replied with s1's epoch
  const r = checkSingleMaster(h);
  assert.not.ok(r.ok);
  assert.match(r.evidence.join("\n"), new RegExp(`1 write\\(s\\) acknowledged by m1 at epoch 2, first k=${w.k} .*lease epoch 2 belongs to s1, not m1`));
  const h2 = history();
  h2.writes[0].epoch = 7; // an epoch nobody ever held
  assert.match(checkSingleMaster(h2).evidence.join("\n"), /no lease with epoch 7 was ever seen/);
});

test("a switchover's handover value does not make the target the holder of the old epoch", () => {
  const h = history();
  h.leases.push({ at: T + 9000, revision: 8, op: "PUT", node: "s1", epoch: 1, instance: "handover-from-a" });
  assert.ok(checkSingleMaster(h).ok, checkSingleMaster(h).evidence.join("\n"));
});

test("an acknowledged write missing on a replica, or present twice -> acked-durable FAILs", () => {
  const h = history();
  const f = final(h);
  f.keys.s2 = f.keys.s2.filter((k) => k !== 5);
  f.keys.m1.push(6);
  const r = checkAcked(h, f);
  assert.not.ok(r.ok);
  assert.match(r.evidence.join("\n"), /s2: acknowledged write k=5 .* present 0 times/);
  assert.match(r.evidence.join("\n"), /m1: acknowledged write k=6 .* present 2 times/);
});

test("a write of unknown outcome present twice, a failed write present, a row nobody wrote -> unknown-at-most-once FAILs", () => {
  const h = history();
  const unknown = h.writes.find((w) => w.outcome === "unknown")!;
  const fail = h.writes.find((w) => w.outcome === "failed")!;
  const f = final(h);
  assert.ok(checkUnknown(h, f).ok);
  f.keys.m1.push(unknown.k);
  assert.ok(checkUnknown(h, f).ok, "present once is allowed");
  f.keys.m1.push(unknown.k);
  f.keys.s1.push(fail.k, 424242);
  const r = checkUnknown(h, f);
  assert.not.ok(r.ok);
  assert.match(r.evidence.join("\n"), new RegExp(`m1: write of unknown outcome k=${unknown.k} .* present 2 times`));
  assert.match(r.evidence.join("\n"), new RegExp(`s1: failed write k=${fail.k} .* present 1 times`));
  assert.match(r.evidence.join("\n"), /s1: rows no request wrote: k=424242/);
});

test("replicas that differ, or a cluster that never settled -> converged FAILs", () => {
  const h = history();
  const f = final(h);
  f.dumps.s2 = "table w: ...\nw|1|1\n";
  const r = checkConverged(h, f);
  assert.not.ok(r.ok);
  assert.match(r.evidence[0], /s2 differs from m1 .* first at line 2: m1 "w\|1\|0" \/ s2 "w\|1\|1"/);
  const g = final(h);
  g.quiescent = { ok: false, detail: "s2 needs a resync", ms: 120_000 };
  assert.match(checkConverged(h, g).evidence[0], /did not settle after the heal: s2 needs a resync/);
});

test("an epoch going back on a node, or in the lease -> epochs-monotonic FAILs", () => {
  const h = history();
  h.epochs.push({ at: T + 16_000, node: "s1", instance: "b", pid: 2, epoch: 1, state: "fenced" });
  const r = checkEpochs(h);
  assert.not.ok(r.ok);
  assert.match(r.evidence[0], /s1: epoch 1 \(fenced, pid 2\) .* after epoch 2 \(active, pid 2\)/);
  const h2 = history();
  h2.leases.push({ at: T + 20_000, revision: 11, op: "PUT", node: "m1", epoch: 1, instance: "z" });
  assert.match(checkEpochs(h2).evidence.join("\n"), /lease revision 11 \(m1\) has epoch 1 after revision 10 \(s1\) had epoch 2/);
});

test("renews of an epoch its process held, landing after a newer epoch (the KV's compare-and-set race), are reported, not failed, until the newer holder overwrites them", () => {
  const h = history();
  h.leases.push({ at: T + 10_600, revision: 11, op: "PUT", node: "m1", epoch: 1, instance: "a" });
  h.leases.push({ at: T + 10_900, revision: 12, op: "PUT", node: "m1", epoch: 1, instance: "a" });
  const r = checkEpochs(h);
  assert.ok(r.ok, r.evidence.join("\n"));
  assert.match(r.summary, /1 holder\(s\) renewed through the KV's compare-and-set race/);
  h.leases.push({ at: T + 11_000, revision: 13, op: "PUT", node: "s1", epoch: 2, instance: "b" });
  h.leases.push({ at: T + 11_200, revision: 14, op: "PUT", node: "m1", epoch: 1, instance: "a" });
  assert.match(checkEpochs(h).evidence.join("\n"), /lease revision 14 \(m1\) has epoch 1 after revision 13 \(s1\) had epoch 2/);
});

test("a sync task that reached SUCCESS with a doubled, missing or foreign row -> sync-exact FAILs; unfinished tasks are reported", () => {
  const h = history();
  const f = final(h);
  f.sync[0].got = ['[1,"a"]', '[1,"a"]', '[3,"c"]', '[9,"z"]'];
  const r = checkSync(h, f);
  assert.not.ok(r.ok);
  assert.match(r.evidence[0], /4 rows in files for 3 in the table: 1 missing, 1 doubled, 1 not in the table/);
  const h2 = history();
  h2.syncTasks.push({ table: "sb", dest: "/x/sb-1", createdAt: T, error: "sync of main.sb/2 FAILED" });
  const r2 = checkSync(h2, final(h2));
  assert.ok(r2.ok);
  assert.match(r2.summary, /1 of 2 tasks reached SUCCESS; not completed: sb \(sync of main.sb\/2 FAILED\)/);
});

test("a process that exits by itself, fails an orderly stop, or logs a fatal line -> no-crash FAILs", () => {
  const h = history();
  h.exits.push({ name: "s2", pid: 9, at: T + 5000, code: 70, signal: null, cause: null });
  h.exits.push({ name: "w1", pid: 10, at: T + 30_000, code: null, signal: "SIGKILL", cause: "stop" });
  const f = final(h);
  f.crashLines.c1 = ['{"level":60,"msg":"actor failed; exiting so the process restarts from its durable state"}'];
  const r = checkNoCrash(h, f);
  assert.not.ok(r.ok);
  const ev = r.evidence.join("\n");
  assert.match(ev, /s2 \(pid 9\) exited by itself .* with code 70/);
  assert.match(ev, /w1 \(pid 10\) exited with signal SIGKILL when asked to stop/);
  assert.match(ev, /c1: .*actor failed/);
});

test("schedules are reproducible from the seed, and differ between seeds", () => {
  const a = mulberry32(42);
  const b = mulberry32(42);
  const xs = Array.from({ length: 5 }, () => a());
  assert.equal(xs, Array.from({ length: 5 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  for (const s of SCENARIOS) {
    const plan = (seed: number) => {
      const rng = new Rng(seed);
      const setup = s.setup(rng);
      return JSON.stringify({ setup, plan: s.plan(rng, 60_000) });
    };
    assert.is(plan(7), plan(7), `${s.name}: same seed, same faults at the same offsets`);
    const faults = JSON.parse(plan(7)).plan.filter((f: { kind: string }) => f.kind !== "sync-task");
    assert.ok(faults.length >= 2, `${s.name}: at least two faults in a minute`);
    for (const f of faults) assert.ok(f.offsetMs >= 0 && f.offsetMs + f.durationMs <= 60_000, `${s.name}: fault within the workload`);
  }
  assert.is.not(JSON.stringify(scenario("mixed").plan(new Rng(1), 60_000)), JSON.stringify(scenario("mixed").plan(new Rng(2), 60_000)));
});

test("failover figures: a master that takes its lease back first is no failover; the next fault's failover is its own", () => {
  const h = history();
  // m1 killed at +2 s and restarted: it takes epoch 2 itself at +4.5 s; killed again at +8 s, s1 takes epoch 3 at +10 s.
  h.leases = [
    { at: T, revision: 1, op: "PUT", node: "m1", epoch: 1, instance: "a" },
    { at: T + 4500, revision: 5, op: "PUT", node: "m1", epoch: 2, instance: "c" },
    { at: T + 10_000, revision: 9, op: "PUT", node: "s1", epoch: 3, instance: "b" },
  ];
  h.faults = [
    { n: 0, kind: "kill", target: "master", resolved: "m1", offsetMs: 2000, durationMs: 2000, injectedAt: T + 2000, healedAt: T + 4000, notes: [] },
    { n: 1, kind: "kill", target: "master", resolved: "m1", offsetMs: 8000, durationMs: 3000, injectedAt: T + 8000, healedAt: T + 11_000, notes: [] },
  ];
  const [first, second] = faultFigures(h, T);
  assert.is(first.failoverMs, null);
  assert.ok(first.notes.some((n) => n.includes("m1 took the lease back after 2500 ms")), first.notes.join("; "));
  assert.is(second.failoverMs, 2000);
  assert.is(faultFigures(history(), T)[0].failoverMs, 2000);
});

test.run();
