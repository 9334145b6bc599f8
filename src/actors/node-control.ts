/**
 * Operations on one node, on ferry.<cluster>.node.<id>.control: promotion asked by a watchdog or
 * a switchover (the node then takes the master lease, on its own clock's judgement of expiry),
 * its cancellation, and the reachability check of failover prerequisite 1.
 */
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError } from "../errors.js";
import { decodeJson, encodeJson, errorReply, okReply } from "../nats/codec.js";
import { controlRequest } from "../nats/messages.js";
import type { NodeActor } from "../machines/node.js";
import type { Runtime } from "./runtime.js";

export function startNodeControl(rt: Runtime, actor: NodeActor, state: () => { node: string; replica: string | null }): Subscription {
  return rt.nc.subscribe(rt.subj.node(rt.node).control, {
    callback: (_e, msg) => {
      (async () => {
        const req = decodeJson(msg.subject, msg.data, controlRequest);
        const s = state();
        switch (req.op) {
          case "promote":
            if (s.node !== "standby" || s.replica === "needsResync" || s.replica === "resyncing") {
              throw new ClusterError("NOT_MASTER", `${rt.node} cannot be promoted while ${s.node}${s.replica ? `/${s.replica}` : ""}`);
            }
            actor.send({ type: "PROMOTE" });
            return okReply(msg, { node: rt.node, accepted: true });
          case "promote-cancel":
            actor.send({ type: "CANCEL_PROMOTE" });
            return okReply(msg, { node: rt.node });
          case "reach": {
            const results = await Promise.all(
              req.members.map((m) =>
                rt.nc.request(rt.subj.ping(m), encodeJson({ from: rt.node }), { timeout: req.timeoutMs }).then(
                  () => null,
                  () => m,
                ),
              ),
            );
            return okReply(msg, { node: rt.node, unreachable: results.filter((r): r is string => r !== null) });
          }
        }
      })().catch((err) => errorReply(msg, err));
    },
  });
}
