/**
 * One subtask of a table sync task (one partition of one table), the seed's states:
 *
 *   INIT (assigned, no pack yet) -> RUNNING (first pack received) -> SUCCESS (mode 0: snapshot done)
 *   INIT | RUNNING -> REASSIGNING (its collector went offline) -> INIT (another collector)
 *   any -> FAILED (no collector within reassignWaitMs, or an unrecoverable error; not retried)
 *
 * A subtask resumed after a synctool restart starts directly in RUNNING. The machine decides; the
 * I/O (choosing a collector, one pack: fetch, write, save progress) is provided by the synctool.
 */
import { assign, fromPromise, setup, type ActorRefFrom } from "xstate";

/** A collector process: its node id and instance (a restarted collector is another instance). */
export interface CollectorRef {
  node: string;
  instance: string;
}

/** One step: a pack was written (data), the collector had nothing new (idle), or the snapshot is complete (done). */
export interface StepResult {
  kind: "data" | "idle" | "done";
  rows: number;
}

export interface SyncTaskInput {
  task: string;
  part: number;
  /** Progress was saved earlier: start in RUNNING. */
  resumed: boolean;
  /** Already complete (mode 0): start in SUCCESS. */
  done: boolean;
  rows: number;
  pollMs: number;
  retryMs: number;
  reassignWaitMs: number;
  /** Transient errors in a row before the collector is given up. */
  maxErrors: number;
}

/** What choosing a collector knows: the one given up last (excluded) and why it was given up. */
export interface ChooseInput {
  exclude: CollectorRef | null;
  why: string | null;
}

export type SyncTaskEvent = { type: "COLLECTOR_DOWN"; node: string; instance?: string };

export interface SyncTaskError {
  code: string;
  message: string;
}

/**
 * The collector is gone, standby, or cannot reach its replica, or its replica no longer holds the
 * subtask's position (SNAPSHOT_REQUIRED: another replica may still hold it): choose another.
 */
const LOST = new Set(["COLLECTOR_UNAVAILABLE", "NO_ACTIVE_MASTER", "SNAPSHOT_REQUIRED"]);
/** Errors no other collector or retry can mend. */
const FATAL = new Set([
  "NOT_FOUND",
  "SQL_ERROR",
  "SCHEMA_MISMATCH",
  "DESTINATION_UNWRITABLE",
  "SINK_TYPE_MISMATCH",
  "SINK_SCHEMA_CHANGED",
  "MALFORMED_MESSAGE",
  "USAGE",
  "INTERNAL",
]);

const errorOf = (event: unknown): SyncTaskError => {
  const e = (event as { error?: { code?: string; message?: string } }).error;
  return { code: e?.code ?? "INTERNAL", message: e?.message ?? String(e) };
};

interface Ctx extends SyncTaskInput {
  collector: CollectorRef | null;
  /** The collector given up last: not chosen again unless it restarted; and why. */
  lost: CollectorRef | null;
  lostWhy: string | null;
  errors: number;
  error: SyncTaskError | null;
}

type Output = { output: StepResult };
const outputOf = (event: unknown) => (event as Output).output;

