/**
 * The heartbeat row: every replica can tell its lag in ms even when nobody writes. A repository
 * that cannot take it (locked, gone) is reported as down until a heartbeat row gets through. A
 * writer holding the lock at the moment of one beat is normal; the repository is reported as down
 * only when heartbeat rows have failed for longer than two heartbeat periods, and never for a lock
 * while ferry's own SQL worker runs a script (a long transaction of ferry's is not an outage).
 */
import { asFerryError } from "../../errors.js";
import type { MasterContext } from "./context.js";

export function startHeartbeatRow(ctx: MasterContext): () => void {
  const { rt, repo, clock } = ctx.d;
  const cfg = rt.config.replication;
  let failingSince = 0;
  let reported = false;
  const beat = async () => {
    if (ctx.stopped || !clock.valid()) return;
    try {
      await repo.checkAvailable();
      await repo.writeHeartbeat(rt.node, clock.epoch, Date.now());
      ctx.sendBack({ type: "KICK" });
      if (reported) ctx.sendBack({ type: "REPO_UP" });
      failingSince = 0;
      reported = false;
    } catch (err) {
      const e = asFerryError(err);
      if (e.code !== "REPO_UNAVAILABLE") return void rt.log.warn({ err: e.message }, "heartbeat row not written");
      const busy = e.details?.busy === true;
      if (busy && ctx.exec.running > 0) {
        failingSince = 0;
        return void rt.log.debug("heartbeat row waits: ferry's own SQL worker holds the write lock");
      }
      failingSince ||= Date.now();
      if (!reported && (!busy || Date.now() - failingSince >= 2 * cfg.heartbeatMs)) {
        ctx.sendBack({ type: "REPO_DOWN", code: e.code, message: e.message });
        reported = true;
      }
    }
  };
  let beating = false;
  const tick = () => {
    if (beating) return;
    beating = true;
    void beat().finally(() => (beating = false));
  };
  tick();
  const t = setInterval(tick, cfg.heartbeatMs);
  return () => clearInterval(t);
}
