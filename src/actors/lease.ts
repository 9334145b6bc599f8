/**
 * The lease machine's I/O: a KV watch, take / renew / release by compare-and-set, this process's
 * connection (a drop fences a holder), and the probe that finds a holder's connection gone.
 */
import { fromCallback, fromPromise } from "xstate";
import type { KV } from "@nats-io/kv";
import { asFerryError } from "../errors.js";
import { leaseMachine, LeaseConflict, type LeaseEntry, type LeaseEvent, type LeaseValue, type Renewal } from "../machines/lease.js";
import { isWrongSequence, openWatch, withDeadline } from "../nats/buckets.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { decodeLease } from "../nats/records.js";
import { call } from "../nats/rpc.js";
import { type Runtime, type LeaseClock, now } from "./runtime.js";


export interface LeaseOpts {
  key: string;
  clock: LeaseClock;
  /** Epoch floor kept durably by this process (LevelDB): a new epoch is above it and the KV's. */
  epochs: { max(): Promise<number>; raise(e: number): Promise<void> };
  /** Extra fields for the lease value (host, designated, ...). */
  extra?: () => Record<string, unknown>;
}

export function leaseLogic(rt: Runtime, kv: KV, opts: LeaseOpts) {
  const { ttlMs, safetyMarginMs } = rt.config.lease;
  /** Holder instances seen answering on this process's current connection (every renew starts a new probe). */
  const answering = new Set<string>();
  const timeout = Math.max(200, Math.min(rt.config.nats.requestTimeoutMs, Math.floor((ttlMs - safetyMarginMs) / 2)));
  const value = (epoch: number): string =>
    JSON.stringify({ node: rt.node, epoch, instance: rt.instance, role: rt.role, ts: Date.now(), ...opts.extra?.() });

  /** The highest epoch the watch delivered: a take goes above it even when the KV's value is lower. */
  let seenEpoch = 0;

  /**
   * The key's current revision when this process may write over it, else null: its value was
   * written by this process, or (below `epoch`, the one we hold) by a holder that lost to us and
   * renewed through a compare-and-set the KV should have refused (see the lease machine's takenFromUs).
   */
  const ownRevision = async (epoch?: number): Promise<number | null> => {
    const e = await kv.get(opts.key);
    const v = e?.operation === "PUT" ? decodeLease(e.value) : null;
    if (!v) return null;
    if (v.node === rt.node && v.instance === rt.instance) return e!.revision;
    return epoch !== undefined && v.epoch < epoch ? e!.revision : null;
  };

  return leaseMachine.provide({
    actors: {
      watch: fromCallback<LeaseEvent, { key: string }>(({ sendBack }) => {
        let stopped = false;
        let iter: { stop(): void } | null = null;
        const see = (e: Parameters<typeof toEntry>[0]) => {
          const entry = toEntry(e);
          seenEpoch = Math.max(seenEpoch, entry.value?.epoch ?? 0);
          sendBack({ type: "SEEN", entry });
        };
        const run = async () => {
          while (!stopped) {
            try {
              // A read that never answers would leave this observer without a view of the lease for good.
              const first = await withDeadline(kv.get(opts.key), rt.config.nats.requestTimeoutMs, `reading lease ${opts.key}`);
              see(first);
              const w = await openWatch(kv, { key: opts.key }, () => stopped);
              if (!w) return;
              iter = w;
              for await (const e of w) {
                if (stopped) break;
                see(e);
              }
            } catch (err) {
              if (!stopped) rt.log.warn({ err: String(err), key: opts.key }, "lease watch interrupted; retrying");
            }
            if (!stopped) await new Promise((r) => setTimeout(r, 250));
          }
        };
        void run();
        const status = watchConnection(rt, () => {
          // Before the machine hears of it: the SQL worker checks the clock before every commit.
          opts.clock.suspend();
          // A holder that answered on the connection that dropped proves nothing on the next one.
          answering.clear();
          sendBack({ type: "DISCONNECTED" });
        });
        return () => {
          stopped = true;
          iter?.stop();
          status.stop();
        };
      }),
      presence: fromCallback<LeaseEvent, { holder: LeaseValue; revision: number; probeMs: number }>(({ sendBack, input }) =>
        probePresence(rt, input, answering, () => sendBack({ type: "GONE", revision: input.revision })),
      ),
      take: fromPromise<Renewal, { entry: LeaseEntry | null }>(async ({ input }) => {
        const sentAt = now();
        const epoch = Math.max(input.entry?.value?.epoch ?? 0, seenEpoch, await opts.epochs.max()) + 1;
        await opts.epochs.raise(epoch); // durable before anyone can see it
        let revision: number;
        try {
          revision =
            !input.entry || input.entry.revision === 0
              ? await kv.create(opts.key, value(epoch))
              : await kv.update(opts.key, value(epoch), input.entry.revision, timeout);
        } catch (err) {
          if (!isWrongSequence(err)) throw err;
          // An earlier attempt may have been written although its reply was lost: then it is ours.
          const mine = await ownRevision();
          if (mine === null) throw new LeaseConflict(`lease ${opts.key} was taken by another process`);
          revision = await kv.update(opts.key, value(epoch), mine, timeout);
        }
        opts.clock.grant(epoch, sentAt + ttlMs - safetyMarginMs);
        rt.log.info({ key: opts.key, epoch, revision }, `lease ${opts.key} taken with epoch ${epoch}`);
        return { revision, epoch, sentAt, doneAt: now() };
      }),
      renew: fromPromise<Renewal, { revision: number; epoch: number }>(async ({ input }) => {
        const sentAt = now();
        let revision: number;
        try {
          revision = await kv.update(opts.key, value(input.epoch), input.revision, timeout);
        } catch (err) {
          if (!isWrongSequence(err)) throw err;
          // A renew that timed out on our side but reached the server moved the revision: still ours.
          // So is a lower epoch's write, which the KV should have refused.
          const mine = await ownRevision(input.epoch);
          if (mine === null) {
            opts.clock.revoke();
            throw new LeaseConflict(`lease ${opts.key} was taken over`);
          }
          revision = await kv.update(opts.key, value(input.epoch), mine, timeout);
        }
        opts.clock.renewed(input.epoch, sentAt + ttlMs - safetyMarginMs);
        return { revision, epoch: input.epoch, sentAt, doneAt: now() };
      }),
      release: fromPromise<void, { revision: number }>(async ({ input }) => {
        opts.clock.revoke();
        await kv.delete(opts.key, { previousSeq: input.revision }).catch(() => {});
      }),
    },
  });
}

