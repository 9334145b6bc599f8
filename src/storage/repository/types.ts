/**
 * The repository interface: what ferry needs of a SQL repository, in terms no database owns.
 * One folder per kind implements it (sqlite/, postgres/); openRepository(url) picks the kind.
 * Everything outside those folders (sequencer, replica, collectors, CLI) speaks only these types.
 *
 * Positions. A *capture position* is an integer that orders committed changes on the master in
 * commit order (SQLite: the change table's id; PostgreSQL: the WAL position of the commit). It is
 * the master's own and means nothing on another node. An *LSN* with its epoch orders the batches
 * ferry ships; replicas record the LSN they applied in the target itself.
 *
 * Row images are ferry's own text format (row-image.ts): a JSON array of typed values. Every
 * adapter encodes into it and decodes from it, so batches are the same whatever the kind.
 */

/** I insert, U update, D delete (row images), X DDL (row holds the statement). */
export type ChangeOp = "I" | "U" | "D" | "X";

/**
 * One captured change. `rid` is the key image of the old row (U when the key changed, D);
 * `row` is the row image of the new row (I, U) or the DDL text (X).
 */
export type Change = [tbl: string | null, op: ChangeOp, rid: string | null, row: string | null];

/**
 * Captured changes as the spool stores them: `data` is `[change,change,...]` in UTF-8, each
 * change a `Change` as JSON, in commit order. A part holds at most the read's `partBytes` bytes,
 * or a single change that alone is larger.
 */
export interface CapturedPart {
  /** Capture positions of its first and last change. */
  first: number;
  last: number;
  /** How many changes it holds, and whether DDL is among them. */
  count: number;
  ddl: boolean;
  data: Uint8Array;
}

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
  /** A capture position at or past this transaction's changes, reached once they are captured (0 when nothing was captured). */
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

/** A schema object as the kind's own DDL text; replicas of the same kind recreate it from `sql`. */
export interface SchemaObject {
  type: string;
  name: string;
  tbl: string;
  sql: string;
}

export interface SnapshotHeader {
  /** Capture position the snapshot contains: every change at or before seq (meaningful on a master). */
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
  /** Next rows (row images) of the current table, at most maxBytes; null when all tables are done. */
  next(maxBytes: number): Promise<{ table: string; rows: string[] } | null>;
  close(): Promise<void>;
}

/** A table's columns as they appear in row images and JSON objects, and its key. */
export interface TableColumns {
  name: string;
  /** The name of the table's database as users write it in DB.TABLE (SQLite: main; PostgreSQL: the schema). */
  db?: string;
  columns: string[];
  key: string[];
  /** Each column's type as the database names it (same order as columns). */
  types?: string[];
  /** Each column's values in neutral terms, for writers of typed files (same order as columns). */
  kinds?: ValueKind[];
  /** Rows in the table now (for progress; given by tableColumns). */
  rows?: number;
}

/**
 * What a column holds, as a typed file stores it: 64-bit integers, doubles, text, bytes, booleans,
 * or `any` (SQLite's untyped and NUMERIC columns, which may hold values of every type).
 */
export type ValueKind = "integer" | "real" | "text" | "blob" | "boolean" | "any";

/** What a sync snapshot reads: one table, one partition of its keys, after a key, rows with a timestamp at least `min`. */
export interface TableReadOpts {
  table: string;
  partition?: { index: number; count: number };
  /** Key image (JSON array) after which to start, in key order. */
  after?: string | null;
  since?: { column: string; min: number };
}

/**
 * A consistent read of one table in ferry's key order (sync.ts compareKeys: NULL < numbers <
 * text by bytes < blobs), rows as JSON Lines of objects (blobs as {"$blob": HEX}).
 */
export interface TableReader {
  header: { seq: number; applied: Position; table: TableColumns };
  /** The next rows, at most maxBytes (at least one row); null when done. */
  next(maxBytes: number): Promise<{ rows: number; text: string } | null>;
  close(): Promise<void>;
}

