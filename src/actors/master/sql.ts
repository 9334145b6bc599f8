/** SQL requests: one transaction each, acknowledged once sequenced (and held by N replicas in synchronous mode). */
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError, asFerryError } from "../../errors.js";
import { ENDPOINTS } from "../../nats/protocol.js";
import { serve } from "../../nats/rpc.js";
import type { MasterContext } from "./context.js";

export function startSql(ctx: MasterContext): Subscription {
  const { rt, repo, spool, clock, replicas } = ctx.d;
  const cfg = rt.config.replication;
  return serve(rt.nc, rt.log, ENDPOINTS.sql, rt.subj.sql, async (req) => {
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
    if (ctx.stopped || !clock.valid()) {
      throw new ClusterError("FENCED", `${rt.node} lost the master lease before acknowledging; the write's outcome is unknown`, {
        details: { committed: true, lsn },
      });
    }
    return { epoch: clock.epoch, lsn, node: rt.node, results: out.results };
  });
}
