/**
 * A node process (`ferry start --role master|slave`): opens its repository, LevelDB and NATS,
 * refuses to share a node id or a repository with a live member, and runs the node machine with
 * its I/O actors.
 */
import { join } from "node:path";
import { createActor, fromPromise } from "xstate";
import type { Config } from "../config.js";
import { ClusterError, ConfigError, FerryError, asFerryError } from "../errors.js";
import { exitOnActorError, inspectInto } from "../log.js";
import { redactUrl } from "../nats/connect.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { serve } from "../nats/rpc.js";
import { nodeMachine, type NodeActor } from "../machines/node.js";
import type { LeaseValue } from "../machines/lease.js";
import { Meta } from "../storage/meta.js";
import { Spool } from "../storage/spool.js";
import { openRepository, REPOSITORY_URL_FORMS, type Repository } from "../storage/repository/index.js";
import { bootProcess, processIdentity, type Booted } from "./boot.js";
import { HEARTBEAT_MS, heartbeatLogic } from "./heartbeat.js";
import { leaseLogic } from "./lease.js";
import { masterServices } from "./master/services.js";
import { startNodeControl } from "./node-control.js";
import { startNodeServices } from "./node-services.js";
import { ApplyHold } from "./apply-hold.js";
import { startCompareService } from "./compare-service.js";
import { createReplicaIo, listenForBatches, listenForPushes, replicaLogic, ReplicaStats } from "./replica.js";
import { ReplicaRegistry } from "./replicas.js";
import { CaptureProgress, LeaseClock, type Runtime } from "./runtime.js";
import { createCapture, sequencerLogic } from "./sequencer.js";
import { decodeLease, LEASE_KEY, memberRecords } from "../nats/records.js";

export interface RunningNode {
  actor: NodeActor;
  rt: Runtime;
  status(): Record<string, unknown>;
  stop(): Promise<void>;
}

/** Checks what a node needs before anything is opened; errors name the flag. */
export function nodeSettings(config: Config) {
  const n = config.node;
  const { id, dataDir } = processIdentity(config);
  if (n.role !== "master" && n.role !== "slave") throw new ConfigError("node.role", "must be master or slave for a node");
  if (!n.repo) throw new ConfigError("node.repo", `required (give --repo ${REPOSITORY_URL_FORMS})`);
  return { id, role: n.role, repo: n.repo, dataDir };
}

/** The alerts of a master whose replication pauses for an outage, and resumes, by the outage's code. */
function pauseAlerts(code: string): { paused: string; resumed: string; back: string } {
  return code === "DATA_DIR_UNWRITABLE"
    ? { paused: "data-dir-unwritable", resumed: "data-dir-writable", back: "the data directory takes writes again" }
    : { paused: "repository-unavailable", resumed: "repository-available", back: "repository is back" };
}

export async function startNode(config: Config): Promise<RunningNode> {
  const s = nodeSettings(config);
  let repo!: Repository;
  const boot = await bootProcess(config, {
    role: s.role,
    async prepare({ buckets, instance, step, onStop }) {
      repo = await openRepository(s.repo, { password: config.node.repoPassword });
      step(`opening the repository ${repo.location.url}`);
      onStop(() => repo.close());
      await repo.init();
      step("checking the members bucket for a node with the same id or repository");
      await refuseConflicts(buckets.members, { node: s.id, instance, repo: repo.location.id, repoKind: repo.kind, host: config.node.host, data: s.dataDir });
    },
  });
  try {
    return await runNode(boot, repo);
  } catch (err) {
    await boot.stop();
    throw err;
  }
}

