/**
 * A batch's meta record: the sequencer makes it, the spool keeps it with the batch's parts, and a
 * pull reply carries it to a replica. It lives below storage/ and nats/, which both use it and
 * import neither the other.
 */
export interface BatchMeta {
  lsn: number;
  epoch: number;
  /** Master's wall clock when the batch was sequenced (ms). */
  ts: number;
  parts: number;
  bytes: number;
  /** Sum of bytes of every batch up to and including this one; backlog = cum(head) - cum(acked). */
  cum: number;
  /** Capture range on the master that produced it. */
  firstId: number;
  lastId: number;
  /** Schema fingerprint after the batch; "" when the schema changed while the batch was read (not checked). */
  fp: string;
  ddl: boolean;
}
