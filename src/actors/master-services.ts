/**
 * What the active master serves: SQL requests, batch pulls, the heartbeat row, and retention
 * with the backlog cap. Started on entering `active`, stopped
 * on leaving it (fenced, demoted), so a node that is not the master answers none of these.
 */
import { listKeys } from "../nats/buckets.js";
import type { Subscription } from "@nats-io/transport-node";
import { fromCallback } from "xstate";
import { ClusterError, ReplicationError, asFerryError } from "../errors.js";
import { encodeFrame } from "../nats/codec.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call, serve } from "../nats/rpc.js";
import type { PullRecordHeader, PullRequest } from "../nats/messages.js";
import type { Spool } from "../storage/spool.js";
import { newWriteGate, setAccepting } from "../storage/repository/write-gate.js";
import type { Capture, SequencerDeps } from "./sequencer.js";
import { LEASE_KEY } from "../nats/records.js";

export interface MasterDeps extends SequencerDeps {
  capture: Capture;
}

export function backlogMessage(bytes: number, cap: number): string {
  return (
    `Slave has ${bytes} bytes sqls to be processed since last disconnection, which exceeds current available memory ` +
    `on the master sync service. Slave node will be disconnected. Please run backup and restore to sync the master and ` +
    `slave nodes.` + ` (replication.maxBacklogBytes = ${cap})`
  );
}

