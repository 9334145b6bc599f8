/**
 * The master's sequencer: reads committed changes in commit order, gives each batch the next
 * LSN and spools it. When the repository becomes unavailable, or its own data directory refuses
 * writes (a full disk), it pauses, says why, and probes until both are back, then resumes by
 * itself: the changes wait, captured, in the repository meanwhile.
 */
import { assign, fromCallback, fromPromise, sendParent, setup } from "xstate";

export interface SequencerInput {
  intervalMs: number;
  retryMs: number;
}

export type SequencerEvent = { type: "KICK" };

/** Outages that pass by themselves: a cycle failing with one pauses the sequencer instead of retrying at once. */
export const OUTAGE_CODES: ReadonlySet<string> = new Set(["REPO_UNAVAILABLE", "DATA_DIR_UNWRITABLE"]);

export type SequencerParentEvent =
  | { type: "REPO_DOWN"; code: string; message: string }
  | { type: "REPO_UP" };

export interface Ctx extends SequencerInput {
  kicked: boolean;
  down: { code: string; message: string } | null;
}

export const sequencerMachine = setup({
  types: { context: {} as Ctx, events: {} as SequencerEvent, input: {} as SequencerInput },
  actors: {
    /** One capture cycle; resolves to the number of batches written. */
    capture: fromPromise<number, void>(async () => 0),
    /** Resolves when the repository is usable and the data directory writable again. */
    probe: fromPromise<void, void>(async () => {}),
    /** While idle: sends KICK when there is something to capture (it polls the change table's position). */
    watch: fromCallback<SequencerEvent, { intervalMs: number }>(() => () => {}),
  },
  delays: {
    retry: ({ context }) => context.retryMs,
  },
  guards: {
    kicked: ({ context }) => context.kicked,
    unavailable: ({ event }) => OUTAGE_CODES.has((event as { error?: { code?: string } }).error?.code ?? ""),
  },
}).createMachine({
  id: "sequencer",
  context: ({ input }) => ({ ...input, kicked: false, down: null }),
  on: { KICK: { actions: assign({ kicked: true }) } },
  initial: "idle",
  states: {
    /** Nothing to capture: no transitions at all until the watch or a SQL request kicks. */
    idle: {
      meta: { quiet: true },
      always: { guard: "kicked", target: "capturing" },
      invoke: { src: "watch", input: ({ context }) => ({ intervalMs: context.intervalMs }) },
    },
    capturing: {
      meta: { quiet: true },
      entry: assign({ kicked: false }),
      invoke: {
        src: "capture",
        onDone: "idle",
        onError: [
          {
            guard: "unavailable",
            target: "paused",
            actions: assign({
              down: ({ event }) => {
                const e = event.error as { code: string; message: string };
                return { code: e.code, message: e.message };
              },
            }),
          },
          { target: "idle" },
        ],
      },
    },
    paused: {
      entry: sendParent(({ context }) => ({ type: "REPO_DOWN" as const, ...context.down! })),
      after: { retry: "probing" },
    },
    probing: {
      invoke: {
        src: "probe",
        onDone: { target: "idle", actions: [assign({ down: null }), sendParent({ type: "REPO_UP" })] },
        onError: "paused",
      },
    },
  },
});
