/**
 * A replica (slave) follows the active master: it pulls batches from its own position, spools
 * them durably, and applies them. Fetching and applying run side by side, so a slow apply
 * never stops the master from learning what the replica holds durably. Once caught up, it takes
 * the next batch from the master's push when one comes (no pull), and pulls for anything else.
 */
import { assign, enqueueActions, fromPromise, setup, type ActorRefFrom } from "xstate";

export interface MasterRef {
  node: string;
  epoch: number;
}

export interface ReplicaInput {
  fresh: boolean;
  needsResync: boolean;
  pollMs: number;
  retryMs: number;
}

export type ReplicaEvent =
  | { type: "MASTER"; master: MasterRef | null }
  | { type: "NOTIFY"; node: string; epoch: number; lsn: number; ack?: boolean }
  /** A batch pushed by a master: the I/O holds its data until `accept` takes it. */
  | { type: "PUSH"; node: string; epoch: number; lsn: number }
  | { type: "RESYNC" }
  | { type: "SPOOLED" };

export interface FetchResult {
  records: number;
  /** Master's head LSN when it answered. */
  head: number;
  /** The newest LSN this replica holds whole. */
  received: number;
  /**
   * Pull again at once: the master holds more than this pull brought, it asked for an early
   * acknowledgement (synchronous replication), a batch was spooled while it answered, or a
   * pushed batch could not be taken (or pulls are due).
   */
  more: boolean;
}

export interface ApplyResult {
  applied: number;
  more: boolean;
}

/** Error codes after which streaming cannot go on without a snapshot. */
const RESYNC_CODES = new Set(["BACKLOG_EXCEEDED", "SNAPSHOT_REQUIRED", "SCHEMA_MISMATCH", "NEEDS_RESYNC"]);
const codeOf = (e: unknown) => (e as { code?: string })?.code ?? "INTERNAL";
const messageOf = (e: unknown) => (e as { message?: string })?.message ?? String(e);

export interface Ctx extends ReplicaInput {
  master: MasterRef | null;
  /** The newest LSN the master is known to hold (its replies, notifications and pushes). */
  head: number;
  received: number;
  /** The newest LSN announced since the pull (or push) under way began: its answer may predate it. */
  announced: number;
  error: { code: string; message: string } | null;
}

/** Sent by the master this replica follows, in the epoch it follows. */
const followed = (context: Ctx, event: { node: string; epoch: number }) => event.node === context.master?.node && event.epoch === context.master?.epoch;

