/**
 * A watchdog process (`ferry start --role watchdog`): the failover machine with its I/O. It holds
 * the `watchdog` lease when active, observes the `master` lease on its own clock, follows every
 * member's heartbeat, and keeps the failover count in the leases bucket (key `failover`) so a
 * secondary that takes over knows how many automatic failovers already happened.
 */
import { createActor, fromCallback, fromPromise } from "xstate";
import type { Config } from "../config.js";
import { ClusterError, ConfigError } from "../errors.js";
import { exitOnActorError, inspectInto } from "../log.js";
import { decodeLease, LEASE_KEY, readFailoverState, subscribeHeartbeats, writeFailoverState } from "../nats/records.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import { watchdogMachine, type FailoverState, type MemberView, type WatchdogActor } from "../machines/watchdog.js";
import { Meta } from "../storage/meta.js";
import { bootProcess, processIdentity } from "./boot.js";
import { heartbeatLogic } from "./heartbeat.js";
import { leaseLogic } from "./lease.js";
import { LeaseClock } from "./runtime.js";
import { divergedLogic, verification } from "./verify.js";

const ALIVE_MS = 3000;

export async function startWatchdog(config: Config): Promise<{ actor: WatchdogActor; stop(): Promise<void> }> {
  const { id } = processIdentity(config);
  const designated = config.node.designated ?? "primary";
  if (designated === "standby") throw new ConfigError("node.designated", "a watchdog is primary or secondary");
  const boot = await bootProcess(config, { role: "watchdog" });
  const { rt, level } = boot;
  const { log, nc, subj, buckets } = rt;
  const meta = new Meta(level);
  const { ttlMs, safetyMarginMs } = config.lease;
  const f = config.failover;
  const requestTimeout = config.nats.requestTimeoutMs;
  const verify = verification(rt);
  /** Saves of the failover count under way, and begun in all: a read of the count is only as new as the last save. */
  let saving = 0;
  let saves = 0;

  const logic = watchdogMachine.provide({
    actors: {
      lease: leaseLogic(rt, buckets.leases, { key: LEASE_KEY.watchdog, clock: new LeaseClock(), epochs: { max: () => meta.maxEpoch(), raise: (e) => meta.raiseEpoch(e) } }),
      // An observer only: it never takes the master lease.
      masterLease: leaseLogic(rt, buckets.leases, { key: LEASE_KEY.master, clock: new LeaseClock(), epochs: { max: async () => 0, raise: async () => {} } }),
      members: fromCallback(({ sendBack }) => {
        const seen = new Map<string, { view: MemberView; at: number }>();
        const sub = subscribeHeartbeats(
          nc,
          subj,
          (h, at) => seen.set(h.node, { view: toView(h), at }),
          (subject) => log.warn({ subject }, "malformed heartbeat ignored"),
        );
        const t = setInterval(() => {
          const now = Date.now();
          sendBack({ type: "MEMBERS", members: [...seen.values()].map((s) => ({ ...s.view, alive: now - s.at < ALIVE_MS })) });
        }, 500);
        return () => {
          clearInterval(t);
          sub.unsubscribe();
        };
      }),
      failoverState: fromCallback(({ sendBack }) => {
        let stopped = false;
        const push = async () => {
          const seen = saves;
          const s = await readFailoverState(buckets.leases);
          const now = Date.now();
          const state: FailoverState = { history: s.history, enabled: s.enabled, recent: s.history.filter((t) => t > now - f.windowMs).length };
          // A read that overlapped the save of a failover may predate it: it would undo the count.
          if (!stopped && seen === saves && saving === 0) sendBack({ type: "FAILOVER_STATE", state });
        };
        void push().catch(() => {});
        const t = setInterval(() => void push().catch(() => {}), 1000);
        return () => {
          stopped = true;
          clearInterval(t);
        };
      }),
      freshen: fromPromise<MemberView[], { members: string[] }>(async ({ input }) => {
        const answers = await Promise.all(
          input.members.map((m) =>
            call<Record<string, unknown>>(nc, ENDPOINTS.ping, subj.ping(m), { from: id }, { timeoutMs: 500 }).then(
              (h) => ({ ...toView(h), alive: true }),
              () => null,
            ),
          ),
        );
        return answers.filter((v): v is MemberView => v !== null);
      }),
      reach: fromPromise<string[], { candidate: string; members: string[] }>(async ({ input }) => {
        const control = subj.node(input.candidate).control;
        const opts = { timeoutMs: requestTimeout + 1000, peer: input.candidate };
        return (await call<{ unreachable: string[] }>(nc, ENDPOINTS.control, control, { op: "reach", members: input.members, timeoutMs: 1000 }, opts)).unreachable;
      }),
      /**
       * Done when the candidate is the master: it took the lease and says it is active. A candidate
       * can take the lease and then find it may not be promoted (it releases the lease): that is a
       * failed promotion, and the failover tries again, not a master that will never come.
       */
      promote: fromPromise<{ epoch: number; at: number }, { candidate: string; oldMaster: string }>(async ({ input }) => {
        const control = subj.node(input.candidate).control;
        await call(nc, ENDPOINTS.control, control, { op: "promote" }, { timeoutMs: requestTimeout, peer: input.candidate });
        const deadline = Date.now() + 2 * ttlMs + requestTimeout;
        let taken: { epoch: number; at: number } | null = null;
        // A holder renews its lease well within ttlMs: a revision that stays longer is a candidate gone while it promoted.
        let renewed = { revision: -1, at: 0 };
        for (;;) {
          const e = await buckets.leases.get(LEASE_KEY.master);
          const v = e?.operation === "PUT" ? decodeLease(e.value) : null;
          if (e && e.revision !== renewed.revision) renewed = { revision: e.revision, at: Date.now() };
          const held = v !== null && v.node === input.candidate && !String(v.instance).startsWith("handover-") && Date.now() - renewed.at <= ttlMs;
          if (held && (taken === null || v.epoch === taken.epoch)) {
            taken ??= { epoch: v.epoch, at: Date.now() };
            const status = await call<Record<string, unknown>>(nc, ENDPOINTS.ping, subj.ping(input.candidate), { from: id }, { timeoutMs: 500 }).catch(() => null);
            if (status?.state === "active") return taken;
          } else if (taken !== null) {
            throw new ClusterError("NOT_MASTER", `${input.candidate} took the master lease (epoch ${taken.epoch}) but did not become master`);
          } else if (Date.now() > deadline) {
            void call(nc, ENDPOINTS.control, control, { op: "promote-cancel" }, { timeoutMs: 1000 }).catch(() => {});
            throw new ClusterError("TIMEOUT", `${input.candidate} did not take the master lease in time`);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      }),
      verifier: verify.logic,
      divergedMarks: divergedLogic(rt),
    },
  });

  const actor = createActor(logic, {
    id: "watchdog",
    input: {
      lease: { key: LEASE_KEY.watchdog, node: id, instance: rt.instance, ttlMs, safetyMarginMs, wants: false },
      masterLease: { key: LEASE_KEY.master, node: id, instance: rt.instance, ttlMs, safetyMarginMs, wants: false, probeMs: config.lease.probeMs },
      waitMs: f.waitMs,
      prerequisites: f.prerequisites,
      maxAutomatic: f.maxAutomatic,
      windowMs: f.windowMs,
      retryMs: Math.max(1000, f.waitMs),
      verifyMs: config.compare.intervalMs,
    },
    inspect: inspectInto(log),
  });
  actor.on("alert", (a) => rt.alerts.raise(a.kind, a.severity, a.message, a.data));
  actor.on("marks", (e) => void verify.saveMarks(e).catch((err) => log.error({ err: String(err) }, "diverged marks not saved")));
  actor.on("failover", (e) => {
    saving++;
    saves++;
    void (async () => {
      const stored = await readFailoverState(buckets.leases);
      await writeFailoverState(buckets.leases, { ...stored, history: e.state.history, enabled: e.state.enabled });
    })()
      .catch((err) => log.error({ err: String(err) }, "failover count not saved"))
      .finally(() => saving--);
  });

  const status = () => {
    const snap = actor.getSnapshot();
    const state = typeof snap.value === "string" ? snap.value : Object.keys(snap.value)[0];
    return {
      node: id,
      role: "watchdog",
      designated,
      state: state === "standby" ? "standby" : "active",
      decision: snap.value,
      master: snap.context.lost?.node ?? null,
      candidate: snap.context.candidate,
      failovers: snap.context.history.length,
      automatic: snap.context.enabled && snap.context.recent < f.maxAutomatic,
      verifyMs: config.compare.intervalMs,
      verified: snap.context.verified,
      divergedReplicas: Object.values(snap.context.diverged).map((m) => ({ node: m.node, rows: m.rows })),
      host: config.node.host,
      pid: process.pid,
      instance: rt.instance,
      startedAt: rt.startedAt,
    };
  };
  const heartbeat = createActor(heartbeatLogic(rt, status));
  exitOnActorError(actor, log);
  actor.start();
  heartbeat.start();
  // A secondary lets a primary that starts at the same time win the lease.
  const claim = setTimeout(() => (actor.getSnapshot().children.lease as { send(e: { type: "ACQUIRE" }): void } | undefined)?.send({ type: "ACQUIRE" }), designated === "secondary" ? ttlMs : 0);
  log.info({ designated, waitMs: f.waitMs, prerequisites: f.prerequisites, maxAutomatic: f.maxAutomatic, verifyMs: config.compare.intervalMs }, `watchdog ${id} started (${designated})`);
  if (config.compare.intervalMs > 0 && config.compare.rowsPerSecond === 0) {
    log.warn("compare.intervalMs is set and compare.rowsPerSecond is 0: continuous verification reads as fast as it can; set compare.rowsPerSecond to spare the workload");
  }

  return {
    actor,
    async stop() {
      clearTimeout(claim);
      heartbeat.stop();
      actor.stop();
      await boot.stop();
      log.info(`watchdog ${id} stopped`);
    },
  };
}

function toView(h: Record<string, unknown>): MemberView {
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  const contact = h.masterContact as { node?: unknown; at?: unknown } | null | undefined;
  return {
    node: String(h.node),
    role: String(h.role ?? ""),
    standby: h.designated === "standby",
    state: String(h.state ?? ""),
    replica: typeof h.replica === "string" ? h.replica : null,
    appliedLsn: num(h.appliedLsn),
    spooledLsn: num(h.spooledLsn),
    changeSeq: num(h.changeSeq),
    needsResync: h.needsResync === true,
    rejoining: h.rejoining === true,
    masterContact: contact && typeof contact.node === "string" ? { node: contact.node, at: num(contact.at) } : null,
    alive: true,
  };
}
