/**
 * The check a SQL runner makes before every commit: the master still takes writes and its lease is
 * still valid. Shared memory, so a runner in a worker thread sees the main thread's view at once.
 *
 * A commit that passed the check is counted until it is done (enterCommit .. leaveCommit), so the
 * main thread can stop writes and then wait for the commits already under way (commitsDrained):
 * the runner counts itself in before it reads `accepting`, the main thread clears `accepting`
 * before it reads the count (both sequentially consistent), so every commit is either refused or
 * counted. A switchover captures only after that, so no commit lands behind its last batch.
 */
import { performance } from "node:perf_hooks";
import { ClusterError } from "../../errors.js";
import type { WriteGate } from "./types.js";

export function newWriteGate(deadline: SharedArrayBuffer): WriteGate {
  return { accepting: new SharedArrayBuffer(4), deadline, committing: new SharedArrayBuffer(4) };
}

/** Counts a commit in, then checks the gate; refused (FENCED, not committed), it is counted out again. */
export function enterCommit(gate: WriteGate): void {
  Atomics.add(new Int32Array(gate.committing), 0, 1);
  try {
    checkGate(gate);
  } catch (err) {
    leaveCommit(gate);
    throw err;
  }
}

export function leaveCommit(gate: WriteGate): void {
  Atomics.sub(new Int32Array(gate.committing), 0, 1);
}

/** After setAccepting(false): resolves true once no commit is under way, false after timeoutMs. */
export async function commitsDrained(gate: WriteGate, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (Atomics.load(new Int32Array(gate.committing), 0) > 0) {
    if (performance.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 1));
  }
  return true;
}

export function setAccepting(gate: WriteGate, on: boolean): void {
  Atomics.store(new Int32Array(gate.accepting), 0, on ? 1 : 0);
}

/** Throws FENCED (not committed) when the master may not commit now. */
export function checkGate(gate: WriteGate): void {
  if (Atomics.load(new Int32Array(gate.accepting), 0) !== 1) {
    throw new ClusterError("FENCED", "the master stopped taking writes (fenced, demoted or handing over)", {
      hint: "retry: the request goes to whichever node holds the master lease",
      details: { committed: false },
    });
  }
  if (performance.timeOrigin + performance.now() >= Number(Atomics.load(new BigInt64Array(gate.deadline), 0))) {
    throw new ClusterError("FENCED", "the master's lease is not valid any more; the transaction was rolled back", {
      hint: "retry: the request goes to whichever node holds the master lease",
      details: { committed: false },
    });
  }
}
