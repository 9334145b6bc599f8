/**
 * Retention: replicas past the backlog cap are cut loose, batches beyond the cap are dropped. A new
 * master does not know its replicas yet: it first holds batches for every node in the members
 * bucket from the position its last heartbeat gave, until the replica pulls (or passes the cap).
 */
import { asFerryError } from "../../errors.js";
import { memberRecords } from "../../nats/records.js";
import type { MasterContext } from "./context.js";
import { backlogMessage } from "./pull.js";

export function startRetention(ctx: MasterContext): () => void {
  const { rt, spool, replicas } = ctx.d;
  const cfg = rt.config.replication;
  let seeded = false;
  const seed = async () => {
    for (const m of await memberRecords(rt.buckets.members)) {
      if (!m.node || m.node === rt.node || replicas.get(m.node)) continue;
      if (m.role !== "master" && m.role !== "slave") continue;
      replicas.seen(m.node, Math.min(m.spooledLsn ?? 0, m.appliedLsn ?? 0), m.appliedLsn ?? 0);
    }
    seeded = true;
  };
  void seed().catch((err) => rt.log.warn({ err: String(err) }, "replicas not read from the members bucket"));

  let retaining = false;
  const retain = async () => {
    if (retaining || ctx.stopped || !seeded) return;
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
      await spool.pruneOver(cfg.maxBacklogBytes);
    } catch (err) {
      rt.log.warn({ err: asFerryError(err).message }, "retention pass failed");
    } finally {
      retaining = false;
    }
  };
  const t = setInterval(retain, 1000);
  return () => clearInterval(t);
}
