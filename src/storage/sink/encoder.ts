/**
 * Encoding off the main thread: turning a file's worth of rows (sync.fileBytes) into Parquet or
 * CSV takes a second or more of CPU, which on the synctool's main thread would stall its lease
 * renewals, heartbeats and task commands. A small pool of worker threads encodes, a file a job.
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { FerryError, fromWire, type WireError } from "../../errors.js";
import type { SinkBatch, SinkFormat, SinkTable } from "./types.js";

export interface EncodeJob {
  id: number;
  format: SinkFormat;
  table: SinkTable;
  batch: SinkBatch;
}

export type EncodeReply = { id: number; ok: true; data: Uint8Array } | { id: number; ok: false; error: WireError };

interface Thread {
  worker: Worker;
  pending: Map<number, { resolve: (d: Uint8Array) => void; reject: (e: unknown) => void }>;
}

export class SinkEncoder {
  private threads: Thread[] = [];
  private next = 1;

  constructor(private size = Math.min(2, availableParallelism())) {}

  encode(format: SinkFormat, table: SinkTable, batch: SinkBatch): Promise<Uint8Array> {
    const t = this.thread();
    const job: EncodeJob = { id: this.next++, format, table, batch };
    return new Promise((resolve, reject) => {
      t.pending.set(job.id, { resolve, reject });
      t.worker.postMessage(job);
    });
  }

  /** The least busy thread, a new one while the pool is not full. */
  private thread(): Thread {
    const idle = this.threads.find((t) => t.pending.size === 0);
    if (idle) return idle;
    if (this.threads.length < this.size) return this.start();
    return this.threads.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
  }

  private start(): Thread {
    const worker = import.meta.url.endsWith(".ts")
      ? // Under tsx (tests, scripts) this module is the .ts source; a worker does not inherit tsx's hooks.
        new Worker(`import("tsx/esm/api").then((t) => t.register()).then(() => import(${JSON.stringify(new URL("./encode-worker.ts", import.meta.url).href)}))`, { eval: true })
      : new Worker(new URL("./encode-worker.js", import.meta.url));
    worker.unref(); // idle encoders never keep the process alive
    const t: Thread = { worker, pending: new Map() };
    const failAll = (err: unknown) => {
      for (const p of t.pending.values()) p.reject(err);
      t.pending.clear();
      this.threads = this.threads.filter((x) => x !== t);
    };
    worker.on("message", (r: EncodeReply) => {
      const p = t.pending.get(r.id);
      if (!p) return;
      t.pending.delete(r.id);
      if (r.ok) p.resolve(r.data);
      else p.reject(fromWire(r.error));
    });
    worker.on("error", (err) => failAll(new FerryError("INTERNAL", `a sink encoder thread failed: ${err.message}`, { cause: err })));
    worker.on("exit", () => failAll(new FerryError("INTERNAL", "a sink encoder thread stopped")));
    this.threads.push(t);
    return t;
  }
}
