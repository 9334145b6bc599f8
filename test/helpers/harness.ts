/**
 * Runs a machine that talks to its parent (sendParent) under a small parent that records what
 * it receives, on XState's SimulatedClock.
 */
import { assign, createActor, createMachine, SimulatedClock, type AnyActorLogic, type AnyEventObject } from "xstate";

export interface Harness {
  clock: SimulatedClock;
  /** Events the child sent to its parent, oldest first. */
  received: AnyEventObject[];
  /** The machine under test (an XState actor ref). */
  child(): any;
  state(): string;
  /** Advances the simulated clock and lets promises settle. */
  advance(ms: number): Promise<void>;
  settle(): Promise<void>;
  stop(): void;
}

export function harness(logic: AnyActorLogic, input: unknown): Harness {
  const clock = new SimulatedClock();
  const received: AnyEventObject[] = [];
  const parent = createMachine({
    context: {},
    invoke: { id: "child", src: logic, input },
    on: { "*": { actions: assign(({ event }) => (received.push(event), {})) } },
  });
  const actor = createActor(parent, { clock });
  actor.start();
  const child = () => actor.getSnapshot().children.child as any;
  const settle = async () => {
    for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
  };
  return {
    clock,
    received,
    child,
    state: () => JSON.stringify(child().getSnapshot().value).replace(/"/g, ""),
    advance: async (ms: number) => {
      await settle();
      clock.increment(ms);
      await settle();
    },
    settle,
    stop: () => actor.stop(),
  };
}

/** A promise with its resolvers, for actors whose completion a test controls. */
export function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}
