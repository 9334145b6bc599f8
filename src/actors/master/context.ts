/**
 * What the master's services share while this node is the active master: the write gate and the
 * SQL runner behind it, the switchover in progress, and the guards that refuse a request once the
 * lease is gone. Each service (sql.ts, pull.ts, switchover.ts, heartbeat-row.ts, retention.ts)
 * starts with it and returns how to stop.
 */
import { ClusterError } from "../../errors.js";
import type { SqlRunner, WriteGate } from "../../storage/repository/types.js";
import { newWriteGate, setAccepting } from "../../storage/repository/write-gate.js";
import type { Capture, SequencerDeps } from "../sequencer.js";
import type { NodeEvent } from "../../machines/node.js";

export interface MasterDeps extends SequencerDeps {
  capture: Capture;
}

export class MasterContext {
  readonly gate: WriteGate;
  /** Off the main thread's path: a long transaction does not stop it from renewing the lease. */
  readonly exec: SqlRunner;
  stopped = false;
  /** The node a switchover hands the master role to, while it runs. */
  switching: string | null = null;

  constructor(
    readonly d: MasterDeps,
    readonly sendBack: (e: NodeEvent) => void,
  ) {
    this.gate = newWriteGate(d.clock.shared.buffer as SharedArrayBuffer);
    this.exec = d.repo.openSqlRunner(this.gate, { busyTimeoutMs: d.rt.config.nats.requestTimeoutMs / 2 });
    setAccepting(this.gate, true);
  }

  notMaster(): ClusterError {
    return new ClusterError("FENCED", `${this.d.rt.node} is no longer the master (lease not renewed in time)`, {
      hint: "retry: the request goes to whichever node holds the master lease",
    });
  }

  guardLease(): void {
    if (this.stopped || !this.d.clock.valid()) throw this.notMaster();
  }

  /** Writes also stop during a switchover; batches keep flowing so the target can catch up. */
  guardWrites(): void {
    this.guardLease();
    if (this.switching) {
      throw new ClusterError("FENCED", `${this.d.rt.node} is handing the master role to ${this.switching} (switchover)`, {
        hint: "retry in a moment: the new master takes requests once the switchover completes",
      });
    }
  }

  setAccepting(on: boolean): void {
    setAccepting(this.gate, on);
  }
}
