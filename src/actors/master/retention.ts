/**
 * Retention: replicas past the backlog cap are cut loose, batches beyond the cap are dropped. A new
 * master does not know its replicas yet: it first holds batches for every node in the members
 * bucket from the position its last heartbeat gave, until the replica pulls (or passes the cap).
 */
import { asFerryError } from "../../errors.js";
import { memberRecords } from "../../nats/records.js";
import type { Spool } from "../../storage/spool.js";
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
      const upto = await lsnOverCap(spool, cfg.maxBacklogBytes);
      if (upto >= spool.first && spool.first > 0) await spool.prune(upto);
    } catch (err) {
      rt.log.warn({ err: asFerryError(err).message }, "retention pass failed");
    } finally {
      retaining = false;
    }
  };
  const t = setInterval(retain, 1000);
  return () => clearInterval(t);
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
