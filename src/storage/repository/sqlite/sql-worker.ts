/**
 * The SQL worker thread: runs `ferry sql` transactions on its own connection to the master's
 * SQLite file, so a long transaction never stops the main thread from renewing the lease.
 * better-sqlite3 is synchronous: a transaction on the main thread would block its event loop.
 */
import { parentPort, workerData } from "node:worker_threads";
import { asFerryError } from "../../../errors.js";
import { checkGate, enterCommit, leaveCommit } from "../write-gate.js";
import { SqliteRepository } from "./repository.js";
import type { SqlJob, SqlWorkerData } from "./sql-runner.js";

if (parentPort) {
  const port = parentPort;
  const d = workerData as SqlWorkerData;
  const repo = new SqliteRepository(d.url, { busyTimeoutMs: d.busyTimeoutMs });
  port.on("message", (job: SqlJob) => {
    let counted = false;
    // Counted once per job: the commit follows the check at once (better-sqlite3 is synchronous).
    const beforeCommit = () => {
      if (counted) return checkGate(d.gate);
      enterCommit(d.gate);
      counted = true;
    };
    try {
      repo.checkFile();
      port.postMessage({ id: job.id, ok: true, out: repo.executeScript(job.sql, job.params, beforeCommit, job.key) });
    } catch (err) {
      port.postMessage({ id: job.id, ok: false, error: asFerryError(err).toWire() });
    } finally {
      if (counted) leaveCommit(d.gate);
    }
  });
}
