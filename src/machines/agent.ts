/**
 * A process that does its work only while it holds a lease (a collector: `collector.<host>`; the
 * synctool: `synctool`); the others of its kind wait as standbys and take over when the holder's
 * lease expires. standby -> active (work runs) -> fenced (work stopped until the lease is renewed)
 * -> active, or standby when the lease is lost (and the process becomes a candidate again).
 */
import { assign, fromCallback, sendTo, setup, type ActorRefFrom, type AnyActorLogic } from "xstate";
import type { LeaseInput, LeaseParentEvent, LeaseValue } from "./lease.js";

export interface AgentInput {
  /** The lease input; `wants` is forced on: every agent is a candidate. */
  lease: LeaseInput;
}

export type AgentEvent = LeaseParentEvent | { type: "STOP" };

interface Ctx extends AgentInput {
  epoch: number;
  holder: LeaseValue | null;
}

export const agentMachine = setup({
  types: { context: {} as Ctx, events: {} as AgentEvent, input: {} as AgentInput },
  actors: {
    lease: {} as AnyActorLogic,
    heartbeat: fromCallback(() => () => {}),
    /** The role's work, while the lease is held. */
    work: fromCallback(() => () => {}),
  },
  actions: {
    /** Losing the lease ends the lease machine's wish to hold it; an agent stays a candidate. */
    candidate: sendTo("lease", { type: "ACQUIRE" }),
  },
}).createMachine({
  id: "agent",
  context: ({ input }) => ({ lease: { ...input.lease, wants: true }, epoch: 0, holder: null }),
  invoke: [
    { id: "lease", src: "lease", input: ({ context }: { context: Ctx }) => context.lease },
    { id: "heartbeat", src: "heartbeat" },
  ],
  on: {
    LEASE_SEEN: { actions: assign({ holder: ({ event }) => event.holder }) },
    STOP: ".stopped",
  },
  initial: "standby",
  states: {
    standby: {
      on: {
        LEASE_HELD: { target: "active", actions: assign({ epoch: ({ event }) => event.epoch }) },
        LEASE_LOST: { actions: "candidate" },
      },
    },
    active: {
      invoke: { id: "work", src: "work" },
      on: {
        LEASE_FENCED: "fenced",
        LEASE_LOST: { target: "standby", actions: ["candidate", assign({ holder: ({ event }) => event.holder })] },
      },
    },
    /** Not renewed in time: no work until the lease is renewed (active) or lost (standby). */
    fenced: {
      on: {
        LEASE_HELD: "active",
        LEASE_LOST: { target: "standby", actions: ["candidate", assign({ holder: ({ event }) => event.holder })] },
      },
    },
    /** Work stopped and the lease released, so a standby takes over at once. */
    stopped: { entry: sendTo("lease", { type: "RELEASE" }) },
  },
});

export type AgentActor = ActorRefFrom<typeof agentMachine>;