async function runNode(boot: Booted, repo: Repository): Promise<RunningNode> {
  const { rt, level } = boot;
  const { config, log } = rt;
  const spool = new Spool(level);
  const meta = new Meta(level);
  await spool.load();
  const progress = new CaptureProgress();
  progress.checkpoint = await meta.checkpoint();
  const clock = new LeaseClock();
  const replicas = new ReplicaRegistry(meta);
  await replicas.load();
  const stats = new ReplicaStats();
  // The replica machine's apply waits in `idle` until told there is something to apply.
  const hold = new ApplyHold(
    config.compare.holdMs,
    () => (actor.getSnapshot().children.replica as { send(e: { type: "SPOOLED" }): void } | undefined)?.send({ type: "SPOOLED" }),
    (holder) => log.info({ holder }, `compare hold by ${holder} ended: applying again`),
    (holder) => log.warn({ holder }, `compare hold by ${holder} expired after ${config.compare.holdMs} ms without a request`),
  );
  const io = createReplicaIo({ rt, repo, spool, meta, hold }, stats);
  await io.init();
  const resync = await meta.resync();
  const fresh = stats.applied === 0 && spool.head === 0;
  const unexpectedData = fresh && rt.role === "slave" && (await repo.hasUserData());
  /** Why this node was marked for resync outside the replica machine (at start, or demoted with unsequenced changes). */
  let resyncReason = resync.needed ? resync.reason : undefined;
  if (unexpectedData && !resync.needed) {
    resyncReason = "the repository holds data but no replication state";
    await meta.setResync({ needed: true, reason: resyncReason, code: "NEEDS_RESYNC" });
  }
  const needsResync = resync.needed || unexpectedData;

  const capture = createCapture({ rt, repo, spool, meta, progress, clock, replicas });

  const logic = nodeMachine.provide({
    actors: {
      lease: leaseLogic(rt, rt.buckets.leases, {
        key: LEASE_KEY.master,
        clock,
        epochs: { max: () => meta.maxEpoch(), raise: (e) => meta.raiseEpoch(e) },
        extra: () => ({ host: config.node.host, lsn: spool.head }),
      }),
      replica: replicaLogic(io),
      sequencer: sequencerLogic({ rt, repo, spool, meta, progress, clock, replicas }, capture),
      masterServices: masterServices({
        rt,
        repo,
        spool,
        meta,
        progress,
        clock,
        replicas,
        capture,
      }),
      promote: fromPromise<void, { epoch: number }>(async ({ input }) => {
        try {
          const r = await meta.resync();
          if (r.needed) throw new ClusterError("NEEDS_RESYNC", `${rt.node} cannot be promoted: ${r.reason}`);
          hold.release();
          for (let more = true; more; ) more = (await io.apply()).more;
          await repo.installCapture();
          await repo.durableCommits(true);
          progress.checkpoint = await meta.checkpoint();
          await meta.recordEpochStart({ epoch: input.epoch, firstLsn: spool.head + 1, node: rt.node });
          // The highest epoch this node has seen is now its own (the lease made it durable in LevelDB).
          stats.maxEpoch = Math.max(stats.maxEpoch, input.epoch);
          rt.alerts.raise("became-master", "info", `${rt.node} is the master with epoch ${input.epoch} from LSN ${spool.head + 1}`, {
            epoch: input.epoch,
            lsn: spool.head,
          });
        } catch (err) {
          // The machine releases the lease and stays a replica; say why.
          rt.log.error({ err: asFerryError(err).message, code: asFerryError(err).code, epoch: input.epoch }, `${rt.node} could not be promoted`);
          throw err;
        }
      }),
      demote: fromPromise<{ needsResync: boolean; fresh: boolean }, { holder: LeaseValue | null }>(async ({ input }) => {
        clock.revoke();
        // Counted before capture stops: a PostgreSQL slot, which holds them, goes with it.
        const pending = input.holder ? await repo.pendingChanges(await meta.checkpoint()) : 0;
        await repo.removeCapture(await meta.checkpoint());
        await repo.durableCommits(false);
        // Positions moved while this node was master: the replica starts from what is true now.
        await io.init();
        const fresh = stats.applied === 0 && spool.head === 0;
        // At start (no holder yet) leftovers are not judged: promoted, this node sequences them; as a
        // replica of another master, its first pull reports them and it is marked for resync.
        if (!input.holder) return { needsResync: false, fresh };
        rt.alerts.raise("demoted", "warning", `${rt.node} lost the master lease to ${input.holder.node} (epoch ${input.holder.epoch})`, {
          holder: input.holder.node,
          epoch: input.holder.epoch,
          unsequenced: pending,
        });
        if (pending > 0) {
          const reason = `${rt.node} holds ${pending} changes committed while it was master that were never replicated`;
          await meta.setResync({ needed: true, reason, code: "NEEDS_RESYNC", since: Date.now() });
          resyncReason = reason;
          rt.alerts.raise("unreplicated-changes", "critical", reason, { changes: pending });
          return { needsResync: true, fresh };
        }
        return { needsResync: false, fresh };
      }),
      heartbeat: heartbeatLogic(rt, () => status()),
    },
  });

  // A designated master claims the lease at start only when it is free or was its own: an expired
  // lease of another node is a failover, which is the watchdogs' decision (with its prerequisites).
  const current = await rt.buckets.leases.get(LEASE_KEY.master);
  const holder = current?.operation === "PUT" ? decodeLease(current.value) : null;
  const claim = rt.role === "master" && (holder === null || holder.node === rt.node);

  const actor = createActor(logic, {
    id: "node",
    input: {
      node: rt.node,
      lease: {
        key: LEASE_KEY.master,
        node: rt.node,
        instance: rt.instance,
        ttlMs: config.lease.ttlMs,
        safetyMarginMs: config.lease.safetyMarginMs,
        probeMs: config.lease.probeMs,
        wants: claim,
      },
      replica: { fresh, needsResync, pollMs: config.replication.pollMs, retryMs: 1000 },
      sequencer: { intervalMs: config.replication.captureIntervalMs, retryMs: 1000 },
    },
    inspect: inspectInto(log),
  });

  // Alerts for what the machines decided, seen from outside them.
  let prev = { down: null as { code: string; message: string } | null, state: "" };
  actor.subscribe((snap) => {
    const down = snap.context.repoDown;
    if (down && down.message !== prev.down?.message) rt.alerts.raise(pauseAlerts(down.code).paused, "critical", `replication paused: ${down.message}`);
    if (!down && prev.down) rt.alerts.raise(pauseAlerts(prev.down.code).resumed, "info", `${pauseAlerts(prev.down.code).back}; replication resumed`);
    const state = stateName(snap.value);
    if (state === "fenced" && prev.state !== "fenced") rt.alerts.raise("fenced", "warning", `${rt.node} fenced itself: lease not renewed in time`);
    prev = { down, state };
  });

  const subs = [
    listenForBatches(rt, stats, (n) => actor.send({ type: "NOTIFY", ...n })),
    listenForPushes(rt, io, (p) => actor.send({ type: "PUSH", ...p })),
    // Safe to repeat: a request while a resync runs joins it (its progress and outcome are the running one's).
    serve(rt.nc, log, ENDPOINTS.resync, rt.subj.node(rt.node).resync, () => {
      const snap = actor.getSnapshot();
      const state = stateName(snap.value);
      if (state !== "standby") {
        throw new FerryError("NOT_MASTER", `${rt.node} is ${state}; only a replica can be resynced`, {
          hint: "resync a slave; to rebuild the master, switch over first",
        });
      }
      const replica = snap.children.replica?.getSnapshot() as { value: unknown } | undefined;
      if (replica && stateName(replica.value) === "resyncing") return { node: rt.node, started: false, running: true };
      actor.send({ type: "RESYNC" });
      return { node: rt.node, started: true, running: true };
    }),
    startNodeControl(rt, actor, () => {
      const snap = actor.getSnapshot();
      const replica = snap.children.replica?.getSnapshot() as { value: unknown } | undefined;
      return { node: stateName(snap.value), replica: replica ? stateName(replica.value) : null, rejoining: stats.rejoining };
    }),
  ];

  /**
   * Readings of the repository for status(), which is synchronous: refreshed in the background.
   * A failing read keeps the last value (the repository's outage is reported through repoDown).
   */
  const repoReadings = { hbTs: 0, changeSeq: 0 };
  // Often enough that a heartbeat carries what the repository says now (the watchdog's prerequisite 4).
  const READINGS_MS = 100;
  let reading = false;
  const readRepo = () => {
    if (reading) return;
    reading = true;
    void Promise.all([repo.lastHeartbeatTs(), repo.changeSeq()])
      .then(([hbTs, changeSeq]) => Object.assign(repoReadings, { hbTs, changeSeq }))
      .catch(() => {})
      .finally(() => (reading = false));
  };
  readRepo();
  const readings = setInterval(readRepo, READINGS_MS);
  boot.onStop(() => clearInterval(readings));

  function status(): Record<string, unknown> {
    const snap = actor.getSnapshot();
    const state = stateName(snap.value);
    const replicaSnap = snap.children.replica?.getSnapshot() as { value: unknown; context: { error: unknown; head: number } } | undefined;
    const isMaster = state === "active";
    const head = isMaster ? spool.head : Math.max(replicaSnap?.context.head ?? 0, stats.applied);
    const lagLsn = Math.max(0, head - stats.applied);
    const hbTs = repoReadings.hbTs;
    const lagMs = isMaster ? 0 : lagLsn > 0 && stats.appliedTs ? Date.now() - stats.appliedTs : hbTs ? Math.max(0, Date.now() - hbTs - config.replication.heartbeatMs) : null;
    const replicaState = replicaSnap ? stateName(replicaSnap.value) : null;
    const resyncNeeded = replicaState === "needsResync" || (replicaState === null && snap.context.replica.needsResync);
    const changeSeq = repoReadings.changeSeq;
    return {
      node: rt.node,
      role: rt.role,
      designated: config.node.designated ?? null,
      state,
      replica: replicaState,
      cluster: config.cluster,
      host: config.node.host,
      pid: process.pid,
      instance: rt.instance,
      repo: repo.location.id,
      repoKind: repo.kind,
      data: level.location,
      startedAt: rt.startedAt,
      // Fenced, demoting or promoting, a node still reports the highest epoch it has seen: never lower.
      epoch: isMaster ? clock.epoch : Math.max(stats.maxEpoch, clock.epoch),
      master: snap.context.holder?.node ?? null,
      appliedLsn: isMaster ? spool.head : stats.applied,
      spooledLsn: spool.head,
      headLsn: head,
      lagLsn: isMaster ? 0 : lagLsn,
      lagMs,
      applyLatencyMs: isMaster ? 0 : stats.applyLatencyMs,
      changeSeq,
      masterContact: stats.masterContact,
      needsResync: resyncNeeded,
      rejoining: stats.rejoining,
      // The replica machine's error says why when it has one; a mark made at start or on demotion has only this.
      resyncReason: resyncNeeded && !replicaSnap?.context.error ? resyncReason : undefined,
      error: (replicaSnap?.context.error as object | null) ?? snap.context.repoDown ?? null,
      replicas: isMaster ? replicaRows() : undefined,
    };
  }

  const backlogs = new Map<string, number>();
  function replicaRows() {
    return replicas.all().map((r) => {
      void spool.backlogBytes(r.acked).then((b) => backlogs.set(r.node, b));
      return { node: r.node, acked: r.acked, applied: r.applied, backlogBytes: backlogs.get(r.node) ?? 0, needsResync: r.needsResync, reason: r.reason, lastSeen: r.lastSeen };
    });
  }

  const masterEpoch = () => (stateName(actor.getSnapshot().value) === "active" && clock.valid() ? clock.epoch : null);
  const stopServices = startNodeServices({
    rt,
    repo,
    spool,
    replicas,
    capture,
    masterEpoch,
    applied: () => (stateName(actor.getSnapshot().value) === "active" ? { lsn: spool.head, epoch: clock.epoch } : { lsn: stats.applied, epoch: stats.appliedEpoch }),
  });
  boot.onStop(stopServices);
  boot.onStop(
    startCompareService({
      rt,
      repo,
      spool,
      capture,
      hold,
      masterEpoch,
      applied: () => ({ lsn: stats.applied, epoch: stats.appliedEpoch }),
    }),
  );

  exitOnActorError(actor, log);
  actor.start();
  log.info({ repo: repo.location.url, data: level.location, nats: config.nats.servers.map(redactUrl), cluster: config.cluster }, `${rt.role} node ${rt.node} started`);

  return {
    actor,
    rt,
    status,
    async stop() {
      actor.send({ type: "STOP" });
      actor.stop();
      for (const s of subs) s.unsubscribe();
      await boot.stop();
      log.info(`${rt.role} node ${rt.node} stopped`);
    },
  };
}

