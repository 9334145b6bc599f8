/**
 * Batch pulls: a replica asks from its next LSN and part; the master checks it may stream (epoch,
 * divergence, schema, backlog cap, pruned position), records what it holds, and answers a frame of
 * whole spooled parts. The same request published without a reply subject is an acknowledgement
 * (a replica that took pushed batches): checked and recorded alike, and not answered.
 */
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError, ReplicationError } from "../../errors.js";
import { encodeFrame } from "../../nats/codec.js";
import type { PullRecordHeader, PullRequest } from "../../nats/messages.js";
import { ENDPOINTS } from "../../nats/protocol.js";
import { serve } from "../../nats/rpc.js";
import type { MasterContext } from "./context.js";

const NOTHING = new Uint8Array(0);

export function backlogMessage(bytes: number, cap: number): string {
  return (
    `Slave has ${bytes} bytes sqls to be processed since last disconnection, which exceeds current available memory ` +
    `on the master sync service. Slave node will be disconnected. Please run backup and restore to sync the master and ` +
    `slave nodes.` + ` (replication.maxBacklogBytes = ${cap})`
  );
}

export function startPull(ctx: MasterContext): Subscription {
  const { rt, spool, clock, replicas } = ctx.d;
  const cfg = rt.config.replication;
  return serve(rt.nc, rt.log, ENDPOINTS.pull, rt.subj.node(rt.node).pull, async (req, msg) => {
    ctx.guardLease();
    await checkReplica(req);
    // Published without a reply subject: a replica taking pushed batches says what it holds; nothing to read.
    if (!msg.reply) return NOTHING;
    const records = await spool.read(req.lsn, req.part, Math.min(req.maxBytes, cfg.pullBytes));
    const headers: PullRecordHeader[] = records.map((r) => ({ lsn: r.lsn, part: r.part, parts: r.parts, len: r.data.length, meta: r.meta }));
    ctx.guardLease();
    const header = { ok: true, epoch: clock.epoch, head: spool.head, ack: cfg.syncReplicas > 0, records: headers };
    return encodeFrame(header, records.map((r) => r.data));
  });

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
      const history = await ctx.d.meta.epochHistory();
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
}