function toEntry(e: { revision: number; operation: string; value: Uint8Array } | null): LeaseEntry {
  if (!e) return { revision: 0, value: null };
  return { revision: e.revision, value: e.operation === "PUT" ? decodeLease(e.value) : null };
}

/** Calls onDrop each time this process's NATS connection drops; stop() ends the watch. */
function watchConnection(rt: Runtime, onDrop: () => void): { stop(): void } {
  const it = rt.nc.status();
  void (async () => {
    for await (const s of it) if (s.type === "disconnect") onDrop();
  })();
  return { stop: () => (it as unknown as { stop(): void }).stop() };
}

/**
 * Pings a live holder every probeMs. "No responders" means NATS holds no subscription of the
 * holder's any more: its connection is closed. It counts only after the holder was seen answering
 * on this same connection of ours (a reconnect of our own, e.g. a NATS restart, starts over: the
 * holder may simply not be back yet), and only when it lasts goneAfterMs, so a holder that moves
 * to another server of a NATS cluster is not taken for gone. A timeout proves nothing (a paused
 * or cut-off holder keeps its subscriptions) and starts over too.
 */
function probePresence(rt: Runtime, input: { holder: LeaseValue; probeMs: number }, answering: Set<string>, onGone: () => void): () => void {
  if (input.probeMs <= 0) return () => {};
  const goneAfterMs = rt.config.lease.goneAfterMs;
  const holder = input.holder.instance;
  let stopped = false;
  let silentSince = 0;
  const subject = rt.subj.ping(input.holder.node);
  const probe = async (): Promise<void> => {
    while (!stopped) {
      const t0 = performance.now();
      try {
        await call(rt.nc, ENDPOINTS.ping, subject, { from: rt.node }, { timeoutMs: Math.max(input.probeMs, 250) });
        answering.add(holder);
        silentSince = 0;
      } catch (err) {
        if (answering.has(holder) && asFerryError(err).code === ENDPOINTS.ping.absent.code) {
          silentSince ||= t0;
          if (performance.now() - silentSince >= goneAfterMs) {
            rt.log.warn({ holder: input.holder.node, epoch: input.holder.epoch, silentMs: Math.round(performance.now() - silentSince) }, `lease holder ${input.holder.node} has no NATS connection: taken as gone`);
            stopped = true;
            return onGone();
          }
        } else silentSince = 0;
      }
      await new Promise((r) => setTimeout(r, Math.max(0, input.probeMs - (performance.now() - t0))));
    }
  };
  void probe();
  return () => {
    stopped = true;
  };
}
