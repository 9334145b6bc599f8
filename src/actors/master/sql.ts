/**
 * SQL requests: one transaction each, acknowledged once sequenced (and held by N replicas in
 * synchronous mode). Served on the cluster's SQL subject and on this node's own, where a request
 * names the epoch its client believes this node masters.
 */
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError, asFerryError } from "../../errors.js";
import { ENDPOINTS } from "../../nats/protocol.js";
import { encodeJson } from "../../nats/codec.js";
import { serve } from "../../nats/rpc.js";
import type { SqlRequest } from "../../nats/messages.js";
import type { MasterContext } from "./context.js";

export function startSql(ctx: MasterContext): { unsubscribe(): void } {
  const subs: Subscription[] = [
    serve(ctx.d.rt.nc, ctx.d.rt.log, ENDPOINTS.sql, ctx.d.rt.subj.sql, (req) => runRequest(ctx, req)),
    serve(ctx.d.rt.nc, ctx.d.rt.log, ENDPOINTS.nodeSql, ctx.d.rt.subj.node(ctx.d.rt.node).sql, (req) => {
      if (req.epoch !== undefined && req.epoch !== ctx.d.clock.epoch) {
        throw new ClusterError("NOT_MASTER", `${ctx.d.rt.node} is not the master of epoch ${req.epoch} (its epoch is ${ctx.d.clock.epoch})`, {
          hint: "read the master lease again and address its holder",
        });
      }
      return runRequest(ctx, req);
    }),
  ];
  return { unsubscribe: () => subs.forEach((s) => s.unsubscribe()) };
}

async function runRequest(ctx: MasterContext, req: SqlRequest) {
  const { rt, repo, spool, clock, replicas } = ctx.d;
  const cfg = rt.config.replication;
  ctx.guardWrites();
  await repo.checkAvailable();
  const out = await ctx.exec.execute(req.sql, req.params, req.id === undefined ? undefined : { id: req.id, node: rt.node });
  if (out.replayed) rt.log.info({ id: req.id, by: out.replayed.by }, "a retried write answered from its record, not run again");
  let lsn = spool.head;
  // A write recorded by an earlier master came here replicated: everything spooled here covers it.
  if (out.lastChangeId > 0 || out.replayed) {
    try {
      if (out.lastChangeId > 0) {
        ctx.sendBack({ type: "KICK" });
        lsn = await ctx.d.progress.waitFor(out.lastChangeId, Math.max(cfg.syncTimeoutMs, 5000), spool.head);
      }
      if (cfg.syncReplicas > 0) {
        // A replayed write makes no batch, so no notification would make the replicas pull (and acknowledge).
        if (out.replayed) rt.nc.publish(rt.subj.notify, encodeJson({ node: rt.node, epoch: clock.epoch, lsn, ack: true }));
        await replicas.waitAcked(lsn, cfg.syncReplicas, cfg.syncTimeoutMs);
      }
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
  if (ctx.stopped || !clock.valid()) {
    throw new ClusterError("FENCED", `${rt.node} lost the master lease before acknowledging; the write's outcome is unknown`, {
      details: { committed: true, lsn },
    });
  }
  return { epoch: clock.epoch, lsn, node: rt.node, results: out.results };
}
