/**
 * The watchdog's failover decision (Unity's watchdog, Data Mover's HA monitors):
 * monitoring -> master lease expired (or its holder gone) -> wait failover.waitMs while watching
 * the prerequisites -> ask the members for their positions now -> choose the candidate -> check ->
 * promote -> monitoring. Only the watchdog that holds the
 * `watchdog` lease decides; the others stand by.
 *
 * Prerequisites (Unity's sum, default 7):
 *   1  the candidate reaches every member that was connected before the loss;
 *   2  no member reports contact from the old master during the wait;
 *   4  no member's applied position and no change table advanced during the wait.
 * With waitMs = 0 there is no wait: 2 and 4 are skipped, with a warning.
 *
 * While monitoring, with compare.intervalMs set, it also runs continuous verification (verify.ts):
 * a replica found different from the master is marked diverged, and a failover passes it over for
 * a clean replica that holds as much.
 */
import { assign, emit, enqueueActions, fromCallback, fromPromise, setup, type ActorRefFrom, type AnyActorLogic } from "xstate";
import type { LeaseInput, LeaseParentEvent } from "./lease.js";
import { describeMark, verifierMachine, verifyOutcome, type AlertEmitted, type DivergedMark, type VerifierParentEvent } from "./verify.js";

export interface MemberView {
  node: string;
  role: string;
  /** Started as the designated standby (--designated standby). */
  standby?: boolean;
  state: string;
  replica?: string | null;
  appliedLsn: number;
  spooledLsn: number;
  changeSeq: number;
  needsResync: boolean;
  /** Repairing the rows of batches it dropped at a rejoin: it refuses promotion until done. */
  rejoining?: boolean;
  /** The last time (member's clock) it heard from a master, and which. */
  masterContact?: { node: string; at: number } | null;
  alive: boolean;
}

export interface WatchdogInput {
  /** Our own `watchdog` lease, and an observer of the `master` lease. */
  lease: LeaseInput;
  masterLease: LeaseInput;
  waitMs: number;
  prerequisites: number;
  maxAutomatic: number;
  windowMs: number;
  retryMs: number;
  /** compare.intervalMs: the pause between continuous compares (0: none). */
  verifyMs: number;
}

export interface FailoverState {
  /** Wall-clock times of automatic failovers. */
  history: number[];
  /** How many of them fall within failover.windowMs of now (computed by whoever has a clock). */
  recent: number;
  enabled: boolean;
}

export interface Check {
  bit: 1 | 2 | 4;
  ok: boolean | null;
  detail: string;
}

export type WatchdogEvent =
  | LeaseParentEvent
  | { type: "MEMBERS"; members: MemberView[] }
  | { type: "FAILOVER_STATE"; state: FailoverState }
  /** Every diverged mark recorded (the KV records), whenever they change. */
  | { type: "DIVERGED"; marks: DivergedMark[] }
  | VerifierParentEvent;

/** What the machine reports; the I/O layer turns each into an alert. */
export type WatchdogEmitted =
  | AlertEmitted
  | { type: "failover"; state: FailoverState }
  /** Marks to record (new or changed) and replicas whose mark to clear. */
  | { type: "marks"; diverged: DivergedMark[]; clean: string[] };

interface Baseline {
  applied: Record<string, number>;
  changeSeq: Record<string, number>;
  contact: Record<string, number>;
}

interface Ctx extends WatchdogInput, FailoverState {
  members: MemberView[];
  lost: { node: string; epoch: number; gone: boolean } | null;
  /** Members alive when the master's lease expired (without the master). */
  connectedBefore: string[];
  baseline: Baseline | null;
  /** Prerequisite 2 evidence gathered during the wait. */
  contacts: string[];
  candidate: string | null;
  checks: Check[];
  diverged: Record<string, DivergedMark>;
  /** The last continuous compare: when it ended, and at which LSN of which master. */
  verified: { at: number; lsn: number; master: string } | null;
}

const nodeRoles = new Set(["master", "slave"]);
/** A heartbeat period and a half: how long positions reported at the loss may still be catching up. */
export const SETTLE_MS = 1500;

