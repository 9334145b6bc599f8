/**
 * The SQL worker thread: runs `ferry sql` transactions on its own connection to the master's
 * repository, so a long transaction never stops the main thread from renewing the lease. Before
 * every commit it checks, through shared memory, that the lease is still valid and that the master
 * still takes writes; otherwise the transaction is rolled back.
 */
import { parentPort, workerData } from "node:worker_threads";
import { performance } from "node:perf_hooks";
import { ClusterError, asFerryError } from "../errors.js";
import { SqliteRepository } from "../storage/sqlite.js";
import type { RequestKey } from "../storage/types.js";

export interface SqlWorkerData {
  url: string;
  /** The lease's deadline, absolute ms (LeaseClock.shared). */
  deadline: SharedArrayBuffer;
  /** [0] = 1 while the master takes writes (not fenced, not handing over). */
  accepting: SharedArrayBuffer;
  busyTimeoutMs: number;
}

export interface SqlJob {
  id: number;
  sql: string;
  params?: unknown;
  key?: RequestKey;
}

if (parentPort) {
  const port = parentPort;
  const d = workerData as SqlWorkerData;
  const deadline = new BigInt64Array(d.deadline);
  const accepting = new Int32Array(d.accepting);
  const repo = new SqliteRepository(d.url, { busyTimeoutMs: d.busyTimeoutMs });
  const beforeCommit = () => {
    if (Atomics.load(accepting, 0) !== 1) {
      throw new ClusterError("FENCED", "the master stopped taking writes (fenced, demoted or handing over)", {
        hint: "retry: the request goes to whichever node holds the master lease",
        details: { committed: false },
      });
    }
    if (performance.timeOrigin + performance.now() >= Number(Atomics.load(deadline, 0))) {
      throw new ClusterError("FENCED", "the master's lease is not valid any more; the transaction was rolled back", {
        hint: "retry: the request goes to whichever node holds the master lease",
        details: { committed: false },
      });
    }
  };
  port.on("message", (job: SqlJob) => {
    try {
      repo.checkAvailable();
      port.postMessage({ id: job.id, ok: true, out: repo.execute(job.sql, job.params, beforeCommit, job.key) });
    } catch (err) {
      port.postMessage({ id: job.id, ok: false, error: asFerryError(err).toWire() });
    }
  });
}
