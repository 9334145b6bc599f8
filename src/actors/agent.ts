/**
 * A process that works while it holds a lease (collector, synctool): opens its LevelDB (the epoch
 * floor of its lease, and whatever the role keeps) and NATS, refuses an id a live process uses,
 * publishes heartbeats, and runs the agent machine with the role's work.
 */
import { join } from "node:path";
import { createActor, fromCallback } from "xstate";
import type { Config } from "../config.js";
import { ClusterError } from "../errors.js";
import { inspectInto } from "../log.js";
import { agentMachine, type AgentActor } from "../machines/agent.js";
import { redactUrl } from "../nats/connect.js";
import { Meta } from "../storage/meta.js";
import type { LevelDb } from "../storage/store.js";
import { bootProcess } from "./boot.js";
import { HEARTBEAT_MS, heartbeatLogic } from "./heartbeat.js";
import { leaseLogic } from "./lease.js";
import { LeaseClock, type Runtime } from "./runtime.js";

export type AgentRoleName = "collector" | "synctool";

export interface AgentHandle {
  rt: Runtime;
  level: LevelDb;
  clock: LeaseClock;
  /** standby | active | fenced | stopped */
  state(): string;
}

export interface AgentRole {
  leaseKey: string;
  /** Starts the role's work (this process now holds the lease); returns how to stop it. */
  start(): () => void;
  /** Role-specific fields of the heartbeat. */
  status(): Record<string, unknown>;
}

export interface RunningAgent {
  rt: Runtime;
  actor: AgentActor;
  status(): Record<string, unknown>;
  stop(): Promise<void>;
}

export async function startAgent(config: Config, role: AgentRoleName, make: (h: AgentHandle) => AgentRole): Promise<RunningAgent> {
  const boot = await bootProcess(config, {
    role,
    prepare: ({ id, buckets, instance, dataDir }) => refuseIdInUse(buckets.members, { node: id, instance, host: config.node.host, data: join(dataDir, "level") }),
  });
  const { rt, level } = boot;
  const { log } = rt;
  const id = rt.node;
  const instance = rt.instance;
  const buckets = rt.buckets;
  try {
    const meta = new Meta(level);
    const clock = new LeaseClock();
    let actor!: AgentActor;
    const state = () => {
      const v = actor?.getSnapshot().value;
      return typeof v === "string" ? v : "standby";
    };
    const r = make({ rt, level, clock, state });
    const status = () => ({
      node: id,
      role,
      state: state(),
      cluster: config.cluster,
      host: config.node.host,
      pid: process.pid,
      instance,
      data: level.location,
      startedAt: rt.startedAt,
      epoch: clock.epoch,
      leaseHolder: actor?.getSnapshot().context.holder?.node ?? null,
      ...r.status(),
    });
    const logic = agentMachine.provide({
      actors: {
        lease: leaseLogic(rt, buckets.leases, {
          key: r.leaseKey,
          clock,
          epochs: { max: () => meta.maxEpoch(), raise: (e) => meta.raiseEpoch(e) },
          extra: () => ({ host: config.node.host }),
        }),
        heartbeat: heartbeatLogic(rt, status),
        work: fromCallback(() => {
          log.info({ lease: r.leaseKey, epoch: clock.epoch }, `${role} ${id} is active (lease ${r.leaseKey})`);
          const stop = r.start();
          return () => {
            log.info(`${role} ${id} stopped working`);
            stop();
          };
        }),
      },
    });
    actor = createActor(logic, {
      id: role,
      input: {
        lease: { key: r.leaseKey, node: id, instance, ttlMs: config.lease.ttlMs, safetyMarginMs: config.lease.safetyMarginMs, wants: true },
      },
      inspect: inspectInto(log),
    });
    actor.start();
    log.info({ data: level.location, nats: config.nats.servers.map(redactUrl), cluster: config.cluster, lease: r.leaseKey }, `${role} ${id} started`);
    return {
      rt,
      actor,
      status,
      async stop() {
        actor.send({ type: "STOP" });
        // Let the lease be released so a standby takes over at once.
        const lease = actor.getSnapshot().children.lease;
        const deadline = Date.now() + 2000;
        while (Date.now() < deadline && JSON.stringify(lease?.getSnapshot().value ?? "").match(/holding|releasing/)) {
          await new Promise((res) => setTimeout(res, 20));
        }
        actor.stop();
        await boot.stop();
        log.info(`${role} ${id} stopped`);
      },
    };
  } catch (err) {
    await boot.stop();
    throw err;
  }
}

/** A live member (heartbeat within 3 s) with our id is another process, unless it is our own earlier life (same host and data). */
async function refuseIdInUse(
  members: Runtime["buckets"]["members"],
  me: { node: string; instance: string; host: string; data: string },
): Promise<void> {
  const e = await members.get(me.node);
  if (!e || e.operation !== "PUT") return;
  let m: { instance?: string; host?: string; data?: string; pid?: number; ts?: number };
  try {
    m = e.json();
  } catch {
    return;
  }
  if (!m.ts || m.ts < Date.now() - 3 * HEARTBEAT_MS || m.instance === me.instance) return;
  if (m.host === me.host && m.data === me.data) return;
  throw new ClusterError("NODE_ID_IN_USE", `id ${me.node} is in use by a running process (pid ${m.pid} on ${m.host})`, {
    hint: "give this process another --node id, or stop the other one first",
  });
}