export interface Choice {
  candidate: MemberView | null;
  /** Diverged replicas that ranked above the candidate and were passed over for it. */
  passedOver: string[];
  /** A diverged candidate's best clean rival, which holds less (null: no clean replica is eligible). */
  cleanBehind: MemberView | null;
}

/**
 * Most advanced (what it durably holds), then the designated standby, then the lowest id; a
 * replica marked diverged is passed over for a clean one that holds as much. A clean one that
 * holds less is not preferred: promoting it would drop batches the diverged one holds (written
 * and, in synchronous mode, acknowledged), while a diverged replica's few known rows can be
 * repaired. With no clean replica eligible, a diverged one is promoted: availability first.
 */
export function chooseCandidate(members: MemberView[], oldMaster: string, diverged: Record<string, unknown> = {}): Choice {
  const eligible = members.filter(
    (m) => m.alive && nodeRoles.has(m.role) && m.node !== oldMaster && m.state === "standby" && !m.needsResync && !m.rejoining,
  );
  eligible.sort(
    (a, b) =>
      b.spooledLsn - a.spooledLsn ||
      b.appliedLsn - a.appliedLsn ||
      Number(Boolean(b.standby)) - Number(Boolean(a.standby)) ||
      a.node.localeCompare(b.node),
  );
  const best = eligible[0] ?? null;
  if (!best || !(best.node in diverged)) return { candidate: best, passedOver: [], cleanBehind: null };
  const cleanIndex = eligible.findIndex((m) => !(m.node in diverged));
  const clean = cleanIndex < 0 ? null : eligible[cleanIndex];
  if (clean && clean.spooledLsn >= best.spooledLsn) return { candidate: clean, passedOver: eligible.slice(0, cleanIndex).map((m) => m.node), cleanBehind: null };
  return { candidate: best, passedOver: [], cleanBehind: clean };
}

/** The alerts of a choice that a diverged mark changed, or that fell on a diverged replica. */
function choiceAlerts(choice: Choice, diverged: Record<string, DivergedMark>): WatchdogEmitted[] {
  const c = choice.candidate;
  if (!c) return [];
  if (choice.passedOver.length > 0) {
    const why = choice.passedOver.map((n) => `${n} (${describeMark(diverged[n])}, found at LSN ${diverged[n].lsn})`).join("; ");
    return [{ type: "alert", kind: "diverged-passed-over", severity: "warning", message: `failover candidate ${c.node} chosen over diverged ${why}`, data: { candidate: c.node, passedOver: choice.passedOver } }];
  }
  if (!(c.node in diverged)) return [];
  const behind = choice.cleanBehind;
  const why = behind
    ? `the clean replica ${behind.node} holds LSN ${behind.spooledLsn}, less than its ${c.spooledLsn}, and promoting it would drop those batches`
    : "no clean replica is eligible, and the cluster stays available";
  return [
    {
      type: "alert",
      kind: "diverged-promoted",
      severity: "critical",
      message: `failover candidate ${c.node} has diverged from the master (${describeMark(diverged[c.node])}) and is chosen anyway: ${why}; those rows become the master's`,
      data: { candidate: c.node, cleanBehind: behind?.node ?? null, mark: diverged[c.node] },
    },
  ];
}

function baselineOf(members: MemberView[]): Baseline {
  const b: Baseline = { applied: {}, changeSeq: {}, contact: {} };
  for (const m of members) {
    b.applied[m.node] = m.appliedLsn;
    b.changeSeq[m.node] = m.changeSeq;
    b.contact[m.node] = m.masterContact?.at ?? 0;
  }
  return b;
}

