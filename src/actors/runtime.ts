/**
 * What a process's actors share: its config, logger, NATS connection, buckets, storage,
 * and the small pieces of live state that are not machine state (the lease's validity on
 * the monotonic clock, capture progress, the replicas a master serves).
 */
import { performance } from "node:perf_hooks";
import type { Logger } from "pino";
import type { Config, Role } from "../config.js";
import type { Buckets } from "../nats/buckets.js";
import type { NatsConnection } from "../nats/connect.js";
import type { Subjects } from "../nats/subjects.js";
import type { Client } from "../client/client.js";
import { ReplicationError } from "../errors.js";
import type { Alerts } from "./alerts.js";

export const now = () => performance.now();

export interface Runtime {
  config: Config;
  log: Logger;
  node: string;
  role: Role;
  /** Random per process: tells a restarted node from its earlier life. */
  instance: string;
  nc: NatsConnection;
  subj: Subjects;
  buckets: Buckets;
  alerts: Alerts;
  startedAt: number;
}

/** The process's own connection as a client (compare and repair run through the client code). */
export function runtimeClient(rt: Runtime): Client {
  return { config: rt.config, nc: rt.nc, subj: rt.subj, buckets: async () => rt.buckets, master: async () => null, close: async () => {} };
}

/**
 * The validity of a lease we hold, on this process's monotonic clock. Writes and batches are
 * served only while valid().
 *
 * Every successful compare-and-set of our own value extends it, whichever renew attempt made it:
 * a renew the lease machine gave up on (its fence timer fired while it was in flight) may land
 * after a newer one, and matching revisions made the clock miss every later renewal while the
 * machine went on holding (a master that renewed its lease but refused every request). Extending
 * from a late attempt is safe, because the deadline counts from when that attempt was sent and
 * the server accepted it as a write over our own revision. A renew that completes after the
 * lease was revoked, or under an earlier epoch, does not revive it.
 */
export class LeaseClock {
  private held = false;
  private until = 0;
  epoch = 0;
  /**
   * The deadline as an absolute time in ms (timeOrigin + until), shared with the SQL worker thread,
   * which checks it before every commit while this thread goes on renewing the lease.
   */
  readonly shared = new BigInt64Array(new SharedArrayBuffer(8));

  private publish(): void {
    Atomics.store(this.shared, 0, this.held ? BigInt(Math.floor(performance.timeOrigin + this.until)) : 0n);
  }

  grant(epoch: number, until: number): void {
    this.held = true;
    this.epoch = epoch;
    this.until = until;
    this.publish();
  }
  renewed(epoch: number, until: number): void {
    if (!this.held || epoch !== this.epoch || until <= this.until) return;
    this.until = until;
    this.publish();
  }
  /** Not valid until the next renew: the connection dropped, and the lease must be proven still ours. */
  suspend(): void {
    if (!this.held) return;
    this.until = 0;
    this.publish();
  }
  revoke(): void {
    this.held = false;
    this.until = 0;
    this.publish();
  }
  valid(): boolean {
    return this.held && now() < this.until;
  }
}

/** Waiters for "the change with this id is in a spooled batch": resolved with the batch's LSN. */
export class CaptureProgress {
  private waiters: { id: number; resolve: (lsn: number) => void; reject: (e: unknown) => void }[] = [];
  checkpoint = 0;

  advanced(lastId: number, lsn: number): void {
    this.checkpoint = lastId;
    const ready = this.waiters.filter((w) => w.id <= lastId);
    this.waiters = this.waiters.filter((w) => w.id > lastId);
    for (const w of ready) w.resolve(lsn);
  }

  waitFor(id: number, timeoutMs: number, lsnNow: number): Promise<number> {
    if (id <= this.checkpoint) return Promise.resolve(lsnNow);
    return new Promise((resolve, reject) => {
      const w = {
        id,
        resolve: (lsn: number) => (clearTimeout(t), resolve(lsn)),
        reject: (e: unknown) => (clearTimeout(t), reject(e)),
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new ReplicationError("TIMEOUT", `change ${id} was committed but not sequenced within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  failAll(err: unknown): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w.reject(err);
  }
}
