/**
 * The SQLite repository adapter (better-sqlite3).
 *
 * Capture: AFTER INSERT/UPDATE/DELETE triggers write JSON row images to `ferry_changes`, so
 * every writer is captured (ferry's SQL requests, the sqlite3 shell, applications). Triggers
 * exist only while the node is the master: replicas apply without them, so applied changes are
 * never captured again and capture costs replicas nothing.
 *
 * Row images are `json_array(...)` of the row's values, blobs tagged as ["x", HEX]; replicas decode
 * them with decodeImage (row-image.ts), which keeps integer, real, text and blob types exact.
 *
 * This class holds the connections and what they cache; the rest of the folder holds the parts:
 * the change table and its reads (change-table.ts), triggers (triggers.ts), the schema and its
 * fingerprint (schema.ts), batched reads of a snapshot (snapshot.ts), a replica's upserts
 * (upserts.ts), compare reads (compare.ts), and `ferry sql` in a worker thread (sql-runner.ts).
 */
import { accessSync, constants, statSync, type Stats } from "node:fs";
import type Database from "better-sqlite3";
import { RepositoryError, UsageError } from "../../../errors.js";
import { decodeImage } from "../row-image.js";
import { checkScript, type RefusedVerbs } from "../script.js";
import { locate } from "./location.js";
import { splitSql } from "./sql-split.js";
import { quoteId } from "./sql-text.js";
import { openCompareRead } from "./compare.js";
import { CHANGE_TABLE, PartReader, PENDING_SQL, discardChanges, migrateChangeTable, pruneChanges, seqOf } from "./change-table.js";
import { cached, endRead, foreignKeysOff, openDb, positionOf, pragmaValue, type DB } from "./db.js";
import { dumpDb, fingerprintOf, isUserTable, readTableInfo, replicatedTables, schemaOf, USER_OBJECTS, type TableInfo } from "./schema.js";
import { imageBatches, objectLines } from "./snapshot.js";
import { SqliteSqlRunner } from "./sql-runner.js";
import { captureTriggers, existingCaptureTriggers, withoutUserTriggers, type UserTriggers } from "./triggers.js";
import { upsertSql, Upserts, type UpsertTarget } from "./upserts.js";
import type {
  Change,
  ChangeRead,
  CompareRead,
  CapturedPart,
  ExecuteOutcome,
  Position,
  Repository,
  RepositoryLocation,
  RequestKey,
  RowFix,
  SchemaObject,
  SnapshotReader,
  SnapshotWriter,
  SqlResult,
  SqlRunner,
  TableColumns,
  TableReader,
  TableReadOpts,
  WriteGate,
} from "../types.js";

const FERRY_TABLES = `
${CHANGE_TABLE}
CREATE TABLE IF NOT EXISTS ferry_state(key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS ferry_heartbeat(node TEXT PRIMARY KEY, ts INTEGER NOT NULL, epoch INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ferry_requests(id TEXT PRIMARY KEY, ts INTEGER NOT NULL, node TEXT NOT NULL, last_change INTEGER NOT NULL, results TEXT NOT NULL);
`;

/** How long a write's request key is remembered: far longer than any client keeps retrying it. */
const REQUEST_KEY_MS = 15 * 60_000;

const REFUSED: RefusedVerbs = {
  verbs: new Set(["ATTACH", "DETACH", "VACUUM"]),
  why: "cannot be replicated",
  hint: "run it on each repository directly while ferry is stopped",
};
const DDL_VERBS = new Set(["CREATE", "ALTER", "DROP"]);
const PRUNE_EVERY_MS = 5000;
const PRUNE_ROWS = 10_000;

export class SqliteRepository implements Repository {
  readonly kind = "sqlite";
  readonly url: string;
  readonly path: string;
  readonly location: RepositoryLocation;
  private db: DB;
  /** Reads that must not wait for writers; never holds an open iterator. */
  private reader: DB;
  /** The sequencer's connection: its change iterator stays open across awaits. */
  private capture: DB | null = null;
  private stat: Stats;
  private tables = new Map<string, TableInfo>();
  private applyStmts = new Map<string, { upsert: Database.Statement; del: Database.Statement; many: Map<number, Database.Statement> }>();
  private parts = new PartReader();
  /** Upserts into the tables of this repository, many rows per statement. */
  private upsertTarget: UpsertTarget = {
    statement: (table, rows) => {
      const s = this.stmtsFor(table);
      if (rows === 1) return s.upsert;
      let st = s.many.get(rows);
      if (!st) s.many.set(rows, (st = this.db.prepare(upsertSql(quoteId(table), this.tableInfo(table).image.map(quoteId), rows))));
      return st;
    },
    width: (table) => this.tableInfo(table).image.length,
  };
  private dataVersion = 0;
  private schemaVersion = -1;
  /** The schema fingerprint and the schema version it was computed at. */
  private fp: { version: number; value: string } | null = null;

