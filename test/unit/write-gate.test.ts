/** The write gate: commits refused once writes stop, and the commits already under way waited for. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { commitsDrained, enterCommit, leaveCommit, newWriteGate, setAccepting } from "../../src/storage/repository/write-gate.js";

function gate() {
  const g = newWriteGate(new SharedArrayBuffer(8));
  Atomics.store(new BigInt64Array(g.deadline), 0, BigInt(Math.floor(performance.timeOrigin + performance.now() + 60_000)));
  setAccepting(g, true);
  return g;
}

test("a commit that entered before writes stopped is waited for; one that comes after is refused and not counted", async () => {
  const g = gate();
  enterCommit(g);
  setAccepting(g, false);
  let drained = false;
  const waiting = commitsDrained(g, 5000).then((ok) => (drained = ok));
  await new Promise((r) => setTimeout(r, 20));
  assert.not.ok(drained, "still committing");
  assert.throws(() => enterCommit(g), /stopped taking writes/);
  leaveCommit(g);
  await waiting;
  assert.ok(drained);
});

test("commitsDrained gives up after its timeout while a commit is under way", async () => {
  const g = gate();
  enterCommit(g);
  setAccepting(g, false);
  assert.is(await commitsDrained(g, 30), false);
  leaveCommit(g);
  assert.is(await commitsDrained(g, 30), true);
});

test.run();
