/** The repository interface: what ferry needs of a SQL repository (SQLite now; PostgreSQL can follow). */

/** I insert, U update, D delete (row images), X DDL (row holds the statement). */
export type ChangeOp = "I" | "U" | "D" | "X";

/**
 * One captured change. `rid` is the JSON key image of the old row (U when the key changed, D);
 * `row` is the JSON row image of the new row (I, U) or the DDL text (X).
 */
export type Change = [tbl: string | null, op: ChangeOp, rid: string | null, row: string | null];

export interface Position {
  lsn: number;
  epoch: number;
}

export interface SqlResult {
  columns?: string[];
  rows?: unknown[][];
  changes: number;
  lastInsertRowid?: number;
}

export interface ExecuteOutcome {
  results: SqlResult[];
  /** The highest change id this transaction's captured changes reach (0 when nothing was captured). */
  lastChangeId: number;
  ddl: boolean;
  /** The request's key was seen before (recorded by master `by`): these are its results, nothing ran again. */
  replayed?: { by: string };
}

/** A write request's key: the client's id, the same on every retry, and the master that runs it. */
export interface RequestKey {
  id: string;
  node: string;
}

export interface SchemaObject {
  type: string;
  name: string;
  tbl: string;
  sql: string;
}

export interface SnapshotHeader {
  /** Capture position the snapshot contains: every change with id <= seq (meaningful on a master). */
  seq: number;
  /** Replicated position the snapshot contains (meaningful on a replica). */
  applied: Position;
  schema: SchemaObject[];
  tables: { name: string; rows: number }[];
  fingerprint: string;
}

/** A consistent read of every replicated table, held open until closed. */
export interface SnapshotReader {
  header: SnapshotHeader;
  /** Next rows (JSON row images) of the current table, at most maxBytes; null when all tables are done. */
  next(maxBytes: number): { table: string; rows: string[] } | null;
  close(): void;
}

/** A table's columns as they appear in row images and JSON objects (the rowid first when it is not aliased), and its key. */
export interface TableColumns {
  name: string;
  columns: string[];
  key: string[];
  /** Rows in the table now (for progress; given by tableColumns). */
  rows?: number;
}

/** What a sync snapshot reads: one table, one partition of its keys, after a key, rows with a timestamp at least `min`. */
export interface TableReadOpts {
  table: string;
  partition?: { index: number; count: number };
  /** Key image (JSON array) after which to start, in key order. */
  after?: string | null;
  since?: { column: string; min: number };
}

/** A consistent read of one table in key order, rows as JSON Lines of objects (blobs as {"$blob": HEX}). */
export interface TableReader {
  header: { seq: number; applied: Position; table: TableColumns };
  /** The next rows, at most maxBytes (at least one row); null when done. */
  next(maxBytes: number): { rows: number; text: string } | null;
  close(): void;
}

/** A snapshot being restored in one transaction on the target. */
export interface SnapshotWriter {
  rows(table: string, rows: string[]): void;
  commit(at: Position): void;
  abort(): void;
}

export interface Repository {
  readonly url: string;
  readonly path: string;
  /** Creates ferry's tables (idempotent). */
  init(): void;
  /** Capture triggers on every replicated table (master), or none (replicas). */
  installCapture(): void;
  removeCapture(): void;
  /** fsync every commit (the master) or not (a replica, which re-pulls what a power cut takes). */
  durableCommits(on: boolean): void;
  /** Throws RepositoryError REPO_UNAVAILABLE when the repository is gone, unreadable or replaced. */
  checkAvailable(): void;
  /** The highest change id ever assigned. */
  changeSeq(): number;
  /** Committed changes with from < id <= upto, in commit order, as [id, change] pairs. */
  readChanges(from: number, upto?: number): IterableIterator<[number, Change]>;
  /** The same, each change encoded as a JSON array by the database: [id, op, json]. */
  readEncodedChanges(from: number, upto?: number): IterableIterator<[number, string, string]>;
  /** Captured changes of user tables not yet sequenced (id > after); heartbeat rows do not count. */
  pendingChanges(after: number): number;
  /** Moves the recorded applied position back. */
  resetPosition(p: Position): void;
  /** Deletes the oldest captured changes up to id (already spooled), at most `limit`; returns how many. */
  pruneChanges(upto: number, limit: number): number;
  /** Runs a script as one transaction on the master, capturing DDL; `beforeCommit` may veto. */
  execute(script: string, params: unknown, beforeCommit: () => void, key?: RequestKey): ExecuteOutcome;
  writeHeartbeat(node: string, epoch: number, ts: number): void;
  /** Applies batches (in order) in one transaction and records the position of the last. */
  applyBatches(batches: { lsn: number; epoch: number; changes: Iterable<Change> }[]): { ddl: boolean };
  appliedPosition(): Position;
  /** Newest master heartbeat row applied or written here. */
  lastHeartbeatTs(): number;
  fingerprint(): string;
  /** True when the repository holds user tables with rows. */
  hasUserData(): boolean;
  /** Commits by other connections since the last call (outside writers). */
  outsideCommits(): number;
  /** A consistent read of the replicated tables (or only `tables`). */
  openSnapshot(opts?: { tables?: string[] }): SnapshotReader;
  restoreSnapshot(schema: SchemaObject[]): SnapshotWriter;
  /** A user table's columns and key; null when there is no such table. */
  tableColumns(name: string): TableColumns | null;
  /** A consistent read of one table (a sync snapshot) with the position it corresponds to. */
  openTableReader(opts: TableReadOpts): TableReader;
  /** A deterministic text dump of every user table (schema and rows), for comparing replicas. */
  dump(): string;
  close(): void;
}
