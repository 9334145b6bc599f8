/**
 * The sink seam: how a pack of rows becomes a file at the sync destination. One file per format
 * implements Sink (jsonl.ts, csv.ts, parquet.ts); index.ts picks one by the task's format. The
 * synctool, sync-io.ts and destination.ts see only these types.
 */
import type { ValueKind } from "../repository/types.js";

export const SINK_FORMATS = ["jsonl", "csv", "parquet"] as const;
export type SinkFormat = (typeof SINK_FORMATS)[number];

/** The table as a sink writes it: columns with their value kinds, the key, and whether rows carry change columns. */
export interface SinkTable {
  columns: string[];
  kinds: ValueKind[];
  key: string[];
  /** Modes 1 and 2: every row carries `_op`, `_lsn` and `_seq` (snapshot rows too, as inserts at their LSN). */
  changes: boolean;
}

/** Rows of one file: the collector's JSON Lines of one or more consecutive packs of a subtask. */
export interface SinkBatch {
  kind: "snapshot" | "stream";
  /** The LSN a snapshot's rows were read at (their `_lsn`). */
  lsn: number;
  /** The subtask's ordinal of the batch's first record (1-based; snapshot rows count): `_seq`. */
  firstSeq: number;
  payloads: Uint8Array[];
}

export interface Sink {
  readonly format: SinkFormat;
  /** File name extension, without the dot. */
  readonly ext: string;
  /** False: one file per pack (a row format); true: consecutive packs are combined into files sized for readers. */
  readonly combines: boolean;
  encode(batch: SinkBatch): Uint8Array;
  /** The key image (JSON array text) of the last row of a snapshot file: where a restarted subtask continues. */
  lastKey(path: string): Promise<string>;
}
