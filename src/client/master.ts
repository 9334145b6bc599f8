/**
 * A client's view of the `master` lease: who holds it, with which epoch, kept current by a KV
 * watch. Writes are addressed to the holder of an epoch; when the lease moves, an attempt in flight
 * to the old holder is abandoned at once (changed() resolves) instead of waiting out its timeout.
 */
import type { KV, KvWatchEntry } from "@nats-io/kv";
import { openWatch } from "../nats/buckets.js";
import { decodeLease, LEASE_KEY, type LeaseRecord } from "../nats/records.js";

export interface MasterView {
  node: string;
  epoch: number;
  /** The lease entry's revision: every renew moves it, a takeover too. */
  revision: number;
}

export class MasterFollower {
  private view: MasterView | null = null;
  private waiters: (() => void)[] = [];
  private listeners: ((to: MasterView | null, from: MasterView | null) => void)[] = [];
  private stopped = false;
  private iter: { stop(): void } | null = null;
  private following: Promise<void> = Promise.resolve();

  private constructor(private readonly kv: KV) {}

  /** Starts following; resolves once the lease was read the first time. */
  static async open(kv: KV): Promise<MasterFollower> {
    const f = new MasterFollower(kv);
    const first = await kv.get(LEASE_KEY.master);
    f.seen(first?.operation === "PUT" ? decodeLease(first.value) : null, first?.revision ?? 0);
    f.following = f.follow();
    return f;
  }

  /** The holder as last seen, or null when the lease is free. */
  get current(): MasterView | null {
    return this.view;
  }

  /** Resolves when the holder or its epoch differs from `from` (a renew does not count), or on close. */
  changed(from: MasterView | null): { promise: Promise<void>; cancel(): void } {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    const check = () => {
      // Closed: nothing will change any more, so nobody waits for it.
      if (this.stopped || !sameHolder(this.view, from)) {
        resolve();
        return true;
      }
      return false;
    };
    if (check()) return { promise, cancel: () => {} };
    const w = () => {
      if (check()) this.waiters = this.waiters.filter((x) => x !== w);
    };
    this.waiters.push(w);
    return { promise, cancel: () => (this.waiters = this.waiters.filter((x) => x !== w)) };
  }

  /** Calls fn(to, from) each time the holder or its epoch changes. */
  onChange(fn: (to: MasterView | null, from: MasterView | null) => void): void {
    this.listeners.push(fn);
  }

  /**
   * Stops following; resolves once no watch is being opened. Close the connection only then:
   * nats.js starts a watch consumer's heartbeat timer before it subscribes, so a watch whose
   * subscribe meets a closed connection leaves that timer running for good (it kept a finished
   * `ferry sql` alive now and then).
   */
  async close(): Promise<void> {
    this.stopped = true;
    this.iter?.stop();
    for (const w of this.waiters.splice(0)) w();
    await this.following;
  }

  private seen(v: LeaseRecord | null, revision: number): void {
    const next = v ? { node: v.node, epoch: v.epoch, revision } : null;
    const prev = this.view;
    this.view = next;
    if (sameHolder(prev, next)) return;
    for (const w of [...this.waiters]) w();
    for (const l of this.listeners) l(next, prev);
  }

  private async follow(): Promise<void> {
    while (!this.stopped) {
      try {
        const w = await openWatch(this.kv, { key: LEASE_KEY.master }, () => this.stopped);
        if (!w) return;
        this.iter = w;
        for await (const e of w as AsyncIterable<KvWatchEntry>) {
          if (this.stopped) break;
          this.seen(e.operation === "PUT" ? decodeLease(e.value) : null, e.revision);
        }
      } catch {
        // The watch ends with the connection; it is opened again once NATS is back.
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const sameHolder = (a: MasterView | null, b: MasterView | null) => (a === null ? b === null : b !== null && a.node === b.node && a.epoch === b.epoch);
