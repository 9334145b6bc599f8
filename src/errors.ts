/**
 * Every failure a user or a script can meet is a FerryError with a stable `code`.
 * Callers switch on `code` (or on the class); the CLI prints `message` and `hint`.
 */
export type ErrorCode =
  | "CONFIG_INVALID"
  | "USAGE"
  | "NATS_UNAVAILABLE"
  | "PERMISSION_DENIED"
  | "NO_ACTIVE_MASTER"
  | "NOT_MASTER"
  | "IN_PROGRESS"
  | "FENCED"
  | "STALE_EPOCH"
  | "NODE_ID_IN_USE"
  | "REPO_IN_USE"
  | "DATA_DIR_IN_USE"
  | "DATA_DIR_UNWRITABLE"
  | "REPO_UNAVAILABLE"
  | "REPO_NOT_INITIALISED"
  | "SQL_ERROR"
  | "SCHEMA_MISMATCH"
  | "CAPTURE_LOST"
  | "BACKLOG_EXCEEDED"
  | "NEEDS_RESYNC"
  | "REPAIR_TOO_LARGE"
  | "DIVERGED"
  | "SNAPSHOT_REQUIRED"
  | "SYNC_REPLICAS_TIMEOUT"
  | "MALFORMED_MESSAGE"
  | "TIMEOUT"
  | "NOT_FOUND"
  | "NO_ACTIVE_SYNCTOOL"
  | "NO_COLLECTOR"
  | "COLLECTOR_UNAVAILABLE"
  | "TASK_EXISTS"
  | "DESTINATION_UNWRITABLE"
  | "DESTINATION_NOT_EMPTY"
  | "SINK_TYPE_MISMATCH"
  | "SINK_SCHEMA_CHANGED"
  | "INTERNAL";

export interface ErrorOptions {
  hint?: string;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  readonly details?: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, opts: ErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    // Each class its own name in stack traces and logs, without a constructor that only says it.
    this.name = new.target.name;
    this.code = code;
    this.hint = opts.hint;
    this.details = opts.details;
  }
  toWire(): WireError {
    return { code: this.code, message: this.message, hint: this.hint, details: this.details };
  }
}

/** A bad config file, environment variable or flag value; names the field. */
export class ConfigError extends FerryError {
  readonly field: string;
  constructor(field: string, reason: string, opts: ErrorOptions = {}) {
    super("CONFIG_INVALID", `invalid config: ${field}: ${reason}`, {
      hint: opts.hint ?? "fix the value (see config/example.json for every field)",
      ...opts,
    });
    this.field = field;
  }
}

/** A command line the CLI cannot act on. */
export class UsageError extends FerryError {
  constructor(message: string, hint = "run the command with --help") {
    super("USAGE", message, { hint });
  }
}

/** Who may act: no master, not the master, fenced, a stale epoch, an id already taken. */
export class ClusterError extends FerryError {}

/**
 * The repository: unavailable, a bad statement, a schema that differs. `details.busy` marks a
 * lock held by another writer: REPO_UNAVAILABLE for the moment, not an outage.
 */
export class RepositoryError extends FerryError {}

/** A process's own data directory (its LevelDB): in use by another process, or refusing writes (a full disk). */
export class StorageError extends FerryError {}

/** The replication stream: backlog cap, resync needed, replicas that did not confirm. */
export class ReplicationError extends FerryError {}

/** Online-to-offline sync: tasks, collectors, the synctool and the destination. */
export class SyncError extends FerryError {}

/** A message on a subject that does not decode or does not have the expected shape. */
export class MalformedMessageError extends FerryError {
  constructor(subject: string, reason: string, cause?: unknown) {
    super("MALFORMED_MESSAGE", `malformed message on ${subject}: ${reason}`, { cause });
  }
}

export class TimeoutError extends FerryError {
  constructor(message: string, opts: ErrorOptions = {}) {
    super("TIMEOUT", message, opts);
  }
}

export interface WireError {
  code: ErrorCode;
  message: string;
  hint?: string;
  details?: Record<string, unknown>;
}

const classByCode: Partial<Record<ErrorCode, new (code: ErrorCode, m: string, o: ErrorOptions) => FerryError>> = {
  NO_ACTIVE_MASTER: ClusterError,
  PERMISSION_DENIED: ClusterError,
  NOT_MASTER: ClusterError,
  IN_PROGRESS: ClusterError,
  FENCED: ClusterError,
  STALE_EPOCH: ClusterError,
  NODE_ID_IN_USE: ClusterError,
  REPO_IN_USE: ClusterError,
  DATA_DIR_IN_USE: StorageError,
  DATA_DIR_UNWRITABLE: StorageError,
  REPO_UNAVAILABLE: RepositoryError,
  SQL_ERROR: RepositoryError,
  SCHEMA_MISMATCH: RepositoryError,
  CAPTURE_LOST: RepositoryError,
  BACKLOG_EXCEEDED: ReplicationError,
  NEEDS_RESYNC: ReplicationError,
  REPAIR_TOO_LARGE: ReplicationError,
  DIVERGED: ReplicationError,
  SNAPSHOT_REQUIRED: ReplicationError,
  SYNC_REPLICAS_TIMEOUT: ReplicationError,
  NO_ACTIVE_SYNCTOOL: SyncError,
  NO_COLLECTOR: SyncError,
  COLLECTOR_UNAVAILABLE: SyncError,
  TASK_EXISTS: SyncError,
  DESTINATION_UNWRITABLE: SyncError,
  DESTINATION_NOT_EMPTY: SyncError,
  SINK_TYPE_MISMATCH: SyncError,
  SINK_SCHEMA_CHANGED: SyncError,
};

/** The error of a code, of its class (a ClusterError for NO_ACTIVE_MASTER, ...). */
export function errorOf(code: ErrorCode, message: string, opts: ErrorOptions = {}): FerryError {
  const Cls = classByCode[code];
  return Cls ? new Cls(code, message, opts) : new FerryError(code, message, opts);
}

/** Rebuilds the typed error a peer sent in a reply. */
export function fromWire(w: WireError): FerryError {
  return errorOf(w.code, w.message, { hint: w.hint, details: w.details });
}

/** Wraps anything thrown into a FerryError, keeping FerryErrors as they are. */
export function asFerryError(err: unknown, code: ErrorCode = "INTERNAL"): FerryError {
  if (err instanceof FerryError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new FerryError(code, message, { cause: err });
}
