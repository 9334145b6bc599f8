/**
 * Operations on one node, on ferry.<cluster>.node.<id>.control: promotion asked by a watchdog or
 * a switchover (the node then takes the master lease, on its own clock's judgement of expiry),
 * its cancellation, and the reachability check of failover prerequisite 1.
 */
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError } from "../errors.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call, serve } from "../nats/rpc.js";
import type { NodeActor } from "../machines/node.js";
import type { Runtime } from "./runtime.js";

export function startNodeControl(rt: Runtime, actor: NodeActor, state: () => { node: string; replica: string | null; rejoining: boolean }): Subscription {
  return serve(rt.nc, rt.log, ENDPOINTS.control, rt.subj.node(rt.node).control, async (req) => {
    const s = state();
    switch (req.op) {
      case "promote":
        // Asked again while it promotes itself, or once it is the master: the same answer, nothing started twice.
        if (s.node === "promoting" || s.node === "active") return { node: rt.node, accepted: true, already: s.node };
        if (s.node !== "standby" || s.replica === "needsResync" || s.replica === "resyncing" || s.rejoining) {
          throw new ClusterError("NOT_MASTER", `${rt.node} cannot be promoted while ${s.rejoining ? "it repairs the rows of batches it dropped at a rejoin" : `${s.node}${s.replica ? `/${s.replica}` : ""}`}`);
        }
        actor.send({ type: "PROMOTE" });
        return { node: rt.node, accepted: true };
      case "promote-cancel":
        actor.send({ type: "CANCEL_PROMOTE" });
        return { node: rt.node };
      case "reach": {
        const results = await Promise.all(
          req.members.map((m) =>
            call(rt.nc, ENDPOINTS.ping, rt.subj.ping(m), { from: rt.node }, { timeoutMs: req.timeoutMs }).then(
              () => null,
              () => m,
            ),
          ),
        );
        return { node: rt.node, unreachable: results.filter((r): r is string => r !== null) };
      }
    }
  });
}
