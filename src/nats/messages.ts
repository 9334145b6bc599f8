/** Schemas of every request ferry answers (anything else is a MALFORMED_MESSAGE) and of the messages it only publishes. */
import { z } from "zod";
import type { BatchMeta } from "../batch.js";

const id = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/);
const lsn = z.number().int().nonnegative();

export const sqlRequest = z.object({
  sql: z.string().min(1),
  params: z.union([z.array(z.unknown()), z.record(z.string(), z.unknown())]).optional(),
  /** The client's key for this write, the same on every retry: a master runs a key's write at most once. */
  id: z.string().min(8).max(100).optional(),
  /** The epoch of the master the client addressed (node subject): a node not master in it answers NOT_MASTER at once. */
  epoch: lsn.min(1).optional(),
});
export type SqlRequest = z.infer<typeof sqlRequest>;

export const pullRequest = z.object({
  node: id,
  /** Highest epoch the replica has seen; a master with a lower one is stale. */
  epoch: lsn,
  /** Next record wanted: batch lsn and part. */
  lsn: lsn.min(1),
  part: lsn,
  /** The replica's newest complete batch, to detect divergence. */
  last: z.object({ lsn, epoch: lsn }),
  applied: lsn,
  fp: z.string(),
  maxBytes: z.number().int().positive(),
  /** Changes captured on the replica that were never sequenced. */
  unsequenced: lsn.default(0),
});
export type PullRequest = z.infer<typeof pullRequest>;

export interface PullRecordHeader {
  lsn: number;
  part: number;
  parts: number;
  len: number;
  meta?: BatchMeta;
}
export interface PullReplyHeader {
  ok: true;
  epoch: number;
  head: number;
  /** The master waits for acknowledgements (synchronous replication): pull again at once. */
  ack?: boolean;
  records: PullRecordHeader[];
}

export const snapshotRequest = z.discriminatedUnion("op", [
  z.object({
    op: z.literal("begin"),
    /** Who asks: a replica to resync (the master only; it then holds batches for it) or a reader. */
    node: id,
    purpose: z.enum(["resync", "read"]).default("resync"),
    tables: z.array(z.string()).optional(),
    /** A sync read of one table (purpose read): its `next` replies are frames of JSON Lines. */
    filter: z
      .object({
        table: z.string().min(1),
        partition: z.object({ index: z.number().int().nonnegative(), count: z.number().int().positive().max(256) }).optional(),
        after: z.string().nullable().optional(),
        since: z.object({ column: z.string().min(1), min: z.number() }).optional(),
      })
      .optional(),
  }),
  z.object({ op: z.literal("next"), session: z.string(), maxBytes: z.number().int().positive() }),
  z.object({ op: z.literal("end"), session: z.string() }),
  /** A table's columns and key (for collectors and the synctool). */
  z.object({ op: z.literal("info"), table: z.string().min(1) }),
]);
export type SnapshotRequest = z.infer<typeof snapshotRequest>;

/**
 * A reader (collector) asks a node for the spooled parts from batch `lsn`, part `part` on, up to what
 * the node has applied (a batch larger than maxBytes comes in several replies, whole parts each).
 */
export const changesRequest = z.object({ lsn: lsn.min(1), part: lsn.default(0), maxBytes: z.number().int().positive() });
export type ChangesRequest = z.infer<typeof changesRequest>;

/** `ack`: the master waits for acknowledgements up to `lsn` (a retried write answered from its record): pull now. */
export const notifyMessage = z.object({ node: id, epoch: lsn, lsn, ack: z.boolean().optional() });
export type NotifyMessage = z.infer<typeof notifyMessage>;

const batchMeta = z.object({
  lsn: lsn.min(1),
  epoch: lsn,
  ts: z.number(),
  parts: z.literal(1),
  bytes: lsn,
  cum: lsn,
  firstId: lsn,
  lastId: lsn,
  fp: z.string(),
  ddl: z.boolean(),
}) satisfies z.ZodType<BatchMeta>;

/**
 * The header of a pushed batch (a frame on `repl.push`, then the batch's one part): what a pull
 * reply would have said of it, and which master sent it. Only a batch of one part is pushed.
 */
export const pushHeader = z.object({
  node: id,
  epoch: lsn,
  head: lsn,
  ack: z.boolean(),
  records: z.tuple([z.object({ lsn: lsn.min(1), part: z.literal(0), parts: z.literal(1), len: lsn, meta: batchMeta })]),
});
export type PushHeader = z.infer<typeof pushHeader>;

/** A decision or fault, published by the process that made or saw it (actors/alerts.ts); `data` depends on the kind. */
export const alertMessage = z.looseObject({
  /** ISO 8601. */
  ts: z.string(),
  cluster: z.string(),
  node: z.string(),
  role: z.string(),
  kind: z.string(),
  severity: z.enum(["info", "warning", "critical"]),
  message: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
});
export type Alert = z.infer<typeof alertMessage>;
export type Severity = Alert["severity"];

