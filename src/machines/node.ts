/**
 * A node (master or slave process): the role it plays follows the master lease.
 * starting -> standby (replica) -> promoting -> active (sequencer, SQL and batch service)
 * -> fenced -> active again or demoting -> standby. Losing the lease demotes it.
 */
import { assign, fromCallback, fromPromise, sendTo, setup, type ActorRefFrom, type AnyActorLogic } from "xstate";
import type { LeaseInput, LeaseParentEvent, LeaseValue } from "./lease.js";
import type { MasterRef, ReplicaEvent, ReplicaInput } from "./replica.js";
import type { SequencerInput, SequencerParentEvent } from "./sequencer.js";

export interface NodeInput {
  node: string;
  /** Inputs of the child machines; the lease's `wants` is true for the designated master. */
  lease: LeaseInput;
  replica: ReplicaInput;
  sequencer: SequencerInput;
}

export type NodeEvent =
  | LeaseParentEvent
  | SequencerParentEvent
  | { type: "NOTIFY"; node: string; epoch: number; lsn: number; ack?: boolean }
  | { type: "PUSH"; node: string; epoch: number; lsn: number }
  | { type: "RESYNC" }
  | { type: "PROMOTE" }
  | { type: "CANCEL_PROMOTE" }
  | { type: "KICK" }
  | { type: "STOP" };

interface Ctx extends NodeInput {
  holder: LeaseValue | null;
  holderLive: boolean;
  epoch: number;
  /** The lease was taken while the start-up demote ran (a repository that is slow to open). */
  heldAtStart: boolean;
  repoDown: { code: string; message: string } | null;
}

const masterOf = (ctx: Ctx): MasterRef | null =>
  ctx.holder && ctx.holderLive && ctx.holder.node !== ctx.node ? { node: ctx.holder.node, epoch: ctx.holder.epoch } : null;

export const nodeMachine = setup({
  types: { context: {} as Ctx, events: {} as NodeEvent, input: {} as NodeInput },
  actors: {
    lease: {} as AnyActorLogic,
    replica: {} as AnyActorLogic,
    sequencer: {} as AnyActorLogic,
    /** SQL, pull and snapshot services and the heartbeat-table writer, while active. */
    masterServices: fromCallback(() => () => {}),
    /** Applies what is spooled, installs capture, records the epoch start. */
    promote: fromPromise<void, { epoch: number }>(async () => {}),
    /** Removes capture (replicas never capture); tells whether this node must resync first. */
    demote: fromPromise<{ needsResync: boolean; fresh: boolean }, { holder: LeaseValue | null }>(async () => ({ needsResync: false, fresh: false })),
    /** Heartbeats and the members bucket, in every state. */
    heartbeat: fromCallback(() => () => {}),
  },
  guards: {
    heldAtStart: ({ context }) => context.heldAtStart,
  },
  actions: {
    tellReplicaMaster: sendTo("replica", ({ context }): ReplicaEvent => ({ type: "MASTER", master: masterOf(context) })),
    sawLease: assign({
      holder: ({ event }) => (event as Extract<NodeEvent, { type: "LEASE_SEEN" }>).holder,
      holderLive: ({ event }) => (event as Extract<NodeEvent, { type: "LEASE_SEEN" }>).live,
    }),
    /** The replica's input is what the node knows now, not what it knew when the process started. */
    afterDemote: assign({
      replica: ({ context, event }) => {
        const out = (event as unknown as { output: { needsResync: boolean; fresh: boolean } }).output;
        return { ...context.replica, needsResync: context.replica.needsResync || out.needsResync, fresh: out.fresh };
      },
    }),
    lostTo: assign({ holder: ({ event }) => (event as Extract<NodeEvent, { type: "LEASE_LOST" }>).holder }),
  },
}).createMachine({
  id: "node",
  context: ({ input }) => ({ ...input, holder: null, holderLive: false, epoch: 0, heldAtStart: false, repoDown: null }),
  invoke: [
    { id: "lease", src: "lease", input: ({ context }: { context: Ctx }) => context.lease },
    { id: "heartbeat", src: "heartbeat" },
  ],
  on: {
    LEASE_SEEN: { actions: "sawLease" },
    PROMOTE: { actions: sendTo("lease", { type: "ACQUIRE" }) },
    STOP: ".stopped",
  },
  initial: "starting",
  states: {
    starting: {
      invoke: {
        src: "demote",
        input: () => ({ holder: null }),
        onDone: [
          { guard: "heldAtStart", target: "promoting", actions: "afterDemote" },
          { target: "standby", actions: "afterDemote" },
        ],
        onError: "standby",
      },
      on: {
        LEASE_HELD: { actions: assign({ epoch: ({ event }) => event.epoch, heldAtStart: true }) },
        LEASE_LOST: { actions: assign({ heldAtStart: false }) },
        LEASE_FENCED: { actions: assign({ heldAtStart: false }) },
      },
      exit: assign({ heldAtStart: false }),
    },
    standby: {
      invoke: { id: "replica", src: "replica", input: ({ context }: { context: Ctx }) => context.replica },
      entry: "tellReplicaMaster",
      on: {
        LEASE_SEEN: { actions: ["sawLease", "tellReplicaMaster"] },
        NOTIFY: { actions: sendTo("replica", ({ event }) => event) },
        PUSH: { actions: sendTo("replica", ({ event }) => event) },
        RESYNC: { actions: sendTo("replica", { type: "RESYNC" }) },
        CANCEL_PROMOTE: { actions: sendTo("lease", { type: "RELEASE" }) },
        LEASE_HELD: { target: "promoting", actions: assign({ epoch: ({ event }) => event.epoch }) },
      },
    },
    promoting: {
      invoke: {
        src: "promote",
        input: ({ context }) => ({ epoch: context.epoch }),
        onDone: "active",
        onError: { target: "standby", actions: sendTo("lease", { type: "RELEASE" }) },
      },
      on: { LEASE_LOST: { target: "demoting", actions: "lostTo" }, LEASE_FENCED: "fenced" },
    },
    active: {
      invoke: [
        { id: "sequencer", src: "sequencer", input: ({ context }: { context: Ctx }) => context.sequencer },
        { id: "masterServices", src: "masterServices" },
      ],
      exit: assign({ repoDown: null }),
      on: {
        KICK: { actions: sendTo("sequencer", { type: "KICK" }) },
        LEASE_FENCED: "fenced",
        LEASE_LOST: { target: "demoting", actions: "lostTo" },
        REPO_DOWN: { actions: assign({ repoDown: ({ event }) => ({ code: event.code, message: event.message }) }) },
        REPO_UP: { actions: assign({ repoDown: null }) },
      },
    },
    /** Not renewed in time: no writes, no batches, until the lease is renewed or lost. */
    fenced: {
      on: {
        LEASE_HELD: "active",
        LEASE_LOST: { target: "demoting", actions: "lostTo" },
      },
    },
    demoting: {
      invoke: {
        src: "demote",
        input: ({ context }) => ({ holder: context.holder }),
        onDone: { target: "standby", actions: "afterDemote" },
        onError: "standby",
      },
    },
    stopped: { type: "final" },
  },
});

export type NodeActor = ActorRefFrom<typeof nodeMachine>;