/** Prerequisites 2 and 4 from what was seen during the wait (1 needs I/O: see the `reach` actor). */
export function waitChecks(ctx: Pick<Ctx, "prerequisites" | "waitMs" | "baseline" | "members" | "contacts">): Check[] {
  const out: Check[] = [];
  const on = (bit: number) => (ctx.prerequisites & bit) !== 0;
  if (on(2)) {
    if (ctx.waitMs === 0) out.push({ bit: 2, ok: null, detail: "skipped: failover.waitMs is 0" });
    else if (ctx.contacts.length > 0) out.push({ bit: 2, ok: false, detail: `contact from the old master reported by ${ctx.contacts.join(", ")} during the wait` });
    else out.push({ bit: 2, ok: true, detail: "no member reported contact from the old master during the wait" });
  }
  if (on(4)) {
    if (ctx.waitMs === 0) out.push({ bit: 4, ok: null, detail: "skipped: failover.waitMs is 0" });
    else {
      const moved: string[] = [];
      for (const m of ctx.members) {
        const b = ctx.baseline;
        if (!b || !(m.node in b.applied)) continue;
        if (m.appliedLsn > b.applied[m.node]) moved.push(`${m.node} applied ${b.applied[m.node]} -> ${m.appliedLsn}`);
        if (m.changeSeq > b.changeSeq[m.node]) moved.push(`${m.node} change table ${b.changeSeq[m.node]} -> ${m.changeSeq}`);
      }
      out.push(
        moved.length
          ? { bit: 4, ok: false, detail: `positions advanced during the wait (${moved.join("; ")})` }
          : { bit: 4, ok: true, detail: "no applied position or change table advanced during the wait" },
      );
    }
  }
  return out;
}

