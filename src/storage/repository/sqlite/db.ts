/**
 * Connections to a repository file and what every reader and writer of it shares: statements
 * prepared once per connection, pragmas read through them, the applied position and the change
 * sequence, and the end of a read.
 */
import Database from "better-sqlite3";
import { RepositoryError } from "../../../errors.js";
import type { Position } from "../types.js";

export type DB = Database.Database;

/** Prepared statements by connection and text: the hot paths run the same few statements thousands of times. */
const statements = new WeakMap<DB, Map<string, Database.Statement>>();
export function cached(db: DB, sql: string): Database.Statement {
  let m = statements.get(db);
  if (!m) statements.set(db, (m = new Map()));
  let st = m.get(sql);
  if (!st) m.set(sql, (st = db.prepare(sql)));
  return st;
}
/** A pragma's value through a statement kept per connection: db.pragma() prepares one per call, which showed in profiles. */
export function pragmaValue(db: DB, name: string): number {
  return cached(db, `PRAGMA ${name}`).pluck().get() as number;
}

export function openDb(path: string, readonly: boolean, busyTimeoutMs = 1000): DB {
  try {
    const db = new Database(path, { readonly, fileMustExist: readonly, timeout: busyTimeoutMs });
    if (!readonly) {
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
    }
    return db;
  } catch (err) {
    throw new RepositoryError("REPO_UNAVAILABLE", `cannot open repository ${path}: ${(err as Error).message}`, {
      cause: err,
      hint: "check the path given with --repo and that its directory exists and is writable",
    });
  }
}

/** The applied position, which commits with the data it covers. */
export function positionOf(db: DB): Position {
  const rows = cached(db, `SELECT key, value FROM ferry_state WHERE key IN ('applied_lsn','applied_epoch')`).all() as {
    key: string;
    value: number;
  }[];
  const m = new Map(rows.map((r) => [r.key, Number(r.value)]));
  return { lsn: m.get("applied_lsn") ?? 0, epoch: m.get("applied_epoch") ?? 0 };
}

/** Ends a snapshot read: its open statement, its read transaction, its connection. */
export function endRead(conn: DB, iter: IterableIterator<unknown> | null): void {
  try {
    iter?.return?.();
    if (conn.inTransaction) conn.exec("ROLLBACK");
  } finally {
    conn.close();
  }
}

/**
 * Replicas apply row images as the master committed them: the master enforced the constraints, and
 * what a foreign key cascaded there arrives as its own row changes. With foreign keys on, the
 * INSERT OR REPLACE of an updated parent row would cascade-delete its children on the replica, and
 * a child restored before its parent would be refused. Off for the apply, then as it was.
 */
export function foreignKeysOff(db: DB): () => void {
  const was = pragmaValue(db, "foreign_keys");
  if (was) cached(db, "PRAGMA foreign_keys = OFF").run();
  return () => {
    if (was && db.open) cached(db, "PRAGMA foreign_keys = ON").run();
  };
}
