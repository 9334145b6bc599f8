/**
 * What the active master serves: SQL requests, batch pulls, switchovers, the heartbeat row, and
 * retention with the backlog cap (one file each in this folder). Started on entering `active`,
 * stopped on leaving it (fenced, demoted), so a node that is not the master answers none of these.
 */
import { fromCallback } from "xstate";
import { encodeJson } from "../../nats/codec.js";
import { MasterContext, type MasterDeps } from "./context.js";
import { startHeartbeatRow } from "./heartbeat-row.js";
import { startPull } from "./pull.js";
import { startRetention } from "./retention.js";
import { startSql } from "./sql.js";
import { startSwitchover } from "./switchover.js";

export type { MasterDeps } from "./context.js";

export function masterServices(d: MasterDeps) {
  return fromCallback(({ sendBack }) => {
    const ctx = new MasterContext(d, sendBack);
    const subs = [startSql(ctx), startPull(ctx), startSwitchover(ctx)];
    const stops = [startHeartbeatRow(ctx), startRetention(ctx)];
    // Serving now: a replica whose first pull found this new master not yet serving waits in its
    // backoff for a notification; without this one it would wait for the next batch, or a second.
    d.rt.nc.publish(d.rt.subj.notify, encodeJson({ node: d.rt.node, epoch: d.clock.epoch, lsn: d.spool.head }));
    return () => {
      ctx.stopped = true;
      ctx.setAccepting(false);
      void ctx.exec.close();
      for (const stop of stops) stop();
      for (const s of subs) s.unsubscribe();
      const err = ctx.notMaster();
      d.progress.failAll(err);
      d.replicas.failWaiters(err);
      void d.replicas.flush().catch(() => {});
    };
  });
}
