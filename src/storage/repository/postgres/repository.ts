/**
 * The PostgreSQL repository adapter (pg).
 *
 * Capture is logical decoding with pgoutput (capture.ts): any writer is captured, in commit order,
 * whole transactions, with no trigger on the master's tables; its DDL too, recorded by event
 * triggers in the same transaction. Replicas apply with
 * session_replication_role = replica, so user triggers and foreign key checks do not fire (the
 * master's effects arrive as rows of their own) and nothing a replica applies is captured: a
 * replica has no slot. Replicated: the tables of schema `public` (schema.ts).
 */
import type pg from "pg";
import { RepositoryError } from "../../../errors.js";
import { Applier } from "./apply.js";
import { Capture, slotName } from "./capture.js";
import { lsnNumber, newPool, one, quoteId, rows } from "./connection.js";
import { locate, parseUrl, type Target } from "./location.js";
import { pgError } from "./errors.js";
import { dump, FERRY_DDL_UPGRADE, FERRY_TABLES, REPLICATED_SCHEMA, fingerprint, hasRows, lastDdl, OBJECT_ORDER, replicatedTables, schemaObjects, tableMeta, userTables } from "./schema.js";
import { asObject, inPartition, openConsistent, positionOf, RowCursor, tableCursor, takeRows, type Consistent } from "./snapshot.js";
import { PgSqlRunner } from "./sql-runner.js";
import { valueKind } from "./values.js";
import { openPgCompareRead } from "./compare.js";
import type {
  Change,
  ChangeRead,
  CompareRead,
  Position,
  Repository,
  RepositoryLocation,
  RowFix,
  SchemaObject,
  SnapshotReader,
  SnapshotWriter,
  SqlRunner,
  TableColumns,
  TableReader,
  TableReadOpts,
  WriteGate,
} from "../types.js";

const AVAILABLE_TIMEOUT_MS = 3000;
/** A cached fingerprint is read again after this long, whatever the schema version says (see fingerprint()). */
const FINGERPRINT_TTL_MS = 1000;

export class PostgresRepository implements Repository {
  readonly kind = "postgres" as const;
  readonly url: string;
  readonly location: RepositoryLocation;
  private readonly target: Target;
  private readonly pool: pg.Pool;
  private readonly capture: Capture;
  private readonly applier = new Applier();
  private durable = true;
  /** The server and database this object first met: another one behind the URL is not ours. */
  private identity: string | null = null;
  /** The last fingerprint, the schema version it was read at, and when. */
  private fp: { version: string; value: string; at: number } | null = null;
  /** A cached fingerprint past FINGERPRINT_TTL_MS being read again, off the caller's path. */
  private fpRefresh: Promise<void> | null = null;
  /** Schema changes this object made without an event trigger seeing them: part of the schema version. */
  private schemaEdits = 0;
  /** Outside writers' rows counted so far (outsideCommits). */
  private outsideSeen: number | null = null;
  /** changeSeq's last answer while the slot existed. */
  private lastSeq = 0;

  constructor(url: string, opts: { password?: string } = {}) {
    this.url = url;
    this.location = locate(url);
    this.target = parseUrl(url, opts.password);
    this.pool = newPool(this.target);
    this.capture = new Capture(this.pool, this.target, slotName(this.target.database));
  }

