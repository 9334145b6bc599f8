/**
 * `ferry sql` scripts on the master: one transaction each on a pool connection, one script at a
 * time, each statement sent on its own, and the gate checked right before COMMIT. DDL reaches the
 * replicas the way every writer's does: capture's event trigger records it in ferry_ddl in the
 * same transaction (capture.ts), so the runner adds nothing of its own. Commands no event trigger
 * sees (CREATE ROLE, CREATE DATABASE, CREATE TABLESPACE: objects of the whole server, not of the
 * database) are not replicated, by any writer.
 */
import type pg from "pg";
import { RepositoryError, UsageError, asFerryError } from "../../../errors.js";
import { checkScript, type RefusedVerbs } from "../script.js";
import { enterCommit, leaveCommit } from "../write-gate.js";
import { lsnNumber, one } from "./connection.js";
import { pgError } from "./errors.js";
import { checkReplicable } from "./schema.js";
import { splitSql } from "./sql-split.js";
import type { ExecuteOutcome, RequestKey, SqlResult, SqlRunner, WriteGate } from "../types.js";

/** How long a write's request key is remembered: far longer than any client keeps retrying it. */
const REQUEST_KEY_MS = 15 * 60_000;
const REFUSED: RefusedVerbs = {
  verbs: new Set(["VACUUM", "CLUSTER", "CHECKPOINT", "REINDEX"]),
  why: "cannot run in ferry's transaction",
  hint: "run it on each repository directly",
};
/** Statements that may change the schema: the replicated tables are checked after them. */
const DDL_VERBS = new Set(["CREATE", "ALTER", "DROP", "COMMENT"]);
const DML_COMMANDS = new Set(["INSERT", "UPDATE", "DELETE", "MERGE"]);
const SESSION_VERBS = new Set(["SET", "RESET"]);

/** Result values as JSON: int8 and numeric as strings (exact), bytea as {$blob: HEX}, the rest as text. */
const RESULT_TYPES = {
  getTypeParser: (oid: number) => {
    switch (oid) {
      case 21:
      case 23:
      case 26:
        return (v: string) => Number(v);
      case 700:
      case 701:
        return (v: string) => (/^-?[0-9]/.test(v) ? Number(v) : v);
      case 16:
        return (v: string) => v === "t";
      case 17:
        return (v: string) => ({ $blob: v.slice(2).toUpperCase() });
      default:
        return (v: string) => v;
    }
  },
} as unknown as pg.CustomTypesConfig;

export class PgSqlRunner implements SqlRunner {
  private queue: Promise<unknown> = Promise.resolve();
  private lastKeyPrune = 0;

  constructor(
    private readonly pool: pg.Pool,
    private readonly gate: WriteGate,
    private readonly lockTimeoutMs: number,
    private readonly where: string,
  ) {}

  private inFlight = 0;
  get running(): number {
    return this.inFlight;
  }

  execute(sql: string, params: unknown, key?: RequestKey): Promise<ExecuteOutcome> {
    this.inFlight++;
    const next = this.queue.then(() => this.run(sql, params, key)).finally(() => this.inFlight--);
    this.queue = next.catch(() => {});
    return next;
  }

  async close(): Promise<void> {
    await this.queue;
  }

  private async run(script: string, params: unknown, key?: RequestKey): Promise<ExecuteOutcome> {
    const statements = splitSql(script);
    checkScript(statements, params, REFUSED);
    const values = params === undefined ? [] : Array.isArray(params) ? params : [params];
    if (params !== null && typeof params === "object" && !Array.isArray(params)) {
      throw new UsageError("PostgreSQL takes positional parameters ($1, $2, ...)", "give --params as a JSON array");
    }
    const client = await this.pool.connect().catch((err) => {
      throw pgError(err, this.where);
    });
    let open = false;
    let committing = false;
    try {
      await client.query(`BEGIN; SET LOCAL lock_timeout = ${Math.max(1, Math.round(this.lockTimeoutMs))}; SET LOCAL synchronous_commit = on`);
      open = true;
      if (key !== undefined) {
        const done = await one<{ node: string; last_change: string; results: string }>(
          client,
          `SELECT node, last_change, results FROM ferry_requests WHERE id = $1`,
          [key.id],
        );
        if (done) {
          // Capture positions are this server's own: a write recorded by another master arrived replicated.
          const lastChangeId = done.node === key.node ? Number(done.last_change) : 0;
          return { results: JSON.parse(done.results) as SqlResult[], lastChangeId, ddl: false, replayed: { by: done.node } };
        }
      }
      const results: SqlResult[] = [];
      let ddl = false;
      for (const s of statements) {
        const res = await client.query({ text: s.sql, values, rowMode: "array", types: RESULT_TYPES });
        const changes = DML_COMMANDS.has(res.command) ? (res.rowCount ?? 0) : 0;
        results.push(res.fields.length > 0 ? { columns: res.fields.map((f) => f.name), rows: res.rows, changes } : { changes: res.rowCount ?? 0 });
        if (DDL_VERBS.has(s.verb)) ddl = true;
      }
      if (ddl) await checkReplicable(client);
      const wrote = (await one<{ x: string | null }>(client, `SELECT pg_current_xact_id_if_assigned()::text AS x`))!.x !== null;
      if (key !== undefined && wrote) await this.rememberRequest(client, key, results);
      enterCommit(this.gate);
      committing = true;
      await client.query("COMMIT");
      open = false;
      // The commit's end is flushed (synchronous_commit on): the flush position is at or past it.
      const lastChangeId = wrote ? lsnNumber((await one<{ p: string }>(client, `SELECT pg_current_wal_flush_lsn() AS p`))!.p) : 0;
      return { results, lastChangeId, ddl };
    } catch (err) {
      const e = asFerryError(pgError(err, this.where));
      // The server may have committed before the connection went: not "not committed".
      if (committing && e.code === "REPO_UNAVAILABLE") {
        open = false;
        throw new RepositoryError("REPO_UNAVAILABLE", `${e.message}; the connection was lost while committing, so the outcome is unknown`, {
          cause: err,
          hint: "retry under the same key (ferry sql --wait does): the master answers from its record if it committed",
          details: { committed: true },
        });
      }
      throw e;
    } finally {
      if (committing) leaveCommit(this.gate);
      if (open) await client.query("ROLLBACK").catch(() => {});
      // A script's SET outlives its transaction on this pooled connection.
      if (statements.some((s) => SESSION_VERBS.has(s.verb))) await client.query("RESET ALL").catch(() => {});
      client.release();
    }
  }

  private async rememberRequest(client: pg.PoolClient, key: RequestKey, results: SqlResult[]): Promise<void> {
    const now = Date.now();
    if (now - this.lastKeyPrune > 60_000) {
      await client.query(`DELETE FROM ferry_requests WHERE ts < $1`, [now - REQUEST_KEY_MS]);
      this.lastKeyPrune = now;
    }
    // Before the commit record, so at or before the position the commit reaches.
    await client.query(
      `INSERT INTO ferry_requests(id, ts, node, last_change, results) VALUES ($1, $2, $3, pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint, $4)`,
      [key.id, now, key.node, JSON.stringify(results)],
    );
  }
}