export const watchdogMachine = setup({
  types: {
    context: {} as Ctx,
    events: {} as WatchdogEvent,
    input: {} as WatchdogInput,
    emitted: {} as WatchdogEmitted,
  },
  actors: {
    lease: {} as AnyActorLogic,
    masterLease: {} as AnyActorLogic,
    /** Heartbeats of every member, as MEMBERS events. */
    members: fromCallback(() => () => {}),
    /** The shared failover count and switch, as FAILOVER_STATE events. */
    failoverState: fromCallback(() => () => {}),
    /** The recorded diverged marks, as DIVERGED events. */
    divergedMarks: fromCallback(() => () => {}),
    /**
     * Asks the given members for their status now: heartbeats are up to a second old, and a holder
     * found gone is lost well before the last acknowledged batch shows in them.
     */
    freshen: fromPromise<MemberView[], { members: string[] }>(async () => []),
    /** Prerequisite 1: asks the candidate to reach each member; resolves to the unreachable ones. */
    reach: fromPromise<string[], { candidate: string; members: string[] }>(async () => []),
    /** Asks the candidate to take the lease; resolves once it holds it (with its epoch and the time). */
    promote: fromPromise<{ epoch: number; at: number }, { candidate: string; oldMaster: string }>(async () => ({ epoch: 0, at: 0 })),
    verifier: verifierMachine,
  },
  delays: {
    wait: ({ context }) => context.waitMs,
    settle: ({ context }) => Math.min(SETTLE_MS, Math.floor(context.waitMs / 2)),
    retry: ({ context }) => context.retryMs,
  },
  guards: {
    expired: ({ context }) => context.lost !== null,
    limitReached: ({ context }) => context.lost !== null && (!context.enabled || context.recent >= context.maxAutomatic),
    ownLease: ({ event }) => "key" in event && event.key === "watchdog",
    masterExpired: ({ event }) => event.type === "LEASE_SEEN" && event.key === "master" && !event.live && event.holder !== null,
    masterLive: ({ event }) => event.type === "LEASE_SEEN" && event.key === "master" && event.live,
    /** Someone other than the lost master holds a live lease: no failover is needed. */
    otherHolder: ({ context, event }) =>
      event.type === "LEASE_SEEN" && event.key === "master" && event.live && event.holder?.node !== context.lost?.node,
    /** The lost master itself renewed: it was alive after all. */
    masterBack: ({ context, event }) =>
      event.type === "LEASE_SEEN" && event.key === "master" && event.live && event.holder?.node === context.lost?.node,
    noWait: ({ context }) => context.waitMs === 0,
    hasCandidate: ({ context }) => context.candidate !== null,
    checksPass: ({ context }) => context.checks.every((c) => c.ok !== false),
    skipReach: ({ context }) => (context.prerequisites & 1) === 0,
  },
  actions: {
    members: assign(({ event }) => (event.type === "MEMBERS" ? { members: event.members } : {})),
    noteContacts: assign(({ context, event }) => {
      if (event.type !== "MEMBERS" || !context.lost || !context.baseline) return {};
      const old = context.lost.node;
      const seen = event.members
        .filter((m) => m.node !== old && m.masterContact?.node === old && (m.masterContact.at ?? 0) > (context.baseline!.contact[m.node] ?? 0))
        .map((m) => m.node);
      return { contacts: [...new Set([...context.contacts, ...seen])] };
    }),
    lost: assign(({ context, event }) => {
      if (event.type !== "LEASE_SEEN" || !event.holder) return {};
      const connected = context.members.filter((m) => m.alive && m.node !== event.holder!.node).map((m) => m.node);
      return {
        lost: { node: event.holder.node, epoch: event.holder.epoch, gone: event.gone === true },
        connectedBefore: connected,
        baseline: baselineOf(context.members),
        contacts: [],
        candidate: null,
        checks: [],
      };
    }),
    live: assign({ lost: null, baseline: null, contacts: [], candidate: null, checks: [] }),
    rebase: assign(({ context }) => ({ baseline: baselineOf(context.members) })),
    freshened: assign(({ context, event }) => {
      const fresh = (event as unknown as { output: MemberView[] }).output;
      return { members: context.members.map((m) => fresh.find((f) => f.node === m.node) ?? m) };
    }),
    choose: enqueueActions(({ context, enqueue }) => {
      const choice = chooseCandidate(context.members, context.lost!.node, context.diverged);
      enqueue.assign({ candidate: choice.candidate?.node ?? null });
      for (const a of choiceAlerts(choice, context.diverged)) enqueue.emit(a);
    }),
    /** A continuous compare's report: mark, clear and alert what changed. */
    verified: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== "VERIFIED") return;
      const o = verifyOutcome(event.report, context.diverged, event.at);
      enqueue.assign({ diverged: o.diverged, verified: { at: event.at, lsn: event.report.lsn, master: event.report.master } });
      for (const a of o.alerts) enqueue.emit(a);
      if (o.changed.diverged.length + o.changed.clean.length > 0) enqueue.emit({ type: "marks", ...o.changed });
    }),
    failoverState: assign(({ event }) =>
      event.type === "FAILOVER_STATE" ? { history: event.state.history, recent: event.state.recent, enabled: event.state.enabled } : {},
    ),
  },
}).createMachine({
  id: "watchdog",
  context: ({ input }) => ({
    ...input,
    history: [],
    recent: 0,
    enabled: true,
    members: [],
    lost: null,
    connectedBefore: [],
    baseline: null,
    contacts: [],
    candidate: null,
    checks: [],
    diverged: {},
    verified: null,
  }),
  invoke: [
    { id: "lease", src: "lease", input: ({ context }: { context: Ctx }) => context.lease },
    { id: "masterLease", src: "masterLease", input: ({ context }: { context: Ctx }) => context.masterLease },
    { src: "members" },
    { src: "failoverState" },
    { src: "divergedMarks" },
  ],
  on: {
    MEMBERS: { actions: "members" },
    FAILOVER_STATE: { actions: "failoverState" },
    DIVERGED: { actions: assign(({ event }) => ({ diverged: Object.fromEntries(event.marks.map((m) => [m.node, m])) })) },
    VERIFIED: { actions: "verified" },
    VERIFY_FAILED: {
      actions: emit(({ context, event }) => ({
        type: "alert" as const,
        kind: "verify-failed",
        severity: "warning" as const,
        message: `continuous verification failed: ${event.message}; the next compare starts in ${context.verifyMs} ms`,
      })),
    },
    LEASE_SEEN: [
      { guard: "masterExpired", actions: "lost" },
      { guard: "masterLive", actions: "live" },
    ],
    // Our own lease: fenced or lost, another watchdog decides from now on.
    LEASE_FENCED: { guard: "ownLease", target: ".standby" },
    LEASE_LOST: { guard: "ownLease", target: ".standby" },
  },
  initial: "standby",
  states: {
    /** Another watchdog holds the `watchdog` lease. */
    standby: { on: { LEASE_HELD: { guard: "ownLease", target: "monitoring" } } },
    monitoring: {
      // Leaving monitoring (a failover, our lease lost) stops a compare under way.
      invoke: { src: "verifier", input: ({ context }) => ({ intervalMs: context.verifyMs }) },
      always: [
        { guard: "limitReached", target: "limited" },
        { guard: "expired", target: "failover" },
      ],
    },
    failover: {
      entry: emit(({ context }) => ({
        type: "alert" as const,
        kind: "master-lease-lost",
        severity: "critical" as const,
        message: `master ${context.lost!.node} (epoch ${context.lost!.epoch}) ${context.lost!.gone ? "has no connection to NATS (crashed)" : "lost its lease"}; failover considered`,
        data: { master: context.lost!.node, epoch: context.lost!.epoch, gone: context.lost!.gone, connected: context.connectedBefore },
      })),
      on: {
        LEASE_SEEN: [
          {
            guard: "masterBack",
            target: "monitoring",
            actions: [
              emit(({ context }) => ({
                type: "alert" as const,
                kind: "failover-cancelled",
                severity: "info" as const,
                message: `failover cancelled: ${context.lost?.node ?? "the master"} renewed its lease`,
              })),
              "live",
            ],
          },
          // Anything else about the master lease (a new holder, our own promotion) is judged where it matters.
          { actions: [] },
        ],
      },
      initial: "waiting",
      states: {
        /**
         * The wait. Heartbeats arrive once a second, so positions reached just before the loss may be
         * reported a little later: the baseline for prerequisite 4 is refreshed until `settle` has passed.
         */
        waiting: {
          entry: emit(({ context }) =>
            context.waitMs === 0
              ? {
                  type: "alert" as const,
                  kind: "wait-skipped",
                  severity: "warning" as const,
                  message: "failover.waitMs is 0: no wait, prerequisites 2 and 4 are skipped",
                }
              : {
                  type: "alert" as const,
                  kind: "wait-started",
                  severity: "info" as const,
                  message: `waiting ${context.waitMs} ms before failover while checking prerequisites ${context.prerequisites}`,
                  data: { waitMs: context.waitMs, prerequisites: context.prerequisites },
                },
          ),
          initial: "settling",
          states: {
            settling: {
              on: { MEMBERS: { actions: ["members", "rebase"] } },
              after: { settle: "watching" },
            },
            watching: {
              on: { MEMBERS: { actions: ["members", "noteContacts"] } },
            },
          },
          on: {
            LEASE_SEEN: {
              guard: "otherHolder",
              target: "#watchdog.monitoring",
              actions: [
                "live",
                emit(({ event }) => ({
                  type: "alert" as const,
                  kind: "failover-cancelled",
                  severity: "info" as const,
                  message: `failover not needed: ${event.type === "LEASE_SEEN" ? event.holder?.node : "?"} holds the master lease`,
                })),
              ],
            },
          },
          always: { guard: "noWait", target: "freshening" },
          after: { wait: "freshening" },
        },
        freshening: {
          invoke: {
            src: "freshen",
            input: ({ context }) => ({
              members: context.members.filter((m) => m.alive && nodeRoles.has(m.role) && m.node !== context.lost!.node).map((m) => m.node),
            }),
            onDone: { target: "choosing", actions: "freshened" },
            onError: "choosing",
          },
        },
        choosing: {
          entry: "choose",
          always: [
            { guard: "hasCandidate", target: "reaching" },
            {
              target: "#watchdog.aborted",
              actions: assign({ checks: [{ bit: 1, ok: false, detail: "no candidate: no live, current slave to promote" }] }),
            },
          ],
        },
        reaching: {
          always: { guard: "skipReach", target: "deciding", actions: assign({ checks: [] }) },
          invoke: {
            src: "reach",
            input: ({ context }) => ({ candidate: context.candidate!, members: context.connectedBefore.filter((n) => n !== context.candidate) }),
            onDone: {
              target: "deciding",
              actions: assign({
                checks: ({ event, context }) => [
                  event.output.length
                    ? { bit: 1 as const, ok: false, detail: `${context.candidate} cannot reach ${event.output.join(", ")}` }
                    : { bit: 1 as const, ok: true, detail: `${context.candidate} reaches every member connected before the loss` },
                ],
              }),
            },
            onError: {
              target: "deciding",
              actions: assign({
                checks: ({ event, context }) => [
                  { bit: 1 as const, ok: false, detail: `${context.candidate} did not answer the reachability check: ${(event.error as Error)?.message}` },
                ],
              }),
            },
          },
        },
        deciding: {
          entry: [
            assign({ checks: ({ context }) => [...context.checks, ...waitChecks(context)] }),
            emit(({ context }) => ({
              type: "alert" as const,
              kind: "prerequisites",
              severity: context.checks.every((c) => c.ok !== false) ? ("info" as const) : ("critical" as const),
              message: `prerequisites for promoting ${context.candidate}: ${context.checks.map((c) => `${c.bit} ${c.ok === null ? "skipped" : c.ok ? "ok" : "FAILED"} (${c.detail})`).join("; ")}`,
              data: { candidate: context.candidate, checks: context.checks },
            })),
          ],
          always: [{ guard: "checksPass", target: "promoting" }, { target: "#watchdog.aborted" }],
        },
        promoting: {
          invoke: {
            src: "promote",
            input: ({ context }) => ({ candidate: context.candidate!, oldMaster: context.lost!.node }),
            onDone: {
              target: "#watchdog.monitoring",
              actions: [
                emit(({ context, event }) => ({
                  type: "alert" as const,
                  kind: "promoted",
                  severity: "warning" as const,
                  message: `failover: ${context.candidate} promoted with epoch ${event.output.epoch} (was ${context.lost!.node})`,
                  data: { candidate: context.candidate, oldMaster: context.lost!.node, epoch: event.output.epoch },
                })),
                assign(({ context, event }) => ({ history: [...context.history, event.output.at], recent: context.recent + 1, lost: null, baseline: null })),
                emit(({ context }) => ({ type: "failover" as const, state: { history: context.history, recent: context.recent, enabled: context.enabled } })),
              ],
            },
            onError: {
              target: "#watchdog.aborted",
              actions: assign({
                checks: ({ context, event }) => [...context.checks, { bit: 1 as const, ok: false, detail: `promotion of ${context.candidate} failed: ${(event.error as Error)?.message}` }],
              }),
            },
          },
        },
      },
    },
    /** A failed check or promotion: alert, then try again later while the lease stays expired. */
    aborted: {
      entry: emit(({ context }) => ({
        type: "alert" as const,
        kind: "failover-aborted",
        severity: "critical" as const,
        message: `failover aborted: ${context.checks.filter((c) => c.ok === false).map((c) => `prerequisite ${c.bit}: ${c.detail}`).join("; ") || "unknown"}`,
        data: { checks: context.checks, candidate: context.candidate },
      })),
      on: { LEASE_SEEN: [{ guard: "masterLive", target: "monitoring", actions: "live" }, { guard: "masterExpired", actions: "lost" }] },
      after: {
        retry: {
          target: "failover",
          // A member that stopped heartbeating since is gone, not cut off from the candidate: it no
          // longer counts among those the candidate must reach.
          actions: assign(({ context }) => ({
            baseline: baselineOf(context.members),
            contacts: [],
            connectedBefore: context.connectedBefore.filter((n) => context.members.some((m) => m.node === n && m.alive)),
          })),
        },
      },
    },
    /** maxAutomatic failovers in windowMs reached (or disabled): no automatic failover until `ferry failover reset`. */
    limited: {
      entry: emit(({ context }) => ({
        type: "alert" as const,
        kind: "failover-limit",
        severity: "critical" as const,
        message: `automatic failover is disabled (${context.history.length} failover(s) recorded, failover.maxAutomatic = ${context.maxAutomatic}); master ${context.lost?.node ?? "?"} is not failed over. Run: ferry failover reset`,
        data: { master: context.lost?.node, failovers: context.history.length },
      })),
      on: {
        FAILOVER_STATE: [
          { guard: ({ context, event }) => event.state.enabled && event.state.recent < context.maxAutomatic, target: "monitoring", actions: "failoverState" },
          { actions: "failoverState" },
        ],
        LEASE_SEEN: [{ guard: "masterLive", target: "monitoring", actions: "live" }, { guard: "masterExpired", actions: "lost" }],
      },
    },
  },
});

export type WatchdogActor = ActorRefFrom<typeof watchdogMachine>;
