/**
 * The check a SQL runner makes before every commit: the master still takes writes and its lease is
 * still valid. Shared memory, so a runner in a worker thread sees the main thread's view at once.
 */
import { performance } from "node:perf_hooks";
import { ClusterError } from "../../errors.js";
import type { WriteGate } from "./types.js";

export function newWriteGate(deadline: SharedArrayBuffer): WriteGate {
  return { accepting: new SharedArrayBuffer(4), deadline };
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