/** A snapshot being restored in one transaction on the target. */
export interface SnapshotWriter {
  rows(table: string, rows: string[]): Promise<void>;
  commit(at: Position): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Runs `ferry sql` scripts on the master, one transaction each, off the path that renews the
 * lease. Before every commit it asks the gate whether the master may still commit.
 */
export interface SqlRunner {
  execute(sql: string, params: unknown, key?: RequestKey): Promise<ExecuteOutcome>;
  /** Scripts asked and not yet answered: while one runs, a lock on the repository may be ferry's own. */
  readonly running: number;
  close(): Promise<void>;
}

/**
 * What a SqlRunner checks before each commit, in shared memory so a worker thread can read it:
 * `accepting[0] === 1` while the master takes writes, `deadline[0]` the lease's end (absolute ms,
 * performance.timeOrigin + performance.now()).
 */
export interface WriteGate {
  accepting: SharedArrayBuffer;
  deadline: SharedArrayBuffer;
  /** Commits that passed the check and are not done yet (write-gate.ts). */
  committing: SharedArrayBuffer;
}

/** Where a repository lives, as shown in logs and member records: never a password. */
export interface RepositoryLocation {
  kind: RepositoryKind;
  /** The URL without its password. */
  url: string;
  /** A stable identity of the storage (a file's absolute path; host:port/database). */
  id: string;
}

export type RepositoryKind = "sqlite" | "postgres";

/**
 * A range of a table's keys in the kind's key order: keys after `after` (excluded) up to `upto`
 * (included), each a key image; null leaves that end open.
 */
export interface KeyRange {
  after: string | null;
  upto: string | null;
}

/** The rows of a key range and their checksum (checksum.ts: the same rows give the same sum). */
export interface ChunkSum extends KeyRange {
  rows: number;
  sum: string;
}

/** A row as compare narrows a chunk down: its key image and its row image. */
export interface KeyedRow {
  key: string;
  row: string;
}

/**
 * A consistent read of the user tables for compare, with the position it corresponds to (as a
 * snapshot's header), held open until closed.
 */
export interface CompareRead {
  header: { seq: number; applied: Position };
  /** The user tables in this read, with their columns and key. */
  tables: TableColumns[];
  /**
   * The keys of a range cut into chunks of `chunkRows` rows in key order, with their sums: at most
   * `maxChunks` chunks, then `done` false; the last chunk ends where the range ends.
   */
  chunks(table: string, opts: KeyRange & { chunkRows: number; maxChunks: number }): Promise<{ chunks: ChunkSum[]; done: boolean }>;
  /** The sums of contiguous ranges of a table, each beginning after the one before (the ranges another node's chunks() cut). */
  sums(table: string, ranges: KeyRange[]): Promise<ChunkSum[]>;
  /** The rows of one range in key order. */
  rows(table: string, range: KeyRange): Promise<KeyedRow[]>;
  close(): Promise<void>;
}

/** Rows a repair writes (row images) and deletes (key images) in one table. */
export interface RowFix {
  put: string[];
  del: string[];
}

export interface Repository {
  readonly kind: RepositoryKind;
  /** The URL as given (it may hold a password: log `location`, never this). */
  readonly url: string;
  readonly location: RepositoryLocation;
  /** Creates ferry's tables (idempotent). */
  init(): Promise<void>;
  /** Starts capturing every committed change (the master); idempotent. Refuses tables it cannot capture. */
  installCapture(): Promise<void>;
  /**
   * Stops capturing (a replica applies without capture). Changes captured after `after` and not
   * sequenced stay where the kind keeps them, counted by pendingChanges, until restoreSnapshot
   * replaces the repository: promoted again, the node sequences them; a replica of another master
   * reports them and needs a resync.
   */
  removeCapture(after: number): Promise<void>;
  /** fsync every commit (the master) or not (a replica, which re-pulls what a power cut takes). */
  durableCommits(on: boolean): Promise<void>;
  /** Throws RepositoryError REPO_UNAVAILABLE when the repository is gone, unreadable or replaced. */
  checkAvailable(): Promise<void>;
  /** A capture position at or past every committed change (the probe for "is there more?"). */
  changeSeq(): Promise<number>;
  /**
   * Committed changes with from < position <= upto (default: all), in commit order, whole
   * transactions, encoded in parts of at most `partBytes`. `reached` is the position the read has
   * covered when the iteration ends: every committed change at or before it was yielded or lies at
   * or before `from` (it may pass the last change yielded).
   */
  readChanges(from: number, opts: { upto?: number; partBytes: number }): ChangeRead;
  /** Tells capture that every change up to `upto` is in the synced spool (it may release them). */
  confirmCapture(upto: number): Promise<void>;
  /** Captured changes of user tables not yet sequenced (after `after`); heartbeat rows do not count. */
  pendingChanges(after: number): Promise<number>;
  /** Moves the recorded applied position back. */
  resetPosition(p: Position): Promise<void>;
  /** A runner of `ferry sql` transactions guarded by `gate`. */
  openSqlRunner(gate: WriteGate, opts: { busyTimeoutMs: number }): SqlRunner;
  writeHeartbeat(node: string, epoch: number, ts: number): Promise<void>;
  /** Applies batches (in order) in one transaction and records the position of the last; never captured again. */
  applyBatches(batches: { lsn: number; epoch: number; changes: Iterable<Change> }[]): Promise<{ ddl: boolean }>;
  appliedPosition(): Promise<Position>;
  /** Newest master heartbeat row applied or written here. */
  lastHeartbeatTs(): Promise<number>;
  /** The user schema's fingerprint: replicas of one master must have the master's. */
  fingerprint(): Promise<string>;
  /** True when the repository holds user tables with rows. */
  hasUserData(): Promise<boolean>;
  /** Commits by other connections since the last call (outside writers). */
  outsideCommits(): Promise<number>;
  /** A consistent read of the replicated tables (or only `tables`). */
  openSnapshot(opts?: { tables?: string[] }): Promise<SnapshotReader>;
  restoreSnapshot(schema: SchemaObject[]): Promise<SnapshotWriter>;
  /** A user table's columns and key; null when there is no such table. */
  tableColumns(name: string): Promise<TableColumns | null>;
  /** A consistent read of one table (a sync snapshot) with the position it corresponds to. */
  openTableReader(opts: TableReadOpts): Promise<TableReader>;
  /** A consistent read for compare (compare-repair): chunk sums and rows by key range. */
  openCompareRead(): Promise<CompareRead>;
  /**
   * Writes and deletes rows of one table in one transaction that leaves the applied position as it
   * is, and only while it is `at` (else DIVERGED: the rows were read for that position). Not
   * captured. Returns the rows changed.
   */
  repairRows(table: string, fix: RowFix, at: Position): Promise<number>;
  /** A deterministic text dump of every user table (schema and rows), for comparing replicas. */
  dump(): Promise<string>;
  close(): Promise<void>;
}

export interface ChangeRead extends AsyncIterable<CapturedPart> {
  /** Valid once the iteration has ended. */
  reached(): number;
}
