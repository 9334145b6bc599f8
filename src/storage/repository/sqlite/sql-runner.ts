/** The main thread's side of the SQL worker (sql-worker.ts): one job at a time, in order. */
import { Worker } from "node:worker_threads";
import { ClusterError, fromWire, FerryError, type WireError } from "../../../errors.js";
import type { ExecuteOutcome, RequestKey, SqlRunner, WriteGate } from "../types.js";

// The messages between the two threads live here, not in sql-worker.ts: the worker imports the
// repository, which imports this runner.
export interface SqlWorkerData {
  url: string;
  gate: WriteGate;
  busyTimeoutMs: number;
}

export interface SqlJob {
  id: number;
  sql: string;
  params?: unknown;
  key?: RequestKey;
}

type Reply = { id: number; ok: true; out: ExecuteOutcome } | { id: number; ok: false; error: WireError };

export class SqliteSqlRunner implements SqlRunner {
  private worker: Worker;
  private next = 1;
  private pending = new Map<number, { resolve: (o: ExecuteOutcome) => void; reject: (e: unknown) => void }>();
  private closing = false;

  constructor(data: SqlWorkerData) {
    this.worker = import.meta.url.endsWith(".ts")
      ? // Under tsx (tests, scripts) this module is the .ts source; a worker does not inherit tsx's hooks.
        new Worker(
          `import("tsx/esm/api").then((t) => t.register()).then(() => import(${JSON.stringify(new URL("./sql-worker.ts", import.meta.url).href)}))`,
          { eval: true, workerData: data },
        )
      : new Worker(new URL("./sql-worker.js", import.meta.url), { workerData: data });
    this.worker.on("message", (r: Reply) => {
      const p = this.pending.get(r.id);
      if (!p) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.out);
      else p.reject(fromWire(r.error));
    });
    this.worker.on("error", (err) => this.failAll(new FerryError("INTERNAL", `the SQL worker failed: ${err.message}`, { cause: err })));
    this.worker.on("exit", () =>
      this.failAll(
        this.closing
          ? // Stopped with the master's services (fenced, demoted, handing over): a transaction under
            // way may have committed before the thread stopped, so the client retries under its key.
            new ClusterError("FENCED", "the master stopped taking writes while the transaction ran; its outcome is unknown", {
              hint: "retry under the same key (ferry sql --wait does): a master that holds the write answers from its record",
              details: { committed: true },
            })
          : new FerryError("INTERNAL", "the SQL worker stopped"),
      ),
    );
  }

  get running(): number {
    return this.pending.size;
  }

  execute(sql: string, params: unknown, key?: RequestKey): Promise<ExecuteOutcome> {
    const job: SqlJob = { id: this.next++, sql, params, key };
    return new Promise((resolve, reject) => {
      this.pending.set(job.id, { resolve, reject });
      this.worker.postMessage(job);
    });
  }

  private failAll(err: unknown): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.worker.terminate();
  }
}