  /**
   * `busyTimeoutMs` is how long the writing connection waits, synchronously, for another writer's
   * lock: 10 ms on a process's main thread (a blocked event loop delays batches and lease renewals;
   * callers retry asynchronously), longer in the SQL worker thread, which blocks nobody.
   */
  constructor(url: string, opts: { busyTimeoutMs?: number } = {}) {
    this.url = url;
    this.location = locate(url);
    this.path = this.location.id;
    this.db = openDb(this.path, false, opts.busyTimeoutMs ?? 10);
    this.reader = openDb(this.path, true);
    this.stat = statSync(this.path);
  }

  async init(): Promise<void> {
    this.guard(() => {
      let hadCapture = false;
      migrateChangeTable(this.db, {
        drop: () => {
          for (const n of existingCaptureTriggers(this.db).keys()) {
            this.db.exec(`DROP TRIGGER ${quoteId(n)}`);
            hadCapture = true;
          }
        },
        restore: () => hadCapture && this.installCaptureInTxn(),
      });
      this.db.exec(FERRY_TABLES);
    });
  }

  /** Another connection (the SQL worker, an operator) may have changed the schema: drop what is stale. */
  private freshSchema(): void {
    const v = pragmaValue(this.reader, "schema_version");
    if (v === this.schemaVersion) return;
    this.schemaVersion = v;
    this.tables.clear();
    this.applyStmts.clear();
  }

  private tableInfo(name: string): TableInfo {
    let info = this.tables.get(name);
    if (!info) this.tables.set(name, (info = readTableInfo(this.db, name)));
    return info;
  }


  /** (Re)creates capture triggers whose text differs from what the current schema needs. */
  async installCapture(): Promise<void> {
    this.guard(() => this.db.transaction(() => this.installCaptureInTxn()).immediate());
  }

  /**
   * The master acknowledges writes, so its commits are fsynced (synchronous=FULL). A replica's
   * commits need not be: its applied position commits with the data, and whatever a power cut
   * takes is pulled again (synchronous=NORMAL, still crash-safe in WAL mode).
   */
  async durableCommits(on: boolean): Promise<void> {
    this.guard(() => this.db.pragma(`synchronous = ${on ? "FULL" : "NORMAL"}`));
  }

  /** The triggers go; captured rows stay in ferry_changes (restoreSnapshot deletes them). */
  async removeCapture(_after: number): Promise<void> {
    this.guard(() =>
      this.db.transaction(() => {
        for (const n of existingCaptureTriggers(this.db).keys()) this.db.exec(`DROP TRIGGER IF EXISTS ${quoteId(n)}`);
      }).immediate(),
    );
  }

  async checkAvailable(): Promise<void> {
    this.checkFile();
  }

