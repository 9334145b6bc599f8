/**
 * The replicas a master serves: what each holds durably (acked), whether it needs a resync,
 * and the writes waiting for N replicas to hold them (synchronous replication).
 */
import { ReplicationError } from "../errors.js";
import type { Meta, ReplicaRecord } from "../storage/meta.js";

interface Waiter {
  lsn: number;
  n: number;
  resolve: () => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

export class ReplicaRegistry {
  private records = new Map<string, ReplicaRecord>();
  private waiters: Waiter[] = [];
  private dirty = new Set<string>();

  constructor(private meta: Meta) {}

  async load(): Promise<void> {
    for (const r of await this.meta.replicaRecords()) this.records.set(r.node, r);
  }

  get(node: string): ReplicaRecord | undefined {
    return this.records.get(node);
  }

  all(): ReplicaRecord[] {
    return [...this.records.values()];
  }

  /** A pull or a snapshot told us what the replica holds. */
  seen(node: string, acked: number, applied: number): ReplicaRecord {
    const prev = this.records.get(node);
    const rec: ReplicaRecord = {
      node,
      acked: Math.max(acked, 0),
      applied,
      needsResync: prev?.needsResync ?? false,
      reason: prev?.reason,
      lastSeen: Date.now(),
    };
    this.records.set(node, rec);
    this.dirty.add(node);
    this.settle();
    return rec;
  }

  async markResync(node: string, reason: string): Promise<void> {
    const rec = this.records.get(node);
    if (!rec) return;
    rec.needsResync = true;
    rec.reason = reason;
    await this.meta.putReplica(rec);
  }

  async resynced(node: string, lsn: number): Promise<void> {
    const rec: ReplicaRecord = { node, acked: lsn, applied: lsn, needsResync: false, lastSeen: Date.now() };
    this.records.set(node, rec);
    await this.meta.putReplica(rec);
  }

  async flush(): Promise<void> {
    const nodes = [...this.dirty];
    this.dirty.clear();
    for (const n of nodes) {
      const r = this.records.get(n);
      if (r) await this.meta.putReplica(r);
    }
  }

  /** Resolves once n replicas hold `lsn` durably. */
  waitAcked(lsn: number, n: number, timeoutMs: number): Promise<void> {
    if (this.count(lsn) >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        lsn,
        n,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((x) => x !== w);
          reject(
            new ReplicationError(
              "SYNC_REPLICAS_TIMEOUT",
              `committed on the master at LSN ${lsn} but ${this.count(lsn)} of ${n} replicas confirmed it within ${timeoutMs} ms`,
              { hint: "the write may or may not survive a failover; check the replicas (ferry status)", details: { lsn } },
            ),
          );
        }, timeoutMs),
      };
      this.waiters.push(w);
    });
  }

  failWaiters(err: unknown): void {
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.waiters = [];
  }

  private count(lsn: number): number {
    let c = 0;
    for (const r of this.records.values()) if (!r.needsResync && r.acked >= lsn) c++;
    return c;
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const done = this.waiters.filter((w) => this.count(w.lsn) >= w.n);
    if (done.length === 0) return;
    this.waiters = this.waiters.filter((w) => !done.includes(w));
    for (const w of done) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }
}
