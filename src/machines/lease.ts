/**
 * A lease in the KV bucket (master, watchdog, synctool, collector.<host>), held by compare-and-set.
 *
 * Expiry is judged on the observer's own clock: a lease is expired when its revision has not
 * changed for ttlMs since this observer saw it change (never NATS server-side TTL). The holder
 * fences itself when it has not renewed within ttlMs - safetyMarginMs counted from when its last
 * successful renew was *sent*, so it stops before any observer may take over.
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
  | { type: "LEASE_SEEN"; key: string; holder: LeaseValue | null; live: boolean };

export type LeaseEvent =
  | { type: "SEEN"; entry: LeaseEntry }
  | { type: "ACQUIRE" }
  | { type: "RELEASE" };

interface Ctx extends LeaseInput {
  wants: boolean;
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
     * Only a revision newer than ours can be a takeover. An older one is the watch replaying the
     * value it started from (the watch may open before our take lands); were the KV to have lost
     * our revision, the next renew finds that out by compare-and-set.
     */
    takenFromUs: ({ context, event }) =>
      event.type === "SEEN" &&
      context.held !== null &&
      event.entry.revision > context.held.revision &&
      (event.entry.value === null || event.entry.value.instance !== context.instance),
    olderThanHeld: ({ context, event }) => event.type === "SEEN" && context.held !== null && event.entry.revision < context.held.revision,
    conflict: ({ event }) => isConflict((event as { error?: unknown }).error),
    /** The watch may replay a revision we already saw; only a new revision restarts the expiry clock. */
    sameRevision: ({ context, event }) =>
      event.type === "SEEN" && context.entry !== null && event.entry.revision === context.entry.revision,
  },
  actions: {
    seen: assign({ entry: ({ event }) => (event.type === "SEEN" ? event.entry : null) }),
    renewed: assign(({ context, event }) => {
      const out = (event as unknown as { output: Renewal }).output;
      return { held: { revision: out.revision, epoch: context.held!.epoch }, fenceIn: fenceDelay(context, out) };
    }),
    tellSeen: sendParent(({ context }, live: boolean) => ({
      type: "LEASE_SEEN" as const,
      key: context.key,
      holder: context.entry?.value ?? null,
      live,
    })),
  },
}).createMachine({
  id: "lease",
  context: ({ input }) => ({ ...input, wants: input.wants ?? false, entry: null, held: null, fenceIn: 0 }),
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

/** Time left until the holder must consider itself fenced, counted from when the renew was sent. */
function fenceDelay(ctx: Ctx, r: Renewal): number {
  return Math.max(0, r.sentAt + (ctx.ttlMs - ctx.safetyMarginMs) - r.doneAt);
}

export type LeaseActor = ActorRefFrom<typeof leaseMachine>;