  /** checkAvailable for the SQL worker thread, which runs synchronously. */
  checkFile(): void {
    let st: Stats;
    try {
      st = statSync(this.path);
      accessSync(this.path, constants.R_OK | constants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === "ENOENT" ? "the file is missing" : code === "EACCES" ? "permission denied" : String(code);
      throw new RepositoryError("REPO_UNAVAILABLE", `repository ${this.path} is unavailable: ${why}`, {
        cause: err,
        hint: "restore the file; ferry resumes by itself when it is back",
      });
    }
    if (st.ino !== this.stat.ino || st.dev !== this.stat.dev) {
      throw new RepositoryError("REPO_UNAVAILABLE", `repository ${this.path} was replaced by another file`, {
        hint: "put the original file back, or restart the node to use the new one",
      });
    }
  }

  async changeSeq(): Promise<number> {
    return this.guard(() => seqOf(this.reader));
  }

  /**
   * Committed changes past `from`, each part built by SQLite itself as the bytes the spool stores
   * (one string per part, no value crosses into JS a row at a time: that cost the master four
   * times as much CPU per row). The statements run in one read transaction, so the read sees whole
   * transactions only, as one statement would.
   */
  readChanges(from: number, { upto = Number.MAX_SAFE_INTEGER, partBytes }: { upto?: number; partBytes: number }): ChangeRead {
    let reached = from;
    const self = this;
    const parts = async function* (): AsyncGenerator<CapturedPart> {
      const db = (self.capture ??= openDb(self.path, true));
      try {
        yield* self.parts.read(db, from, upto, partBytes, (id) => (reached = id));
      } catch (err) {
        throw self.wrap(err);
      }
    };
    return { [Symbol.asyncIterator]: () => parts(), reached: () => reached };
  }

  /**
   * Spooled changes are deleted now and then, not after every batch, and a slice at a time: the
   * delete runs on the master's event loop, and a burst's million rows deleted at once would stall
   * it (and the lease renewals) for seconds. Leftovers go next time.
   */
  async confirmCapture(upto: number): Promise<void> {
    const t = Date.now();
    if ((t - this.lastPrune <= PRUNE_EVERY_MS && !this.pruneBehind) || upto <= this.pruned) return;
    this.lastPrune = t;
    this.pruneBehind = this.guard(() => pruneChanges(this.db, upto, PRUNE_ROWS));
    if (!this.pruneBehind) this.pruned = upto;
  }
  private lastPrune = 0;
  private pruned = 0;
  private pruneBehind = false;

  async pendingChanges(after: number): Promise<number> {
    // Heartbeat rows are ferry's own: one never replicated loses nothing.
    return this.guard(() => (cached(this.reader, PENDING_SQL).get(after) as { n: number }).n);
  }

  /** Moves the applied position back (after dropping diverged batches of heartbeat rows only). */
  async resetPosition(p: Position): Promise<void> {
    this.guard(() => this.db.transaction(() => this.setPosition(p)).immediate());
  }

  /**
   * Runs a script as one transaction. A write made under a request key is recorded with it in the
   * same transaction (and replicated); the same key again gets the recorded outcome and runs nothing
   * (`replayed`), so a client's retry never applies a write twice, also after a failover.
   */
  openSqlRunner(gate: WriteGate, opts: { busyTimeoutMs: number }): SqlRunner {
    return new SqliteSqlRunner({ url: this.url, gate, busyTimeoutMs: opts.busyTimeoutMs });
  }

  /** Runs in the SQL worker thread (sql-worker.ts). */
  executeScript(script: string, params: unknown, beforeCommit: () => void, key?: RequestKey): ExecuteOutcome {
    const statements = splitSql(script);
    checkScript(statements, params, REFUSED);
    let ddl = false;
    const run = this.db.transaction((): ExecuteOutcome => {
      if (key !== undefined) {
        const done = cached(this.db, `SELECT node, last_change, results FROM ferry_requests WHERE id = ?`).get(key.id) as
          | { node: string; last_change: number; results: string }
          | undefined;
        if (done) {
          // Change ids are this file's own: a write recorded by another master arrived here replicated.
          const lastChangeId = done.node === key.node ? done.last_change : 0;
          return { results: JSON.parse(done.results) as SqlResult[], lastChangeId, ddl: false, replayed: { by: done.node } };
        }
      }
      const seqBefore = seqOf(this.db);
      const results: SqlResult[] = [];
      for (const s of statements) {
        const stmt = this.db.prepare(s.sql);
        const args = params === undefined ? [] : [params];
        if (stmt.reader) {
          const rows = stmt.raw().all(...args) as unknown[][];
          results.push({ columns: stmt.columns().map((c) => c.name), rows: rows.map(toJsonRow), changes: 0 });
        } else {
          const r = stmt.run(...args);
          results.push({ changes: r.changes, lastInsertRowid: Number(r.lastInsertRowid) });
        }
        if (DDL_VERBS.has(s.verb)) {
          ddl = true;
          this.db.prepare(`INSERT INTO ferry_changes(tbl,op,rid,row) VALUES(NULL,'X',NULL,?)`).run(s.sql);
          this.applyStmts.clear();
          this.installCaptureInTxn();
        }
      }
      const seq = seqOf(this.db);
      const lastChangeId = seq > seqBefore ? seq : 0;
      if (key !== undefined && lastChangeId > 0) this.rememberRequest(key, lastChangeId, results);
      beforeCommit();
      return { results, lastChangeId, ddl };
    });
    try {
      return run.immediate();
    } catch (err) {
      throw this.wrap(err);
    }
  }

  private lastKeyPrune = 0;
  private rememberRequest(key: RequestKey, lastChange: number, results: SqlResult[]): void {
    const now = Date.now();
    if (now - this.lastKeyPrune > 60_000) {
      // Keys are inserted in time order: delete the oldest rowids up to the first recent key, no scan.
      cached(
        this.db,
        `DELETE FROM ferry_requests WHERE rowid < coalesce((SELECT rowid FROM ferry_requests WHERE ts >= ? ORDER BY rowid LIMIT 1), (SELECT max(rowid) + 1 FROM ferry_requests))`,
      ).run(now - REQUEST_KEY_MS);
      this.lastKeyPrune = now;
    }
    cached(this.db, `INSERT INTO ferry_requests(id, ts, node, last_change, results) VALUES(?,?,?,?,?)`).run(
      key.id,
      now,
      key.node,
      lastChange,
      JSON.stringify(results),
    );
  }

  private installCaptureInTxn(): void {
    this.tables.clear();
    const existing = existingCaptureTriggers(this.db);
    const wanted = new Map<string, string>();
    for (const t of replicatedTables(this.db)) for (const [n, sql] of captureTriggers(this.tableInfo(t))) wanted.set(n, sql);
    for (const [n, sql] of existing) if (wanted.get(n) !== sql) this.db.exec(`DROP TRIGGER IF EXISTS ${quoteId(n)}`);
    for (const [n, sql] of wanted) if (existing.get(n) !== sql) this.db.exec(sql);
  }

  async writeHeartbeat(node: string, epoch: number, ts: number): Promise<void> {
    this.guard(() =>
      cached(this.db, `INSERT INTO ferry_heartbeat(node, ts, epoch) VALUES(?,?,?) ON CONFLICT(node) DO UPDATE SET ts=excluded.ts, epoch=excluded.epoch`).run(
        node,
        ts,
        epoch,
      ),
    );
  }

  /** Apply statements for a table; they bind row images decoded by decodeImage (exact types). */
  private stmtsFor(table: string) {
    let s = this.applyStmts.get(table);
    if (!s) {
      const t = this.tableInfo(table);
      const where = t.key.map((k) => `${quoteId(k)} IS ?`).join(" AND ");
      s = {
        upsert: this.db.prepare(upsertSql(quoteId(table), t.image.map(quoteId), 1)),
        del: this.db.prepare(`DELETE FROM ${quoteId(table)} WHERE ${where}`),
        many: new Map(),
      };
      this.applyStmts.set(table, s);
    }
    return s;
  }

  private applyChange([tbl, op, rid, row]: Change, triggers: UserTriggers, upserts: Upserts): boolean {
    if (op !== "X" && op !== "D" && rid === null) {
      upserts.add(tbl!, row!);
      return false;
    }
    if (op === "X") {
      // Replicated DDL (CREATE/DROP TRIGGER among it) meets the schema as the master had it.
      upserts.forget();
      triggers.restore();
      this.db.exec(row!);
      triggers.suspend();
      this.tables.clear();
      this.applyStmts.clear();
      return true;
    }
    upserts.flush();
    const s = this.stmtsFor(tbl!);
    if (op === "D") s.del.run(...decodeImage(rid!));
    else {
      if (rid !== null) s.del.run(...decodeImage(rid));
      s.upsert.run(...decodeImage(row!));
    }
    return false;
  }

  async applyBatches(batches: { lsn: number; epoch: number; changes: Iterable<Change> }[]): Promise<{ ddl: boolean }> {
    if (batches.length === 0) return { ddl: false };
    let ddl = false;
    this.applying((triggers) => {
      const upserts = new Upserts(this.upsertTarget);
      for (const b of batches) for (const c of b.changes) ddl = this.applyChange(c, triggers, upserts) || ddl;
      upserts.flush();
      const last = batches[batches.length - 1];
      this.setPosition({ lsn: last.lsn, epoch: last.epoch });
    });
    return { ddl };
  }

  /**
   * Runs `fn` in one write transaction as a replica applies: user triggers suspended, foreign keys
   * off; the commit is ferry's own, not an outside writer's.
   */
  private applying(fn: (triggers: UserTriggers) => void): void {
    const run = this.db.transaction(() => {
      const triggers = withoutUserTriggers(this.db);
      triggers.suspend();
      fn(triggers);
      triggers.restore();
    });
    const restoreFk = foreignKeysOff(this.db);
    try {
      run.immediate();
    } catch (err) {
      this.tables.clear();
      this.applyStmts.clear();
      throw this.wrap(err);
    } finally {
      restoreFk();
    }
    this.dataVersion = this.currentDataVersion();
  }

  private setPosition(p: Position): void {
    const put = cached(this.db, `INSERT OR REPLACE INTO ferry_state(key, value) VALUES(?, ?)`);
    put.run("applied_lsn", BigInt(p.lsn));
    put.run("applied_epoch", BigInt(p.epoch));
  }

  async appliedPosition(): Promise<Position> {
    return this.guard(() => positionOf(this.db));
  }

  async lastHeartbeatTs(): Promise<number> {
    return this.guard(() => (cached(this.reader, `SELECT max(ts) AS ts FROM ferry_heartbeat`).get() as { ts: number | null }).ts ?? 0);
  }

  /** Read every capture cycle: kept until the schema version moves. */
  async fingerprint(): Promise<string> {
    return this.guard(() => {
      const version = pragmaValue(this.reader, "schema_version");
      if (this.fp?.version !== version) this.fp = { version, value: fingerprintOf(this.reader) };
      return this.fp.value;
    });
  }

  async hasUserData(): Promise<boolean> {
    return this.guard(() => {
      const names = (this.db.prepare(`SELECT name FROM sqlite_master WHERE type='table' AND ${USER_OBJECTS}`).all() as {
        name: string;
      }[]).map((r) => r.name);
      return names.some((n) => this.db.prepare(`SELECT 1 FROM ${quoteId(n)} LIMIT 1`).get() !== undefined);
    });
  }

  private currentDataVersion(): number {
    return pragmaValue(this.db, "data_version");
  }

  async outsideCommits(): Promise<number> {
    return this.guard(() => {
      const v = this.currentDataVersion();
      const changed = this.dataVersion !== 0 && v !== this.dataVersion ? 1 : 0;
      this.dataVersion = v;
      return changed;
    });
  }

  /** A read transaction on a connection of its own, with the positions it holds; `open` builds the reader, which closes it. */
  private openRead<R>(open: (conn: DB, at: { seq: number; applied: Position }) => R): R {
    this.freshSchema();
    const conn = openDb(this.path, true);
    try {
      conn.exec("BEGIN");
      const seq = seqOf(conn); // the first read fixes the snapshot
      return open(conn, { seq, applied: positionOf(conn) });
    } catch (err) {
      conn.close();
      throw this.wrap(err);
    }
  }

  async openSnapshot(opts: { tables?: string[] } = {}): Promise<SnapshotReader> {
    return this.openRead((conn, { seq, applied }) => {
      const schema = schemaOf(conn, true);
      const names = replicatedTables(conn).filter((n) => !opts.tables || opts.tables.includes(n));
      const tables = names.map((name) => ({
        name,
        rows: (conn.prepare(`SELECT count(*) AS n FROM ${quoteId(name)}`).get() as { n: number }).n,
      }));
      const header = { seq, applied, schema, tables, fingerprint: fingerprintOf(conn) };
      return { header, ...imageBatches(conn, names.map((n) => this.tableInfo(n))) };
    });
  }

  async tableColumns(name: string): Promise<TableColumns | null> {
    this.freshSchema();
    return this.guard(() => {
      if (!isUserTable(this.reader, name)) return null;
      const t = this.tableInfo(name);
      const rows = (cached(this.reader, `SELECT count(*) AS n FROM ${quoteId(name)}`).get() as { n: number }).n;
      return { name, db: "main", columns: t.image, key: t.key, kinds: t.kinds, rows };
    });
  }

  async openTableReader(opts: TableReadOpts): Promise<TableReader> {
    this.freshSchema();
    const conn = openDb(this.path, true);
    try {
      conn.exec("BEGIN");
      const seq = seqOf(conn); // the first read fixes the snapshot
      const applied = positionOf(conn);
      if (!isUserTable(conn, opts.table)) throw new RepositoryError("NOT_FOUND", `table ${opts.table} does not exist in ${this.path}`);
      const t = this.tableInfo(opts.table);
      return { header: { seq, applied, table: { name: t.name, columns: t.image, key: t.key } }, ...objectLines(conn, t, opts) };
    } catch (err) {
      conn.close();
      throw this.wrap(err);
    }
  }

  async restoreSnapshot(schema: SchemaObject[]): Promise<SnapshotWriter> {
    const db = this.db;
    const restoreFk = this.guard(() => foreignKeysOff(db));
    this.guard(() => {
      try {
        db.exec("BEGIN IMMEDIATE");
      } catch (err) {
        restoreFk();
        throw err;
      }
      try {
        const old = db.prepare(`SELECT type, name FROM sqlite_master WHERE ${USER_OBJECTS} AND type IN ('table','view')`).all() as {
          type: string;
          name: string;
        }[];
        for (const o of old) db.exec(`DROP ${o.type === "view" ? "VIEW" : "TABLE"} IF EXISTS ${quoteId(o.name)}`);
        db.exec(`DELETE FROM ferry_heartbeat; DELETE FROM ferry_requests;`);
        discardChanges(db);
        const order = ["table", "index", "view", "trigger"];
        for (const o of [...schema].sort((a, b) => order.indexOf(a.type) - order.indexOf(b.type))) {
          if (o.name !== "ferry_heartbeat") db.exec(o.sql);
        }
        this.tables.clear();
        this.applyStmts.clear();
      } catch (err) {
        db.exec("ROLLBACK");
        restoreFk();
        throw err;
      }
    });
    return {
      rows: async (table, rows) => {
        this.guard(() => {
          const upserts = new Upserts(this.upsertTarget);
          for (const r of rows) upserts.add(table, r);
          upserts.flush();
        });
      },
      commit: async (at) => {
        this.guard(() => {
          this.setPosition(at);
          db.exec("COMMIT");
        });
        restoreFk();
      },
      abort: async () => {
        if (db.inTransaction) db.exec("ROLLBACK");
        restoreFk();
        this.tables.clear();
        this.applyStmts.clear();
      },
    };
  }

  async openCompareRead(): Promise<CompareRead> {
    return this.openRead((conn, at) => {
      // The keys of writes too: a write key left from a discarded write would answer a retry as done.
      const names = (conn.prepare(`SELECT name FROM sqlite_master WHERE type='table' AND (${USER_OBJECTS} OR name = 'ferry_requests') ORDER BY name`).all() as { name: string }[]).map((r) => r.name);
      return openCompareRead(conn, at, names.map((n) => this.tableInfo(n)), () => endRead(conn, null));
    });
  }

  async repairRows(table: string, fix: RowFix, at: Position): Promise<number> {
    this.freshSchema();
    let changed = 0;
    this.applying(() => {
      const now = positionOf(this.db);
      if (now.lsn !== at.lsn || now.epoch !== at.epoch) {
        throw new RepositoryError("DIVERGED", `${this.path} moved to LSN ${now.lsn} (epoch ${now.epoch}); the repair was read at LSN ${at.lsn}`, { hint: "run the repair again" });
      }
      const s = this.stmtsFor(table);
      for (const k of fix.del) changed += s.del.run(...decodeImage(k)).changes;
      for (const r of fix.put) changed += Math.min(1, s.upsert.run(...decodeImage(r)).changes);
    });
    return changed;
  }

  async dump(): Promise<string> {
    return this.guard(() => dumpDb(this.reader));
  }

  async close(): Promise<void> {
    if (this.capture?.open) this.capture.close();
    if (this.reader.open) this.reader.close();
    if (this.db.open) this.db.close();
  }

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (err) {
      throw this.wrap(err);
    }
  }

