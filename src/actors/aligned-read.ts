/**
 * A consistent read of the repository with the LSN it corresponds to: on a replica the applied
 * position read in the same transaction; on the master a batch cut at the read's capture
 * position, with no capture cycle between the read's start and the cut.
 */
import { ReplicationError } from "../errors.js";
import type { Spool } from "../storage/spool.js";
import type { Runtime } from "./runtime.js";
import type { Capture } from "./sequencer.js";

export interface AlignableRead {
  header: { seq: number; applied: { lsn: number; epoch: number } };
  close(): Promise<void>;
}

export interface AlignDeps {
  rt: Runtime;
  spool: Spool;
  capture: Capture;
  /** The epoch while this node is the active master with a valid lease, else null. */
  masterEpoch: () => number | null;
}

export async function openAligned<R extends AlignableRead>(d: AlignDeps, open: () => Promise<R>, what: string): Promise<{ reader: R; at: { lsn: number; epoch: number } }> {
  const epoch = d.masterEpoch();
  if (epoch === null) {
    const reader = await open();
    return { reader, at: reader.header.applied };
  }
  const reader = await d.capture.aligned(open, (r) => r.header.seq);
  const last = d.spool.last;
  if (d.masterEpoch() !== epoch || (last && (last.epoch !== epoch || last.lastId > reader.header.seq))) {
    await reader.close();
    throw new ReplicationError("TIMEOUT", `${d.rt.node} could not align a read of ${what} with a batch (the master role changed); retry`);
  }
  return { reader, at: { lsn: d.spool.head, epoch } };
}
