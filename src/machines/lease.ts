/**
 * A lease in the KV bucket (master, watchdog, synctool, collector.<host>), held by compare-and-set.
 *
 * Expiry is judged on the observer's own clock: a lease is expired when its revision has not
 * changed for ttlMs since this observer saw it change (never NATS server-side TTL). The holder
 * fences itself when it has not renewed within ttlMs - safetyMarginMs counted from when its last
 * successful renew was *sent*, so it stops before any observer may take over.
 *
 * One exception shortens the wait, and only for a holder that is provably gone: an observer that
 * probes the holder (probeMs > 0) and finds, while itself connected, that NATS has no subscriber
 * left for the holder's ping subject (the holder's connection is closed) treats the lease as
 * expired at once (GONE). A holder that is paused or cut off keeps its subscriptions, so it still
 * counts as live until the TTL. A holder whose own connection drops fences itself at once
 * (DISCONNECTED) and acts again only after a renew by compare-and-set proves the lease still its.
 */
import { assign, fromCallback, fromPromise, sendParent, setup, type ActorRefFrom } from "xstate";

export interface LeaseValue {
  node: string;
  epoch: number;
  /** Identifies the holding process; a restarted node has a new instance. */
  instance: string;
  [k: string]: unknown;
}

/** The key as last seen: value null when missing or deleted. */
export interface LeaseEntry {
  revision: number;
  value: LeaseValue | null;
}

export interface LeaseInput {
  key: string;
  node: string;
  instance: string;
  ttlMs: number;
  safetyMarginMs: number;
  /** Acquire as soon as the lease is free or expired. */
  wants?: boolean;
  /** Probe a live holder every probeMs for whether its connection is gone (0: never). */
  probeMs?: number;
}

/** A successful take or renew: times on the holder's monotonic clock. */
export interface Renewal {
  revision: number;
  epoch: number;
  sentAt: number;
  doneAt: number;
}

export type LeaseParentEvent =
  | { type: "LEASE_HELD"; key: string; epoch: number; revision: number }
  | { type: "LEASE_FENCED"; key: string; epoch: number }
  | { type: "LEASE_LOST"; key: string; holder: LeaseValue | null }
  | { type: "LEASE_SEEN"; key: string; holder: LeaseValue | null; live: boolean; gone?: boolean };

export type LeaseEvent =
  | { type: "SEEN"; entry: LeaseEntry }
  /** The holder of this revision has no connection to NATS any more (see the header). */
  | { type: "GONE"; revision: number }
  /** This process's own NATS connection dropped. */
  | { type: "DISCONNECTED" }
  | { type: "ACQUIRE" }
  | { type: "RELEASE" };

export interface Ctx extends LeaseInput {
  wants: boolean;
  /** The current entry's holder was found gone: expired without waiting for the TTL. */
  gone: boolean;
  entry: LeaseEntry | null;
  held: { revision: number; epoch: number } | null;
  fenceIn: number;
}

/** The error a take or renew rejects with when the revision moved: someone else wrote the key. */
export class LeaseConflict extends Error {
  constructor(message = "lease revision changed") {
    super(message);
    this.name = "LeaseConflict";
  }
}

const isConflict = (e: unknown) => e instanceof LeaseConflict || (e as { name?: string })?.name === "LeaseConflict";

