/** Planned switchover: stop taking writes, let the target hold everything, pass the lease by compare-and-set. */
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError, ReplicationError } from "../../errors.js";
import { isWrongSequence } from "../../nats/buckets.js";
import { encodeJson } from "../../nats/codec.js";
import { ENDPOINTS } from "../../nats/protocol.js";
import { decodeLease, LEASE_KEY } from "../../nats/records.js";
import { call, serve } from "../../nats/rpc.js";
import { commitsDrained } from "../../storage/repository/write-gate.js";
import type { MasterContext } from "./context.js";

export function startSwitchover(ctx: MasterContext): Subscription {
  const { rt, spool, clock, replicas } = ctx.d;
  return serve(rt.nc, rt.log, ENDPOINTS.switchover, rt.subj.switchover, async (req) => {
    ctx.guardLease();
    if (req.to === rt.node) throw new ClusterError("NOT_MASTER", `${rt.node} is already the master`);
    // One handover at a time: a second would pass the lease twice.
    if (ctx.switching) {
      throw new ClusterError("IN_PROGRESS", `a switchover from ${rt.node} to ${ctx.switching} is in progress`, {
        hint: "wait for it to end (ferry status shows the master lease), then ask again if still needed",
      });
    }
    const target = replicas.get(req.to);
    if (!target || target.needsResync) {
      throw new ClusterError("NOT_MASTER", `${req.to} is not a current replica of ${rt.node}`, { hint: "ferry status lists the replicas; pick one that is streaming" });
    }
    const started = Date.now();
    const deadline = started + req.timeoutMs;
    ctx.switching = req.to;
    ctx.setAccepting(false);
    rt.alerts.raise("switchover-started", "info", `switchover from ${rt.node} to ${req.to}: writes paused`, { to: req.to });
    const control = rt.subj.node(req.to).control;
    let handedOver = false;
    try {
      // A commit that passed the gate before it closed lands now, not behind the last batch.
      if (!(await commitsDrained(ctx.gate, rt.config.nats.requestTimeoutMs))) {
        throw new ClusterError("TIMEOUT", `a transaction on ${rt.node} did not finish committing in time`, { hint: "ask again once the long transaction has ended" });
      }
      await ctx.d.capture(); // everything committed is sequenced
      const head = spool.head;
      await call(rt.nc, ENDPOINTS.control, control, { op: "promote" }, { timeoutMs: rt.config.nats.requestTimeoutMs, peer: req.to });
      // A replica that took the last batches pushed may not have said so yet: it pulls (and so says) now.
      rt.nc.publish(rt.subj.notify, encodeJson({ node: rt.node, epoch: clock.epoch, lsn: head, ack: true }));
      while ((replicas.get(req.to)?.acked ?? 0) < head) {
        if (Date.now() > deadline) throw new ReplicationError("TIMEOUT", `${req.to} did not catch up to LSN ${head} within ${req.timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
      if (!clock.valid()) throw ctx.notMaster();
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
        ctx.switching = null;
        ctx.setAccepting(true);
        void call(rt.nc, ENDPOINTS.control, control, { op: "promote-cancel" }, { timeoutMs: 1000 }).catch(() => {});
        rt.alerts.raise("switchover-failed", "warning", `switchover to ${req.to} failed; ${rt.node} stays master: ${(err as Error).message}`);
      }
      throw err;
    }
  });

  /** Writes the handover by compare-and-set; a renew of ours landing meanwhile moves the revision, so read and retry. */
  async function handOver(value: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const e = await rt.buckets.leases.get(LEASE_KEY.master);
      const v = e?.operation === "PUT" ? decodeLease(e.value) : null;
      if (!e || v?.instance !== rt.instance || !clock.valid()) throw ctx.notMaster();
      try {
        await rt.buckets.leases.update(LEASE_KEY.master, value, e.revision);
        return;
      } catch (err) {
        if (attempt >= 5 || !isWrongSequence(err)) throw err;
      }
    }
  }

  async function waitForHolder(node: string, deadline: number): Promise<number> {
    for (;;) {
      const e = await rt.buckets.leases.get(LEASE_KEY.master);
      const v = e?.operation === "PUT" ? decodeLease(e.value) : null;
      if (v && v.node === node && !v.instance.startsWith("handover-")) return v.epoch;
      if (Date.now() > deadline) throw new ClusterError("TIMEOUT", `${node} did not take the master lease in time`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}