export function masterServices(d: MasterDeps) {
  return fromCallback(({ sendBack }) => {
    const { rt, repo, spool, clock, replicas } = d;
    const cfg = rt.config.replication;
    const subs: Subscription[] = [];
    const timers: NodeJS.Timeout[] = [];
    let stopped = false;

    let switching: string | null = null;
    const gate = newWriteGate(clock.shared.buffer as SharedArrayBuffer);
    // Off the main thread's path: a long transaction does not stop it from renewing the lease.
    const exec = repo.openSqlRunner(gate, { busyTimeoutMs: rt.config.nats.requestTimeoutMs / 2 });
    setAccepting(gate, true);
    const notMaster = () =>
      new ClusterError("FENCED", `${rt.node} is no longer the master (lease not renewed in time)`, {
        hint: "retry: the request goes to whichever node holds the master lease",
      });
    const guardLease = () => {
      if (stopped || !clock.valid()) throw notMaster();
    };
    /** Writes also stop during a switchover; batches keep flowing so the target can catch up. */
    const guardWrites = () => {
      guardLease();
      if (switching) {
        throw new ClusterError("FENCED", `${rt.node} is handing the master role to ${switching} (switchover)`, {
          hint: "retry in a moment: the new master takes requests once the switchover completes",
        });
      }
    };

    // SQL: one transaction; acknowledged once sequenced (and held by N replicas in synchronous mode).
    subs.push(serve(rt.nc, rt.log, ENDPOINTS.sql, rt.subj.sql, async (req) => {
      guardWrites();
      await repo.checkAvailable();
      const out = await exec.execute(req.sql, req.params, req.id === undefined ? undefined : { id: req.id, node: rt.node });
      if (out.replayed) rt.log.info({ id: req.id, by: out.replayed.by }, "a retried write answered from its record, not run again");
      let lsn = spool.head;
      // A write recorded by an earlier master came here replicated: everything spooled here covers it.
      if (out.lastChangeId > 0 || out.replayed) {
        try {
          if (out.lastChangeId > 0) {
            sendBack({ type: "KICK" });
            lsn = await d.progress.waitFor(out.lastChangeId, Math.max(cfg.syncTimeoutMs, 5000), spool.head);
          }
          if (cfg.syncReplicas > 0) await replicas.waitAcked(lsn, cfg.syncReplicas, cfg.syncTimeoutMs);
        } catch (err) {
          // Committed here: a wait cut short by fencing (the services stop and fail every waiter with
          // FENCED) must not read as "not committed", or the client retries it and the write is doubled.
          if (asFerryError(err).code === "FENCED") {
            throw new ClusterError("FENCED", `${rt.node} lost the master lease before acknowledging; the write's outcome is unknown`, {
              details: { committed: true, lsn },
            });
          }
          throw err;
        }
      }
      // A master that lost its lease while waiting must not acknowledge: the client sees an error and
      // must treat the write as of unknown outcome (committed here, maybe not on the new master).
      if (stopped || !clock.valid()) {
        throw new ClusterError("FENCED", `${rt.node} lost the master lease before acknowledging; the write's outcome is unknown`, {
          details: { committed: true, lsn },
        });
      }
      return { epoch: clock.epoch, lsn, node: rt.node, results: out.results };
    }));

    subs.push(serve(rt.nc, rt.log, ENDPOINTS.pull, rt.subj.node(rt.node).pull, async (req) => {
      guardLease();
      await checkReplica(req);
      const records = await spool.read(req.lsn, req.part, Math.min(req.maxBytes, cfg.pullBytes));
      const headers: PullRecordHeader[] = records.map((r) => ({ lsn: r.lsn, part: r.part, parts: r.parts, len: r.data.length, meta: r.meta }));
      guardLease();
      const header = { ok: true, epoch: clock.epoch, head: spool.head, ack: cfg.syncReplicas > 0, records: headers };
      return encodeFrame(header, records.map((r) => r.data));
    }));

    // Planned switchover: stop taking writes, let the target hold everything, pass the lease by CAS.
    subs.push(serve(rt.nc, rt.log, ENDPOINTS.switchover, rt.subj.switchover, async (req) => {
      guardLease();
      if (req.to === rt.node) throw new ClusterError("NOT_MASTER", `${rt.node} is already the master`);
      // One handover at a time: a second would pass the lease twice.
      if (switching) {
        throw new ClusterError("IN_PROGRESS", `a switchover from ${rt.node} to ${switching} is in progress`, {
          hint: "wait for it to end (ferry status shows the master lease), then ask again if still needed",
        });
      }
      const target = replicas.get(req.to);
      if (!target || target.needsResync) {
        throw new ClusterError("NOT_MASTER", `${req.to} is not a current replica of ${rt.node}`, { hint: "ferry status lists the replicas; pick one that is streaming" });
      }
      const started = Date.now();
      const deadline = started + req.timeoutMs;
      switching = req.to;
      setAccepting(gate, false);
      rt.alerts.raise("switchover-started", "info", `switchover from ${rt.node} to ${req.to}: writes paused`, { to: req.to });
      const control = rt.subj.node(req.to).control;
      let handedOver = false;
      try {
        await d.capture(); // everything committed is sequenced
        const head = spool.head;
        await call(rt.nc, ENDPOINTS.control, control, { op: "promote" }, { timeoutMs: rt.config.nats.requestTimeoutMs, peer: req.to });
        while ((replicas.get(req.to)?.acked ?? 0) < head) {
          if (Date.now() > deadline) throw new ReplicationError("TIMEOUT", `${req.to} did not catch up to LSN ${head} within ${req.timeoutMs} ms`);
          await new Promise((r) => setTimeout(r, 5));
        }
        if (!clock.valid()) throw notMaster();
        // The lease names the target with an instance that is not its own: it takes it at once.
        const value = JSON.stringify({ node: req.to, epoch: clock.epoch, instance: `handover-from-${rt.instance}`, from: rt.node, ts: Date.now() });
        await handOver(value);
        handedOver = true;
        clock.revoke();
        const epoch = await waitForHolder(req.to, deadline);
        const ms = Date.now() - started;
        rt.alerts.raise("switchover", "info", `switchover from ${rt.node} to ${req.to} done at LSN ${head} in ${ms} ms (epoch ${epoch})`, { to: req.to, lsn: head, epoch, ms });
        return { from: rt.node, to: req.to, lsn: head, epoch, ms };
      } catch (err) {
        if (!handedOver) {
          switching = null;
          setAccepting(gate, true);
          void call(rt.nc, ENDPOINTS.control, control, { op: "promote-cancel" }, { timeoutMs: 1000 }).catch(() => {});
          rt.alerts.raise("switchover-failed", "warning", `switchover to ${req.to} failed; ${rt.node} stays master: ${(err as Error).message}`);
        }
        throw err;
      }
    }));

    /** Writes the handover by compare-and-set; a renew of ours landing meanwhile moves the revision, so read and retry. */
    async function handOver(value: string): Promise<void> {
      for (let attempt = 0; ; attempt++) {
        const e = await rt.buckets.leases.get(LEASE_KEY.master);
        const v = e?.operation === "PUT" ? (JSON.parse(new TextDecoder().decode(e.value)) as { instance?: string }) : null;
        if (!e || v?.instance !== rt.instance || !clock.valid()) throw notMaster();
        try {
          await rt.buckets.leases.update(LEASE_KEY.master, value, e.revision);
          return;
        } catch (err) {
          if (attempt >= 5 || !/wrong last sequence/i.test((err as Error).message)) throw err;
        }
      }
    }

    async function waitForHolder(node: string, deadline: number): Promise<number> {
      for (;;) {
        const e = await rt.buckets.leases.get(LEASE_KEY.master);
        const v = e?.operation === "PUT" ? (JSON.parse(new TextDecoder().decode(e.value)) as { node: string; epoch: number; instance: string }) : null;
        if (v && v.node === node && !v.instance.startsWith("handover-")) return v.epoch;
        if (Date.now() > deadline) throw new ClusterError("TIMEOUT", `${node} did not take the master lease in time`);
        await new Promise((r) => setTimeout(r, 10));
      }
    }

    /** Refuses a replica that must resync (cap, divergence, pruned position) and records what it holds. */
    async function checkReplica(req: PullRequest): Promise<void> {
      if (req.epoch > clock.epoch) {
        throw new ClusterError("STALE_EPOCH", `${rt.node} serves epoch ${clock.epoch} but ${req.node} has seen epoch ${req.epoch}`);
      }
      const rec = replicas.get(req.node);
      if (rec?.needsResync) {
        throw new ReplicationError("NEEDS_RESYNC", rec.reason ?? `${req.node} needs a resync`, {
          hint: `run: ferry resync --node ${req.node}`,
        });
      }
      const acked = req.lsn - 1;
      const m = req.last.lsn > 0 ? await spool.meta(req.last.lsn) : null;
      if (acked > spool.head || (m && m.epoch !== req.last.epoch)) {
        // The replica holds batches of an older epoch this master never had (it was master itself).
        // It decides: batches of heartbeat rows only are dropped and it goes on; anything else is a resync.
        const history = await d.meta.epochHistory();
        const from = Math.min(history.find((e) => e.epoch > req.last.epoch)?.firstLsn ?? spool.head + 1, req.last.lsn);
        throw new ReplicationError(
          "DIVERGED",
          `${req.node} holds LSNs ${from}..${req.last.lsn} from epoch ${req.last.epoch} that were never replicated (this master's history differs from LSN ${from})`,
          { details: { from, to: req.last.lsn }, hint: `run: ferry resync --node ${req.node}` },
        );
      }
      if (req.last.lsn > 0) {
        if (m && m.fp !== "" && req.applied === req.last.lsn && m.fp !== req.fp) {
          return refuse(req, `schema fingerprint mismatch: ${req.node} has ${req.fp}, the master had ${m.fp} at LSN ${m.lsn}`, "SCHEMA_MISMATCH");
        }
      }
      if (req.unsequenced > 0) {
        return refuse(req, `${req.node} holds ${req.unsequenced} captured changes that were never replicated (written while it was master)`);
      }
      if (acked < spool.head && (spool.first === 0 || req.lsn < spool.first)) {
        throw new ReplicationError("SNAPSHOT_REQUIRED", `LSN ${req.lsn} is no longer held by ${rt.node} (it holds ${spool.first}..${spool.head})`, {
          hint: `run: ferry resync --node ${req.node}`,
        });
      }
      const backlog = await spool.backlogBytes(acked);
      if (backlog > cfg.maxBacklogBytes) return refuse(req, backlogMessage(backlog, cfg.maxBacklogBytes), "BACKLOG_EXCEEDED");
      replicas.seen(req.node, acked, req.applied);
    }

    async function refuse(req: PullRequest, reason: string, code: "NEEDS_RESYNC" | "BACKLOG_EXCEEDED" | "SCHEMA_MISMATCH" = "NEEDS_RESYNC") {
      if (!replicas.get(req.node)) replicas.seen(req.node, 0, req.applied);
      await replicas.markResync(req.node, reason);
      rt.alerts.raise(code === "BACKLOG_EXCEEDED" ? "backlog-exceeded" : code === "SCHEMA_MISMATCH" ? "schema-mismatch" : "replica-diverged", "critical", reason, {
        replica: req.node,
      });
      throw new ReplicationError(code, reason, { hint: `run: ferry resync --node ${req.node}` });
    }

    // The heartbeat row: every replica can tell its lag in ms even when nobody writes. A repository
    // that cannot take it (locked, gone) is reported as down until a heartbeat row gets through.
    // A writer holding the lock at the moment of one beat is normal; the repository is reported as
    // down only when heartbeat rows have failed for longer than two heartbeat periods.
    let failingSince = 0;
    let reported = false;
    const beat = async () => {
      if (stopped || !clock.valid()) return;
      try {
        await repo.checkAvailable();
        await repo.writeHeartbeat(rt.node, clock.epoch, Date.now());
        sendBack({ type: "KICK" });
        if (reported) sendBack({ type: "REPO_UP" });
        failingSince = 0;
        reported = false;
      } catch (err) {
        const e = asFerryError(err);
        if (e.code !== "REPO_UNAVAILABLE") return void rt.log.warn({ err: e.message }, "heartbeat row not written");
        failingSince ||= Date.now();
        const busy = e.details?.busy === true;
        if (!reported && (!busy || Date.now() - failingSince >= 2 * cfg.heartbeatMs)) {
          sendBack({ type: "REPO_DOWN", code: e.code, message: e.message });
          reported = true;
        }
      }
    };
    let beating = false;
    const tick = () => {
      if (beating) return;
      beating = true;
      void beat().finally(() => (beating = false));
    };
    tick();
    timers.push(setInterval(tick, cfg.heartbeatMs));

    // A new master does not know its replicas yet: it holds batches for every node in the members
    // bucket from the position its last heartbeat gave, until the replica pulls (or passes the cap).
    let seeded = false;
    const seed = async () => {
      for (const key of await listKeys(rt.buckets.members)) {
        if (key === rt.node || replicas.get(key)) continue;
        const e = await rt.buckets.members.get(key);
        if (e?.operation !== "PUT") continue;
        const m = e.json<{ role?: string; spooledLsn?: number; appliedLsn?: number }>();
        if (m.role !== "master" && m.role !== "slave") continue;
        replicas.seen(key, Math.min(m.spooledLsn ?? 0, m.appliedLsn ?? 0), m.appliedLsn ?? 0);
      }
      seeded = true;
    };
    void seed().catch((err) => rt.log.warn({ err: String(err) }, "replicas not read from the members bucket"));

    // Retention: replicas past the cap are cut loose; batches beyond the cap are dropped.
    let retaining = false;
    const retain = async () => {
      if (retaining || stopped || !seeded) return;
      retaining = true;
      try {
        for (const r of replicas.all()) {
          if (r.needsResync) continue;
          const backlog = await spool.backlogBytes(r.acked);
          if (backlog > cfg.maxBacklogBytes) {
            const reason = backlogMessage(backlog, cfg.maxBacklogBytes);
            await replicas.markResync(r.node, reason);
            rt.alerts.raise("backlog-exceeded", "critical", reason, { replica: r.node, backlogBytes: backlog });
          }
        }
        await replicas.flush();
        // The spool keeps the last maxBacklogBytes, not just what replicas still lack: collectors
        // read it too, and a node that rejoins after a failover may need batches no replica does.
        const upto = await lsnOverCap(spool, cfg.maxBacklogBytes);
        if (upto >= spool.first && spool.first > 0) await spool.prune(upto);
      } catch (err) {
        rt.log.warn({ err: asFerryError(err).message }, "retention pass failed");
      } finally {
        retaining = false;
      }
    };
    timers.push(setInterval(retain, 1000));

    return () => {
      stopped = true;
      setAccepting(gate, false);
      void exec.close();
      for (const t of timers) clearInterval(t);
      for (const s of subs) s.unsubscribe();
      const err = notMaster();
      d.progress.failAll(err);
      replicas.failWaiters(err);
      void replicas.flush().catch(() => {});
    };
  });
}

/** The highest LSN whose batches lie beyond maxBacklogBytes from the head (0 when none). */
async function lsnOverCap(spool: Spool, cap: number): Promise<number> {
  const head = spool.last;
  if (!head || spool.first === 0 || head.cum - ((await spool.meta(spool.first))?.cum ?? head.cum) <= cap) return 0;
  let lo = spool.first;
  let hi = head.lsn;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    const m = await spool.meta(mid);
    if (m && head.cum - m.cum > cap) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