export const syncTaskMachine = setup({
  types: { context: {} as Ctx, events: {} as SyncTaskEvent, input: {} as SyncTaskInput },
  actors: {
    /** An active collector whose replica holds the subtask's position; rejects NO_COLLECTOR. */
    choose: fromPromise<CollectorRef, ChooseInput>(async () => {
      throw new Error("choose not provided");
    }),
    /** Fetches one pack from the collector, writes it durably, saves the progress. */
    step: fromPromise<StepResult, { collector: CollectorRef }>(async () => ({ kind: "idle", rows: 0 })),
  },
  delays: {
    poll: ({ context }) => context.pollMs,
    retry: ({ context }) => context.retryMs,
    reassignWait: ({ context }) => context.reassignWaitMs,
  },
  guards: {
    done: ({ context }) => context.done,
    resumed: ({ context }) => context.resumed,
    hasCollector: ({ context }) => context.collector !== null,
    stepDone: ({ event }) => outputOf(event).kind === "done",
    stepIdle: ({ event }) => outputOf(event).kind === "idle",
    fatal: ({ event }) => FATAL.has(errorOf(event).code),
    lost: ({ context, event }) => LOST.has(errorOf(event).code) || context.errors + 1 >= context.maxErrors,
    ours: ({ context, event }) =>
      context.collector !== null &&
      event.node === context.collector.node &&
      (event.instance === undefined || event.instance === context.collector.instance),
  },
  actions: {
    assigned: assign({ collector: ({ event }) => outputOf(event) as unknown as CollectorRef, errors: 0 }),
    stepped: assign({ rows: ({ context, event }) => context.rows + outputOf(event).rows, errors: 0, error: null }),
    transient: assign({ errors: ({ context }) => context.errors + 1, error: ({ event }) => errorOf(event) }),
    failed: assign({ error: ({ event }) => errorOf(event) }),
    giveUp: assign({
      lost: ({ context }) => context.collector,
      lostWhy: ({ event }) => errorOf(event).message,
      collector: null,
      errors: 0,
      error: ({ event }) => errorOf(event),
    }),
    down: assign({
      lost: ({ context }) => context.collector,
      lostWhy: ({ context }) => `collector ${context.collector?.node} went offline`,
      collector: null,
      errors: 0,
      error: ({ context }) => ({ code: "COLLECTOR_UNAVAILABLE", message: `collector ${context.collector?.node} went offline` }),
    }),
  },
}).createMachine({
  id: "syncTask",
  context: ({ input }) => ({ ...input, collector: null, lost: null, lostWhy: null, errors: 0, error: null }),
  initial: "boot",
  states: {
    boot: {
      always: [{ guard: "done", target: "success" }, { guard: "resumed", target: "running" }, { target: "init" }],
    },
    init: {
      on: { COLLECTOR_DOWN: { guard: "ours", target: "reassigning", actions: "down" } },
      initial: "start",
      states: {
        start: { always: [{ guard: "hasCollector", target: "pulling" }, { target: "choosing" }] },
        choosing: choosing("#syncTask.init.pulling"),
        pulling: { invoke: pullStep("#syncTask.init.backoff") },
        backoff: { after: { retry: "pulling" } },
      },
    },
    running: {
      on: { COLLECTOR_DOWN: { guard: "ours", target: "reassigning", actions: "down" } },
      initial: "start",
      states: {
        start: { always: [{ guard: "hasCollector", target: "pulling" }, { target: "choosing" }] },
        choosing: choosing("#syncTask.running.pulling"),
        pulling: { invoke: pullStep("#syncTask.running.backoff") },
        /** Caught up: ask again after pollMs. */
        waiting: { after: { poll: "pulling" } },
        backoff: { after: { retry: "pulling" } },
      },
    },
    /** Its collector went offline: another is chosen, on any host whose replica holds the position. */
    reassigning: {
      initial: "choosing",
      states: { choosing: choosing("#syncTask.init") },
    },
    success: { type: "final" },
    failed: { type: "final" },
  },
});

/** Choosing a collector: retried every retryMs, FAILED after reassignWaitMs without one. */
function choosing(then: string) {
  return {
    after: { reassignWait: { target: "#syncTask.failed" } },
    initial: "trying" as const,
    states: {
      trying: {
        invoke: {
          src: "choose" as const,
          input: ({ context }: { context: Ctx }): ChooseInput => ({ exclude: context.lost, why: context.lostWhy }),
          onDone: { target: then, actions: "assigned" as const },
          onError: { target: "pausing", actions: "failed" as const },
        },
      },
      pausing: { after: { retry: "trying" } },
    },
  };
}

/** A step that failed: FAILED when unrecoverable, REASSIGNING when the collector is lost, else retried. */
/** One pull of a pack from the collector; after the first pack a subtask is RUNNING. */
function pullStep(backoff: string) {
  return {
    src: "step" as const,
    input: ({ context }: { context: Ctx }) => ({ collector: context.collector! }),
    onDone: [
      { guard: "stepDone" as const, target: "#syncTask.success", actions: "stepped" as const },
      { guard: "stepIdle" as const, target: "#syncTask.running.waiting", actions: "stepped" as const },
      { target: "#syncTask.running.pulling", reenter: true, actions: "stepped" as const },
    ],
    onError: stepErrors(backoff),
  };
}

function stepErrors(backoff: string) {
  return [
    { guard: "fatal" as const, target: "#syncTask.failed", actions: "failed" as const },
    { guard: "lost" as const, target: "#syncTask.reassigning", actions: "giveUp" as const },
    { target: backoff, actions: "transient" as const },
  ];
}

export type SyncTaskActor = ActorRefFrom<typeof syncTaskMachine>;

/** The seed's state names: INIT, RUNNING, REASSIGNING, SUCCESS, FAILED. */
export function syncTaskState(value: unknown): string {
  const top = typeof value === "string" ? value : Object.keys(value as object)[0];
  return top === "boot" ? "INIT" : top.toUpperCase();
}