export const replicaMachine = setup({
  types: { context: {} as Ctx, events: {} as ReplicaEvent, input: {} as ReplicaInput },
  actors: {
    fetch: fromPromise<FetchResult, { master: MasterRef }>(async () => ({ records: 0, head: 0, received: 0, more: false })),
    /** Spools the pushed batch `lsn` if it is the next one, and tells the master when due. */
    accept: fromPromise<FetchResult, { master: MasterRef; lsn: number }>(async () => ({ records: 0, head: 0, received: 0, more: false })),
    apply: fromPromise<ApplyResult, void>(async () => ({ applied: 0, more: false })),
    restore: fromPromise<{ lsn: number }, { master: MasterRef }>(async () => ({ lsn: 0 })),
    markResync: fromPromise<void, { code: string; message: string } | null>(async () => {}),
  },
  delays: {
    poll: ({ context }) => context.pollMs,
    retry: ({ context }) => context.retryMs,
  },
  guards: {
    hasMaster: ({ context }) => context.master !== null,
    fresh: ({ context }) => context.fresh,
    needsResync: ({ context }) => context.needsResync,
    /** A fetch or an apply that says there is more to do at once. */
    more: ({ event }) => (event as unknown as { output: FetchResult | ApplyResult }).output.more,
    resyncError: ({ event }) => RESYNC_CODES.has(codeOf((event as { error?: unknown }).error)),
    /** A new batch announced by the master this replica follows (another node's head means nothing here). */
    newer: ({ context, event }) =>
      (event.type === "NOTIFY" || event.type === "PUSH") && followed(context, event) && event.lsn > context.head,
    /** Pushed by the master followed, and the batch right after what this replica holds. */
    pushedNext: ({ context, event }) =>
      event.type === "PUSH" && followed(context, event) && event.lsn === context.received + 1,
    /** A batch was announced while a pull or a push was under way, past what it brought. */
    behind: ({ context }) => context.announced > context.received,
    ackWanted: ({ context, event }) =>
      event.type === "NOTIFY" && event.ack === true && followed(context, event),
    /** A notification from the master being pulled from: it is active and serving now. */
    fromMaster: ({ context, event }) => event.type === "NOTIFY" && followed(context, event),
    otherMaster: ({ context, event }) =>
      event.type === "MASTER" && (event.master?.node !== context.master?.node || event.master?.epoch !== context.master?.epoch),
  },
  actions: {
    failed: assign({
      error: ({ event }) => {
        const e = (event as { error?: unknown }).error;
        return { code: codeOf(e), message: messageOf(e) };
      },
    }),
    /** Wakes the applier when the pull brought something. */
    spooled: enqueueActions(({ event, enqueue }) => {
      if ((event as unknown as { output: FetchResult }).output.records > 0) enqueue.raise({ type: "SPOOLED" });
    }),
    setMaster: assign(({ context, event }) => {
      if (event.type !== "MASTER") return {};
      // A master appeared: "no active master" is no longer true, whatever the state is doing.
      const error = event.master && context.error?.code === "NO_ACTIVE_MASTER" ? null : context.error;
      // The old master's head says nothing of the new one's: a new master may announce a lower LSN
      // (the old one sequenced batches nobody fetched), which must still wake this replica.
      const moved = event.master?.node !== context.master?.node || event.master?.epoch !== context.master?.epoch;
      return { master: event.master, error, ...(moved ? { head: 0 } : {}) };
    }),
    fetched: assign(({ event }) => {
      const out = (event as unknown as { output: FetchResult }).output;
      return { head: out.head, received: out.received, error: null };
    }),
    announced: assign(({ context, event }) => {
      const lsn = (event as { lsn: number }).lsn;
      return { head: lsn, announced: Math.max(context.announced, lsn) };
    }),
    /** A fetch begins: what it brings answers every announcement made so far. */
    asking: assign({ announced: 0 }),
  },
}).createMachine({
  id: "replica",
  context: ({ input }) => ({ ...input, master: null, head: 0, received: 0, announced: 0, error: null }),
  on: {
    MASTER: { actions: "setMaster" },
    NOTIFY: { guard: "newer", actions: "announced" },
    PUSH: { guard: "newer", actions: "announced" },
    RESYNC: ".resyncing",
  },
  initial: "boot",
  states: {
    boot: {
      always: [
        { guard: "needsResync", target: "needsResync" },
        { guard: "fresh", target: "resyncing" },
        { target: "streaming" },
      ],
    },
    streaming: {
      type: "parallel",
      states: {
        fetch: {
          initial: "locating",
          states: {
            /** No active master known: report it and keep looking. */
            locating: {
              entry: assign({ error: ({ context }) => (context.master ? null : { code: "NO_ACTIVE_MASTER", message: "no active master" }) }),
              always: { guard: "hasMaster", target: "pulling" },
              after: { retry: { target: "locating", reenter: true } },
            },
            pulling: {
              meta: { quiet: true },
              entry: "asking",
              invoke: {
                src: "fetch",
                input: ({ context }) => ({ master: context.master! }),
                onDone: [
                  { guard: "more", target: "pulling", reenter: true, actions: ["fetched", "spooled"] },
                  { target: "waiting", actions: ["fetched", "spooled"] },
                ],
                onError: [
                  { guard: "resyncError", target: "#replica.needsResync", actions: "failed" },
                  { target: "backoff", actions: "failed" },
                ],
              },
            },
            waiting: {
              meta: { quiet: true },
              always: { guard: "behind", target: "pulling" },
              on: {
                PUSH: [
                  { guard: "pushedNext", target: "accepting", actions: "announced" },
                  { guard: "newer", target: "pulling", actions: "announced" },
                ],
                NOTIFY: [
                  { guard: "newer", target: "pulling", actions: "announced" },
                  // Nothing new, but the master waits for this replica's acknowledgement, which the next pull carries.
                  { guard: "ackWanted", target: "pulling" },
                ],
              },
              after: { poll: "pulling" },
            },
            accepting: {
              meta: { quiet: true },
              entry: "asking",
              invoke: {
                src: "accept",
                input: ({ context, event }) => ({ master: context.master!, lsn: (event as { lsn: number }).lsn }),
                onDone: [
                  { guard: "more", target: "pulling", actions: ["fetched", "spooled"] },
                  { target: "waiting", actions: ["fetched", "spooled"] },
                ],
                onError: [
                  { guard: "resyncError", target: "#replica.needsResync", actions: "failed" },
                  { target: "backoff", actions: "failed" },
                ],
              },
            },
            // A master just promoted may not have served the first pull; its first notification ends the wait.
            backoff: { on: { NOTIFY: { guard: "fromMaster", target: "locating" } }, after: { retry: "locating" } },
          },
          // Another master (or none): a pull still waiting on the old one is abandoned at once, not timed out.
          on: { MASTER: { guard: "otherMaster", target: ".locating", actions: "setMaster" } },
        },
        apply: {
          initial: "applying",
          states: {
            idle: { meta: { quiet: true }, on: { SPOOLED: "applying" } },
            applying: {
              meta: { quiet: true },
              invoke: {
                src: "apply",
                onDone: [{ guard: "more", target: "applying", reenter: true }, { target: "idle" }],
                onError: [
                  { guard: "resyncError", target: "#replica.needsResync", actions: "failed" },
                  { target: "retry", actions: "failed" },
                ],
              },
            },
            retry: { on: { SPOOLED: "applying" }, after: { retry: "applying" } },
          },
        },
      },
    },
    needsResync: {
      invoke: { src: "markResync", input: ({ context }) => context.error },
      on: { RESYNC: "resyncing" },
    },
    resyncing: {
      // One restore at a time: a request repeated while one runs joins it (the node answers so).
      on: { RESYNC: {} },
      initial: "waitingForMaster",
      states: {
        waitingForMaster: {
          entry: assign({ error: ({ context }) => (context.master ? null : { code: "NO_ACTIVE_MASTER", message: "no active master" }) }),
          always: { guard: "hasMaster", target: "restoring" },
        },
        restoring: {
          invoke: {
            src: "restore",
            input: ({ context }) => ({ master: context.master! }),
            onDone: { target: "#replica.streaming", actions: assign({ fresh: false, needsResync: false, error: null }) },
            onError: [
              { guard: "fresh", target: "backoff", actions: "failed" },
              { target: "#replica.needsResync", actions: "failed" },
            ],
          },
        },
        backoff: { after: { retry: "waitingForMaster" } },
      },
    },
  },
});

export type ReplicaActor = ActorRefFrom<typeof replicaMachine>;