  /** SQLite errors become RepositoryErrors: busy/locked/io as REPO_UNAVAILABLE, the rest as SQL_ERROR. */
  private wrap(err: unknown): Error {
    if (err instanceof RepositoryError || err instanceof UsageError) return err;
    const e = err as { code?: string; message?: string };
    const code = e.code ?? "";
    if (/^SQLITE_(BUSY|LOCKED|IOERR|CANTOPEN|READONLY|CORRUPT|NOTADB|FULL|PERM)/.test(code)) {
      return new RepositoryError("REPO_UNAVAILABLE", `repository ${this.path} is unavailable: ${e.message} (${code})`, {
        cause: err,
        hint: code.startsWith("SQLITE_BUSY") ? "another process holds a lock; ferry retries by itself" : "check the file and its disk",
        details: code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED") ? { busy: true } : undefined,
      });
    }
    if (code.startsWith("SQLITE_") || err instanceof RangeError || err instanceof TypeError) {
      return new RepositoryError("SQL_ERROR", e.message ?? String(err), { cause: err, details: { sqliteCode: code } });
    }
    return err as Error;
  }
}











function toJsonRow(row: unknown[]): unknown[] {
  return row.map((v) => (Buffer.isBuffer(v) ? { $blob: v.toString("hex") } : typeof v === "bigint" ? v.toString() : v));
}