  private async guard<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw pgError(err, this.location.id);
    }
  }

  /** A pool connection in a transaction (BEGIN plus `setup`), committed after `fn` or rolled back. */
  private async transaction<T>(setup: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.guard(async () => {
      const c = await this.pool.connect();
      try {
        await c.query(`BEGIN;${setup}`);
        const out = await fn(c);
        await c.query("COMMIT");
        return out;
      } catch (err) {
        await c.query("ROLLBACK").catch(() => {});
        throw err;
      } finally {
        c.release();
      }
    });
  }

  /** Applying sessions: no user triggers or FK checks (needs a superuser), and commits fsynced on a master only. */
  private applySetup(): string {
    return ` SET LOCAL session_replication_role = replica; SET LOCAL synchronous_commit = ${this.durable ? "on" : "off"}`;
  }

  async init(): Promise<void> {
    await this.guard(async () => {
      try {
        await this.pool.query(FERRY_TABLES);
      } catch (err) {
        // Two processes creating the same table at once: one of them gets a unique violation.
        if (!["23505", "42P07"].includes((err as { code?: string }).code ?? "")) throw err;
        await this.pool.query(FERRY_TABLES);
      }
      if ((await one<{ ok: string }>(this.pool, FERRY_DDL_UPGRADE.check))?.ok !== "t") await this.pool.query(FERRY_DDL_UPGRADE.sql);
    });
  }

  installCapture(): Promise<void> {
    return this.guard(() => this.capture.install());
  }

  /** The slot holds what was captured and not sequenced: it is kept while it holds any. */
  removeCapture(after: number): Promise<void> {
    return this.guard(async () => {
      if ((await this.capture.pending(after)) === 0) await this.capture.remove();
    });
  }

  async durableCommits(on: boolean): Promise<void> {
    this.durable = on;
  }

  /**
   * A server that refuses queries (down, shutting down, replaced) also loses the capture stream:
   * a shutting-down server waits for its walsenders' clients to confirm every transaction sent,
   * which ferry cannot spool without the server, so the stream is closed and the slot sends them
   * again when the server is back.
   */
  async checkAvailable(): Promise<void> {
    try {
      await this.identityCheck();
    } catch (err) {
      await this.capture.suspend();
      throw err;
    }
  }

  private async identityCheck(): Promise<void> {
    const id = await this.guard(async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error(`no answer within ${AVAILABLE_TIMEOUT_MS} ms`), { code: "ETIMEDOUT" })), AVAILABLE_TIMEOUT_MS);
      });
      try {
        const r = await Promise.race([
          one<{ id: string }>(this.pool, `SELECT (SELECT system_identifier FROM pg_control_system())::text || '/' || (SELECT oid FROM pg_database WHERE datname = current_database())::text AS id`),
          timeout,
        ]);
        return r!.id;
      } finally {
        clearTimeout(timer);
      }
    });
    this.identity ??= id;
    if (id !== this.identity) {
      throw new RepositoryError("REPO_UNAVAILABLE", `repository ${this.location.id} was replaced by another database`, {
        hint: "put the original database back, or restart the node to use the new one",
      });
    }
  }

  /**
   * With the slot (a master): the WAL flush position, at or past every committed change, or while
   * the slot streams, how far the stream has brought them (the sequencer probes this every few
   * milliseconds, and a read gets no further anyway). Without one (a replica) nothing is captured,
   * and the WAL moves for reasons of its own (checkpoints, autovacuum, other databases): the answer
   * stays what it was while the slot last existed (0 if never), since a moving changeSeq reads as
   * "changes were captured" (the watchdog holds a failover back for it).
   */
  changeSeq(): Promise<number> {
    const streamed = this.capture.streamed;
    if (streamed !== null) {
      this.lastSeq = Math.max(this.lastSeq, streamed);
      return Promise.resolve(this.lastSeq);
    }
    return this.guard(async () => {
      const r = await one<{ p: string | null }>(
        this.pool,
        `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1) THEN pg_current_wal_flush_lsn() END AS p`,
        [this.capture.slot],
      );
      if (r?.p) this.lastSeq = lsnNumber(r.p);
      // A master's slot gone: the next read must run, to say so and start a new one.
      else if (this.capture.expected) return this.lastSeq + 1;
      return this.lastSeq;
    });
  }

  readChanges(from: number, { upto = Number.MAX_SAFE_INTEGER, partBytes }: { upto?: number; partBytes: number }): ChangeRead {
    const read = this.capture.read(from, upto, partBytes);
    const where = this.location.id;
    return {
      reached: () => read.reached(),
      async *[Symbol.asyncIterator]() {
        try {
          yield* read;
        } catch (err) {
          throw pgError(err, where);
        }
      },
    };
  }

  confirmCapture(upto: number): Promise<void> {
    return this.guard(() => this.capture.confirm(upto));
  }

  pendingChanges(after: number): Promise<number> {
    return this.guard(() => this.capture.pending(after));
  }

  resetPosition(p: Position): Promise<void> {
    return this.transaction("", (c) => setPosition(c, p));
  }

  openSqlRunner(gate: WriteGate, opts: { busyTimeoutMs: number }): SqlRunner {
    return new PgSqlRunner(this.pool, gate, opts.busyTimeoutMs, this.location.id);
  }

  async writeHeartbeat(node: string, epoch: number, ts: number): Promise<void> {
    await this.guard(() =>
      this.pool.query(
        `INSERT INTO ferry_heartbeat(node, ts, epoch) VALUES ($1, $2, $3) ON CONFLICT (node) DO UPDATE SET ts = EXCLUDED.ts, epoch = EXCLUDED.epoch`,
        [node, ts, epoch],
      ),
    );
  }

  async applyBatches(batches: { lsn: number; epoch: number; changes: Iterable<Change> }[]): Promise<{ ddl: boolean }> {
    if (batches.length === 0) return { ddl: false };
    try {
      const applied = await this.transaction(this.applySetup(), async (c) => {
        let ddl = false;
        for (const b of batches) ddl = (await this.applier.apply(c, b.changes)) || ddl;
        const last = batches[batches.length - 1];
        await setPosition(c, { lsn: last.lsn, epoch: last.epoch });
        return { ddl };
      });
      // After the commit: a fingerprint read before it must not be kept (see fingerprint()).
      if (applied.ddl) this.schemaEdits++;
      return applied;
    } catch (err) {
      this.schemaChanged();
      throw superuserNeeded(err);
    }
  }

  appliedPosition(): Promise<Position> {
    return this.guard(() => positionOf(this.pool));
  }

  lastHeartbeatTs(): Promise<number> {
    return this.guard(async () => Number((await one<{ ts: string | null }>(this.pool, `SELECT max(ts) AS ts FROM ferry_heartbeat`))?.ts ?? 0));
  }

  /**
   * Reading the fingerprint from the catalogue costs 3-4 ms of CPU, and the sequencer asks for it
   * every capture cycle, so it is kept while the schema version stays: every DDL of a user table
   * runs the event trigger, which adds a row to ferry_ddl in the DDL's own transaction, so the
   * version moves exactly when the schema's change becomes visible. DDL this object applies or
   * restores (on replicas, where no event trigger fires) drops the cache; a schema changed with no
   * trigger seeing it (a session with session_replication_role = replica) is read again once the
   * cache is FINGERPRINT_TTL_MS old. That read runs beside the caller, who gets the cached value
   * meanwhile: in the capture cycle's path it was a 3-8 ms stall once a second.
   */
  fingerprint(): Promise<string> {
    return this.guard(async () => {
      const ddl = await lastDdl(this.pool);
      const version = ddl === null ? null : `${ddl}/${this.schemaEdits}`;
      const c = this.fp;
      if (c !== null && c.version === version) {
        if (Date.now() - c.at >= FINGERPRINT_TTL_MS) this.refreshFingerprint(c.version);
        return c.value;
      }
      const value = await fingerprint(this.pool);
      this.fp = version === null ? null : { version, value, at: Date.now() };
      return value;
    });
  }

  /** Reads the fingerprint again and keeps it unless the schema version moved meanwhile. */
  private refreshFingerprint(version: string): void {
    this.fpRefresh ??= fingerprint(this.pool)
      .then(
        (value) => {
          if (this.fp?.version === version) this.fp = { version, value, at: Date.now() };
        },
        () => {}, // the next call reads it again, and says why if the server is gone
      )
      .finally(() => (this.fpRefresh = null));
  }

  /** The applier's statements and the fingerprint may no longer fit the schema. */
  private schemaChanged(): void {
    this.applier.forget();
    this.schemaEdits++;
  }

  hasUserData(): Promise<boolean> {
    return this.guard(async () => {
      for (const t of await userTables(this.pool)) if (await hasRows(this.pool, t)) return true;
      return false;
    });
  }

  /**
   * Rows written to user tables by other sessions since the last call: the database's row
   * statistics (n_tup_ins/upd/del) beyond the rows this object applied. Statistics arrive within
   * about a second of a writer's commit, and only ever lag, so a lag never shows as a write.
   */
  outsideCommits(): Promise<number> {
    return this.guard(async () => {
      const total = Number(
        (await one<{ n: string }>(
          this.pool,
          `SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::text AS n FROM pg_stat_user_tables
           WHERE schemaname = 'public' AND relname NOT LIKE 'ferry\\_%'`,
        ))!.n,
      );
      const outside = total - this.applier.userRows;
      if (this.outsideSeen === null) {
        this.outsideSeen = outside;
        return 0;
      }
      const n = outside - this.outsideSeen;
      if (n <= 0) return 0;
      this.outsideSeen = outside;
      return n;
    });
  }

  openSnapshot(opts: { tables?: string[] } = {}): Promise<SnapshotReader> {
    return this.guard(async () => {
      const all = await replicatedTables(this.pool);
      const names = opts.tables ? all.filter((n) => opts.tables!.includes(n)) : all;
      const con = await this.consistent([...names, "ferry_ddl"]);
      return this.reader(con, async (c) => {
        const tables: { name: string; rows: number }[] = [];
        for (const name of names) tables.push({ name, rows: Number((await one<{ n: string }>(c, `SELECT count(*) AS n FROM ${quoteId(name)}`))!.n) });
        const header = { seq: con.seq, applied: con.applied, schema: await schemaObjects(c), tables, fingerprint: await fingerprint(c) };
        let ti = 0;
        let cursor: RowCursor | null = null;
        const next = async (maxBytes: number) => {
          while (ti < names.length) {
            const table = names[ti];
            cursor ??= new RowCursor(c, (await tableMeta(c, table))!, "ferry_snapshot");
            const { texts, ended } = await takeRows(cursor, maxBytes, (row) => `[${row.join(",")}]`, (image) => image.length);
            if (ended) {
              cursor = null;
              ti++;
            }
            if (texts.length > 0) return { table, rows: texts };
          }
          return null;
        };
        return { header, next };
      });
    });
  }

  /**
   * A reader over a consistent session: its errors as ferry's, close ends the session, and so does
   * a failure while it is built.
   */
  private async reader<H, N>(
    con: Consistent,
    build: (c: pg.Client) => Promise<{ header: H; next: (maxBytes: number) => Promise<N> }>,
  ): Promise<{ header: H; next(maxBytes: number): Promise<N>; close(): Promise<void> }> {
    const where = this.location.id;
    try {
      const { header, next } = await build(con.client);
      return {
        header,
        async next(maxBytes: number) {
          try {
            return await next(maxBytes);
          } catch (err) {
            throw pgError(err, where);
          }
        },
        close: () => endConsistent(con),
      };
    } catch (err) {
      await endConsistent(con);
      throw err;
    }
  }

  /** On a master (it has a slot), aligned with the capture position; on a replica, with the applied one. */
  private async consistent(lock: string[]): Promise<Consistent> {
    return openConsistent(this.target, (await this.capture.exists()) ? lock : null);
  }

  restoreSnapshot(schema: SchemaObject[]): Promise<SnapshotWriter> {
    return this.guard(async () => {
      // What a slot kept for a master that never came back is replaced with everything else.
      await this.capture.remove();
      const c = await this.pool.connect();
      let done = false;
      const finish = async (sql: string) => {
        if (done) return;
        done = true;
        try {
          await c.query(sql);
        } finally {
          c.release();
          this.schemaChanged();
        }
      };
      try {
        await c.query(`BEGIN;${this.applySetup()}`);
        for (const t of await userTables(c)) await c.query(`DROP TABLE IF EXISTS ${quoteId(t)} CASCADE`);
        const seqs = await rows<{ name: string }>(
          c,
          `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind = 'S' AND n.nspname = 'public' AND c.relname NOT LIKE 'ferry\\_%'`,
        );
        for (const s of seqs) await c.query(`DROP SEQUENCE IF EXISTS ${quoteId(s.name)} CASCADE`);
        await c.query(`DELETE FROM ferry_heartbeat; DELETE FROM ferry_requests`);
        const ordered = schema
          .filter((o) => !o.name.startsWith("ferry_"))
          .sort((a, b) => OBJECT_ORDER.indexOf(a.type) - OBJECT_ORDER.indexOf(b.type));
        for (const o of ordered) await c.query(o.sql);
        this.schemaChanged();
      } catch (err) {
        await finish("ROLLBACK").catch(() => {});
        throw superuserNeeded(err);
      }
      return {
        rows: (table, images) =>
          this.guard(async () => {
            await this.applier.apply(c, images.map((r): Change => [table, "I", null, r]));
          }),
        commit: (at) =>
          this.guard(async () => {
            try {
              await setPosition(c, at);
            } catch (err) {
              await finish("ROLLBACK").catch(() => {});
              throw err;
            }
            await finish("COMMIT");
          }),
        abort: () => this.guard(() => finish("ROLLBACK")),
      };
    });
  }

  tableColumns(name: string): Promise<TableColumns | null> {
    return this.guard(async () => {
      if (name.startsWith("ferry_")) return null;
      const meta = await tableMeta(this.pool, name);
      if (!meta) return null;
      const n = Number((await one<{ n: string }>(this.pool, `SELECT count(*) AS n FROM ${quoteId(name)}`))!.n);
      return { name, db: REPLICATED_SCHEMA, columns: meta.image.map((c) => c.name), key: meta.key.map((c) => c.name), types: meta.image.map((c) => c.type), kinds: meta.image.map((c) => valueKind(c.typeOid)), rows: n };
    });
  }

  openTableReader(opts: TableReadOpts): Promise<TableReader> {
    return this.guard(async () => {
      if (opts.table.startsWith("ferry_") || !(await tableMeta(this.pool, opts.table))) {
        throw new RepositoryError("NOT_FOUND", `table ${opts.table} does not exist in ${this.location.id}`);
      }
      const con = await this.consistent([opts.table, "ferry_ddl"]);
      return this.reader(con, async (c) => {
        const cursor = await tableCursor(c, opts.table, opts);
        const meta = cursor.meta;
        const header = {
          seq: con.seq,
          applied: con.applied,
          table: { name: meta.name, columns: meta.image.map((c) => c.name), key: meta.key.map((c) => c.name), types: meta.image.map((c) => c.type) },
        };
        const next = async (maxBytes: number) => {
          const { texts: lines } = await takeRows(
            cursor,
            maxBytes,
            (row) => (inPartition(meta, row, opts.partition) ? asObject(meta, row) : null),
            (line) => Buffer.byteLength(line) + 1,
          );
          return lines.length === 0 ? null : { rows: lines.length, text: lines.join("\n") + "\n" };
        };
        return { header, next };
      });
    });
  }

  openCompareRead(): Promise<CompareRead> {
    return this.guard(async () => {
      // The keys of writes too: a write key left from a discarded write would answer a retry as done.
      const names = [...(await userTables(this.pool)), "ferry_requests"];
      const con = await this.consistent([...names, "ferry_ddl"]);
      const where = this.location.id;
      const wrap = <A extends unknown[], T>(fn: (...a: A) => Promise<T>) => async (...a: A): Promise<T> => {
        try {
          return await fn(...a);
        } catch (err) {
          throw pgError(err, where);
        }
      };
      try {
        const read = await openPgCompareRead(con.client, { seq: con.seq, applied: con.applied }, names, () => endConsistent(con));
        return { ...read, chunks: wrap(read.chunks), sums: wrap(read.sums), rows: wrap(read.rows) };
      } catch (err) {
        await endConsistent(con);
        throw err;
      }
    });
  }

  async repairRows(table: string, fix: RowFix, at: Position): Promise<number> {
    try {
      return await this.transaction(this.applySetup(), async (c) => {
        const now = await positionOf(c);
        if (now.lsn !== at.lsn || now.epoch !== at.epoch) {
          throw new RepositoryError("DIVERGED", `${this.location.id} moved to LSN ${now.lsn} (epoch ${now.epoch}); the repair was read at LSN ${at.lsn}`, { hint: "run the repair again" });
        }
        const changes: Change[] = [...fix.del.map((k): Change => [table, "D", k, null]), ...fix.put.map((r): Change => [table, "I", null, r])];
        await this.applier.apply(c, changes);
        return changes.length;
      });
    } catch (err) {
      this.schemaChanged();
      throw superuserNeeded(err);
    }
  }

  dump(): Promise<string> {
    return this.transaction(" SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", (c) => dump(c));
  }

  async close(): Promise<void> {
    await this.capture.close();
    await this.fpRefresh;
    await this.pool.end().catch(() => {});
  }
}

async function setPosition(c: pg.ClientBase, p: Position): Promise<void> {
  await c.query(
    `INSERT INTO ferry_state(key, value) VALUES ('applied_lsn', $1), ('applied_epoch', $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
    [String(p.lsn), String(p.epoch)],
  );
}

async function endConsistent(con: Consistent): Promise<void> {
  await con.client.query("ROLLBACK").catch(() => {});
  await con.client.end().catch(() => {});
}

/** session_replication_role is a superuser's setting (or granted with GRANT SET ON PARAMETER). */
function superuserNeeded(err: unknown): unknown {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  if (err instanceof RepositoryError && cause?.code === "42501" && /session_replication_role/.test(cause.message ?? "")) {
    return new RepositoryError("SQL_ERROR", `applying changes needs a superuser: ${cause.message}`, {
      cause: err,
      hint: "connect as a superuser, or GRANT SET ON PARAMETER session_replication_role TO the user",
    });
  }
  return err;
}