export const leaseMachine = setup({
  types: {
    context: {} as Ctx,
    events: {} as LeaseEvent,
    input: {} as LeaseInput,
  },
  actors: {
    watch: fromCallback<LeaseEvent, { key: string }>(() => () => {}),
    take: fromPromise<Renewal, { entry: LeaseEntry | null }>(async () => {
      throw new Error("take not provided");
    }),
    renew: fromPromise<Renewal, { revision: number; epoch: number }>(async () => {
      throw new Error("renew not provided");
    }),
    release: fromPromise<void, { revision: number }>(async () => {}),
    /** Probes a live holder; sends GONE for its revision once its connection is gone. */
    presence: fromCallback<LeaseEvent, { holder: LeaseValue; revision: number; probeMs: number }>(() => () => {}),
  },
  delays: {
    ttl: ({ context }) => context.ttlMs,
    renewEvery: ({ context }) => Math.max(50, Math.floor((context.ttlMs - context.safetyMarginMs) / 3)),
    fence: ({ context }) => context.fenceIn,
    retry: ({ context }) => Math.max(50, Math.floor(context.ttlMs / 10)),
  },
  guards: {
    wants: ({ context }) => context.wants,
    empty: ({ context }) => !context.entry || context.entry.value === null,
    /** Our own node left it behind in an earlier process: that process is gone (the data dir lock proves it). */
    staleSelf: ({ context }) =>
      !!context.entry?.value && context.entry.value.node === context.node && context.entry.value.instance !== context.instance,
    /**
     * Epochs order the holders, revisions only the writes. Another process's value is a takeover
     * when its epoch is above ours, at any revision: the KV may have accepted a renew of ours
     * after that take (nats-server 2.9's clustered compare-and-set race, see the README), so the
     * watch delivers the take at a revision older than our held one. At a newer revision it is a
     * takeover unless its epoch is below ours: that is the same race the other way round, a
     * holder that lost to us renewing, and our next renew overwrites it (actors/lease.ts). An
     * older revision with no higher epoch is the watch replaying the value it started from (the
     * watch may open before our take lands).
     */
    takenFromUs: ({ context, event }) => event.type === "SEEN" && context.held !== null && takenFrom(context.held, context.instance, event.entry),
    olderThanHeld: ({ context, event }) => event.type === "SEEN" && context.held !== null && event.entry.revision < context.held.revision,
    conflict: ({ event }) => isConflict((event as { error?: unknown }).error),
    /** The watch may replay a revision we already saw; only a new revision restarts the expiry clock. */
    sameRevision: ({ context, event }) =>
      event.type === "SEEN" && context.entry !== null && event.entry.revision === context.entry.revision,
    goneNow: ({ context, event }) => event.type === "GONE" && context.entry !== null && event.revision === context.entry.revision,
  },
  actions: {
    seen: assign({ entry: ({ event }) => (event.type === "SEEN" ? event.entry : null), gone: false }),
    renewed: assign(({ context, event }) => {
      const out = (event as unknown as { output: Renewal }).output;
      return { held: { revision: out.revision, epoch: context.held!.epoch }, fenceIn: fenceDelay(context, out) };
    }),
    tellSeen: sendParent(({ context }, live: boolean) => ({
      type: "LEASE_SEEN" as const,
      key: context.key,
      holder: context.entry?.value ?? null,
      live,
      ...(context.gone ? { gone: true } : {}),
    })),
  },
}).createMachine({
  id: "lease",
  context: ({ input }) => ({ ...input, wants: input.wants ?? false, gone: false, entry: null, held: null, fenceIn: 0 }),
  invoke: { src: "watch", input: ({ context }) => ({ key: context.key }) },
  initial: "observing",
  states: {
    observing: {
      initial: "unknown",
      on: {
        SEEN: [{ guard: "sameRevision" }, { target: ".classify", actions: "seen" }],
        // No re-entry: wanting the lease must not restart the expiry clock of a live one.
        ACQUIRE: { actions: assign({ wants: true }) },
        RELEASE: { actions: assign({ wants: false }) },
      },
      states: {
        unknown: {},
        classify: {
          always: [
            { guard: "empty", target: "free" },
            { guard: "staleSelf", target: "expired" },
            { target: "live" },
          ],
        },
        free: {
          entry: { type: "tellSeen", params: false },
          always: { guard: "wants", target: "#lease.acquiring" },
        },
        live: {
          meta: { quiet: true },
          entry: { type: "tellSeen", params: true },
          after: { ttl: "expired" },
          on: { GONE: { guard: "goneNow", target: "expired", actions: assign({ gone: true }) } },
          // A no-op when probeMs is 0.
          invoke: {
            src: "presence",
            input: ({ context }) => ({ holder: context.entry!.value!, revision: context.entry!.revision, probeMs: context.probeMs ?? 0 }),
          },
        },
        expired: {
          entry: { type: "tellSeen", params: false },
          always: { guard: "wants", target: "#lease.acquiring" },
        },
      },
    },
    acquiring: {
      on: { SEEN: { actions: "seen" }, RELEASE: { actions: assign({ wants: false }) } },
      invoke: {
        src: "take",
        input: ({ context }) => ({ entry: context.entry }),
        onDone: {
          target: "holding",
          actions: assign(({ context, event }) => ({
            held: { revision: event.output.revision, epoch: event.output.epoch },
            fenceIn: fenceDelay(context, event.output),
          })),
        },
        onError: { target: "observing.classify" },
      },
    },
    holding: {
      entry: sendParent(({ context }) => ({
        type: "LEASE_HELD" as const,
        key: context.key,
        epoch: context.held!.epoch,
        revision: context.held!.revision,
      })),
      on: {
        SEEN: [{ guard: "takenFromUs", target: "lost", actions: "seen" }, { guard: "olderThanHeld" }, { actions: "seen" }],
        RELEASE: { target: "releasing", actions: assign({ wants: false }) },
      },
      initial: "term",
      states: {
        /** One lease term: re-entered on every successful renew, which restarts the fence timer. */
        term: {
          after: { fence: "fenced" },
          // Observers may count a holder without a connection as gone: stop before they do.
          on: { DISCONNECTED: "fenced" },
          initial: "waiting",
          states: {
            waiting: { meta: { quiet: true }, after: { renewEvery: "renewing" } },
            renewing: {
              meta: { quiet: true },
              invoke: {
                src: "renew",
                input: ({ context }) => ({ revision: context.held!.revision, epoch: context.held!.epoch }),
                onDone: { target: "#lease.holding.term", reenter: true, actions: "renewed" },
                onError: [{ guard: "conflict", target: "#lease.lost" }, { target: "retrying" }],
              },
            },
            retrying: { after: { retry: "renewing" } },
          },
        },
        /** Not renewed in time: stop acting as holder, keep trying to renew our own revision. */
        fenced: {
          entry: sendParent(({ context }) => ({ type: "LEASE_FENCED" as const, key: context.key, epoch: context.held!.epoch })),
          initial: "renewing",
          states: {
            renewing: {
              invoke: {
                src: "renew",
                input: ({ context }) => ({ revision: context.held!.revision, epoch: context.held!.epoch }),
                onDone: { target: "#lease.holding", reenter: true, actions: "renewed" },
                onError: [{ guard: "conflict", target: "#lease.lost" }, { target: "retrying" }],
              },
            },
            retrying: { after: { retry: "renewing" } },
          },
        },
      },
    },
    lost: {
      entry: [
        sendParent(({ context }) => ({ type: "LEASE_LOST" as const, key: context.key, holder: context.entry?.value ?? null })),
        // Losing ends the wish too: taking it back is a failover decision, not this holder's.
        assign({ held: null, wants: false }),
      ],
      always: "observing.classify",
    },
    releasing: {
      invoke: {
        src: "release",
        input: ({ context }) => ({ revision: context.held?.revision ?? context.entry?.revision ?? 0 }),
        onDone: { target: "observing.classify", actions: assign({ held: null }) },
        onError: { target: "observing.classify", actions: assign({ held: null }) },
      },
    },
  },
});

function takenFrom(held: { revision: number; epoch: number }, instance: string, entry: LeaseEntry): boolean {
  if (entry.value === null) return entry.revision > held.revision;
  if (entry.value.instance === instance) return false;
  return entry.value.epoch > held.epoch || (entry.revision > held.revision && entry.value.epoch === held.epoch);
}

/** Time left until the holder must consider itself fenced, counted from when the renew was sent. */
function fenceDelay(ctx: Ctx, r: Renewal): number {
  return Math.max(0, r.sentAt + (ctx.ttlMs - ctx.safetyMarginMs) - r.doneAt);
}

export type LeaseActor = ActorRefFrom<typeof leaseMachine>;
