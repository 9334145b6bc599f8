/**
 * What every ferry process does before its role starts: the logger, its LevelDB, the NATS
 * connection and the cluster's buckets, the role's own checks, and the Runtime its actors share;
 * and, on the way out, the same in reverse. Start-up waits for NATS and JetStream without a
 * deadline (a process may start before its server), so it says every 15 s what it waits for.
 */
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { errors, type NatsConnection } from "@nats-io/transport-node";
import type { Config, Role } from "../config.js";
import { ConfigError } from "../errors.js";
import { createLogger } from "../log.js";
import { openBuckets, type Buckets } from "../nats/buckets.js";
import { connectNats, redactUrl } from "../nats/connect.js";
import { subjects } from "../nats/subjects.js";
import { openLevel, type LevelDb } from "../storage/store.js";
import { Alerts } from "./alerts.js";
import type { Runtime } from "./runtime.js";

export interface BootSteps {
  /** Says what start-up does now (debug), and what it waits for if that takes long (warn). */
  step(what: string): void;
  /** Runs at stop, after what was registered later. */
  onStop(fn: () => unknown): void;
}

export interface Booted {
  rt: Runtime;
  level: LevelDb;
  dataDir: string;
  onStop(fn: () => unknown): void;
  /** Removes the process from the members bucket and closes everything opened, newest first. */
  stop(): Promise<void>;
}

export interface BootOptions {
  role: Role;
  /**
   * The role's own checks and resources, once NATS and the buckets are open and before the
   * Runtime exists: a repository to open, a node id or repository another live process uses.
   */
  prepare?: (ctx: { id: string; nc: NatsConnection; buckets: Buckets; instance: string; dataDir: string } & BootSteps) => Promise<void>;
}

/** The node id (required) and the data directory (`node.dataDir`, else `data/<id>`). */
export function processIdentity(config: Config): { id: string; dataDir: string } {
  const id = config.node.id;
  if (!id) throw new ConfigError("node.id", "required (give --node ID)");
  return { id, dataDir: resolve(config.node.dataDir ?? join("data", id)) };
}

export async function bootProcess(config: Config, opts: BootOptions): Promise<Booted> {
  const { id, dataDir } = processIdentity(config);
  const log = createLogger({ role: opts.role, node: id, level: config.log.level, pretty: config.log.pretty });
  let waitingFor = "opening its LevelDB";
  const startedAt = Date.now();
  const slow = setInterval(() => log.warn({ step: waitingFor, waitedMs: Date.now() - startedAt }, `still starting: ${waitingFor}`), 15_000);
  const step = (what: string) => {
    waitingFor = what;
    log.debug({ step: what }, `starting: ${what}`);
  };
  const stops: (() => unknown)[] = [() => clearInterval(slow)];
  const onStop = (fn: () => unknown) => void stops.push(fn);
  const closeAll = async () => {
    for (const fn of stops.splice(0).reverse()) await Promise.resolve(fn()).catch(() => {});
  };
  try {
    step(waitingFor);
    const level = await openLevel(join(dataDir, "level"));
    onStop(() => level.close());
    step(`connecting to NATS at ${config.nats.servers.map(redactUrl).join(",")}`);
    const nc = await connectNats(config, { waitForServer: true, name: `ferry-${opts.role}-${id}` });
    onStop(() => nc.close());
    step("opening the KV buckets");
    const buckets = await untilAnswered(() => openBuckets(nc, config.cluster, config.nats.kvReplicas), (err) => step(`opening the KV buckets (JetStream did not answer: ${err.message}; trying again)`));
    const instance = randomUUID();
    await opts.prepare?.({ id, nc, buckets, instance, dataDir, step, onStop });
    const subj = subjects(config.cluster);
    const rt: Runtime = {
      config,
      log,
      node: id,
      role: opts.role,
      instance,
      nc,
      subj,
      buckets,
      alerts: new Alerts(nc, subj.alert, { cluster: config.cluster, node: id, role: opts.role }, log, config.alerts.command),
      startedAt: Date.now(),
    };
    clearInterval(slow);
    log.debug({ startupMs: Date.now() - startedAt }, "started");
    return {
      rt,
      level,
      dataDir,
      onStop,
      async stop() {
        await buckets.members.delete(id).catch(() => {});
        await closeAll();
      },
    };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * `open()`, tried again while JetStream does not answer in time (a server just started or busy, a
 * cluster electing its leader): a node waits for JetStream as it waits for the server, instead of
 * exiting on a timeout. Any other error ends the start.
 */
async function untilAnswered<T>(open: () => Promise<T>, waiting: (err: Error) => void): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await open();
    } catch (err) {
      if (!(err instanceof errors.TimeoutError)) throw err;
      waiting(err);
      await new Promise((r) => setTimeout(r, Math.min(250 * attempt, 2000)));
    }
  }
}