export function stateName(value: unknown): string {
  return typeof value === "string" ? value : Object.keys(value as object)[0];
}

/**
 * A live member (heartbeat within 3 s) with our node id, or on our repository, means we must not
 * start. One with our id on our host and data directory is our own earlier process, gone since we
 * hold its LevelDB lock (a kill -9 and a quick restart).
 */
async function refuseConflicts(
  members: Runtime["buckets"]["members"],
  me: { node: string; instance: string; repo: string; repoKind: string; host: string; data: string },
): Promise<void> {
  const liveSince = Date.now() - 3 * HEARTBEAT_MS;
  for (const m of await memberRecords(members)) {
    if (!m.ts || m.ts < liveSince || m.instance === me.instance) continue;
    const earlierSelf = m.node === me.node && m.host === me.host && m.data === join(me.data, "level");
    if (earlierSelf) continue;
    if (m.node === me.node) {
      throw new ClusterError("NODE_ID_IN_USE", `node id ${me.node} is in use by a running process (pid ${m.pid} on ${m.host})`, {
        hint: "give this process another --node id, or stop the other one first",
      });
    }
    if (m.repo === me.repo && m.host === me.host) {
      throw new ClusterError("REPO_IN_USE", `repository ${me.repo} is already served by node ${m.node}`, {
        hint: "master and slaves each need their own repository",
      });
    }
    // Row images and DDL are the kind's own: a replica of another kind cannot apply them.
    if (m.repoKind && m.repoKind !== me.repoKind && m.node) {
      throw new ClusterError("REPO_IN_USE", `node ${m.node} replicates a ${m.repoKind} repository; this node's is ${me.repoKind}: a cluster is of one kind`, {
        hint: `give --repo a ${m.repoKind} repository, or start this node in another cluster (--cluster)`,
      });
    }
  }
}