/** A replica's progress through a resync from `master`: started, copying (now and then), then done or failed. */
export const resyncProgressMessage = z.looseObject({
  node: id,
  master: id,
  phase: z.enum(["started", "copying", "done", "failed"]),
  lsn: lsn.optional(),
  totalRows: lsn.optional(),
  rows: lsn.optional(),
  table: z.string().optional(),
  error: z.string().optional(),
});

export const resyncRequest = z.object({}).strict();

/** Operations on one node: promotion (by a watchdog or a switchover) and reachability checks. */
export const controlRequest = z.discriminatedUnion("op", [
  z.object({ op: z.literal("promote") }),
  z.object({ op: z.literal("promote-cancel") }),
  z.object({ op: z.literal("reach"), members: z.array(id), timeoutMs: z.number().int().positive().max(10_000).default(1000) }),
]);
export type ControlRequest = z.infer<typeof controlRequest>;

export const switchoverRequest = z.object({ to: id, timeoutMs: z.number().int().positive().default(10_000) });

/** Header of a sync read's `next` reply frame: `rows` JSON Lines follow (0: the read is complete). */
export interface TableChunkHeader {
  ok: true;
  rows: number;
  /** Bytes of the JSON Lines payload. */
  len: number;
}

const syncSegment = z.object({ lsn, after: z.string().nullable(), firstRow: z.number().int().positive() });
/** A subtask's position; see src/storage/sync.ts. */
export const syncPosition = z.discriminatedUnion("phase", [
  z.object({ phase: z.literal("snapshot"), segs: z.array(syncSegment), rows: lsn, key: z.string().nullable() }),
  z.object({ phase: z.literal("stream"), segs: z.array(syncSegment), lsn: lsn.min(1), part: lsn, off: lsn }),
  z.object({ phase: z.literal("done") }),
]);

/** The synctool asks a collector for the pack of a subtask that starts at `pos`. */
export const packRequest = z.object({
  /** Task id (a task deleted and created again has a new one) and partition. */
  task: z.string().min(1),
  table: z.string().min(1),
  part: z.number().int().nonnegative(),
  partitions: z.number().int().positive().max(256),
  mode: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  since: z.object({ column: z.string().min(1), min: z.number() }).optional(),
  pos: syncPosition,
  maxBytes: z.number().int().positive(),
});
export type PackRequest = z.infer<typeof packRequest>;

/** Header of a pack reply frame: `records` JSON Lines follow; `next` is the position after them. */
export interface PackHeader {
  ok: true;
  records: number;
  next: z.infer<typeof syncPosition>;
  /** The collector stopped before catching up (pack full or time budget): ask again at once. */
  more: boolean;
  /** Bytes of the JSON Lines payload. */
  len: number;
}

const tableName = z.string().min(1).max(255);
export const taskCreateRequest = z.object({
  db: z.string().min(1),
  table: tableName,
  mode: z.number().int(),
  ts: z.number().int().optional(),
  tsColumn: z.string().min(1).optional(),
  dest: z.string().min(1),
  partitions: z.number().int().optional(),
  /** A sink format; the synctool refuses an unknown one by name. Absent: parquet. */
  format: z.string().optional(),
});
export type TaskCreateRequest = z.infer<typeof taskCreateRequest>;
export const taskDeleteRequest = z.object({ db: z.string().min(1), table: tableName });
export const emptyRequest = z.object({}).passthrough();

const session = z.string().min(1).max(100);
const keyRange = z.object({ after: z.string().nullable(), upto: z.string().nullable() });

/**
 * Compare and repair (client/compare.ts): a replica is held at its applied position (`hold`), the
 * master opens a read at an LSN (`begin` without lsn), each replica opens its read once it has
 * applied exactly that LSN (`begin` with lsn); then chunk sums, the rows of differing chunks, and
 * on a held replica the repair of its rows. Chunks travel as [upto, rows, sum] (each range begins
 * after the one before) and sums as [rows, sum]: narrowing a few rows down costs little.
 */
export type WireChunk = [upto: string | null, rows: number, sum: string];
export const compareRequest = z.discriminatedUnion("op", [
  z.object({ op: z.literal("hold"), holder: session }),
  z.object({ op: z.literal("release"), holder: session }),
  z.object({ op: z.literal("begin"), holder: session, lsn: lsn.optional(), repair: z.boolean().default(false) }),
  z.object({
    op: z.literal("chunks"),
    session,
    table: z.string().min(1),
    chunkRows: z.number().int().positive(),
    after: z.string().nullable().default(null),
    upto: z.string().nullable().default(null),
    maxChunks: z.number().int().positive().max(10_000).default(500),
  }),
  /** The ranges after `after` up to each of `bounds` in turn (the master's chunks, as it sent them). */
  z.object({ op: z.literal("sums"), session, table: z.string().min(1), after: z.string().nullable(), bounds: z.array(z.string().nullable()) }),
  z.object({ op: z.literal("rows"), session, table: z.string().min(1), range: keyRange }),
  z.object({ op: z.literal("repair"), session, table: z.string().min(1), put: z.array(z.string()), del: z.array(z.string()) }),
  z.object({ op: z.literal("end"), session }),
]);
export type CompareRequest = z.infer<typeof compareRequest>;
