/**
 * Every process publishes its status as JSON on ferry.<cluster>.hb.<role>.<node> every second,
 * keeps it under its node id in the members bucket, answers pings on ferry.<cluster>.ping.<node>
 * with the same status,
 * and (with --metrics-port) serves the same status as Prometheus metrics.
 */
import { fromCallback } from "xstate";
import { encodeJson } from "../nats/codec.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { serve } from "../nats/rpc.js";
import type { Runtime } from "./runtime.js";

export const HEARTBEAT_MS = 1000;

export function heartbeatLogic(rt: Runtime, status: () => Record<string, unknown>) {
  return fromCallback(() => {
    const subject = rt.subj.heartbeat(rt.role, rt.node);
    let busy = false;
    const beat = async () => {
      if (busy) return;
      busy = true;
      try {
        const body = encodeJson({ ...status(), ts: Date.now() });
        rt.nc.publish(subject, body);
        await rt.buckets.members.put(rt.node, body);
      } catch (err) {
        rt.log.debug({ err: String(err) }, "heartbeat not delivered");
      } finally {
        busy = false;
      }
    };
    void beat();
    const t = setInterval(beat, HEARTBEAT_MS);
    // The status now, for a watchdog choosing whom to promote (heartbeats may be a second old).
    const ping = serve(rt.nc, rt.log, ENDPOINTS.ping, rt.subj.ping(rt.node), () => ({ ...status(), node: rt.node, ts: Date.now() }));
    const metrics = rt.config.metrics.port ? import("./metrics.js").then((m) => m.startMetrics(rt, status)) : null;
    return () => {
      clearInterval(t);
      ping.unsubscribe();
      void metrics?.then((stop) => stop());
    };
  });
}
