/**
 * Capture by logical decoding: the built-in pgoutput plugin through a slot of this repository's
 * own, read with the SQL functions (peek, then advance once the sequencer's spool is synced).
 *
 * A change's capture position is its transaction's commit end LSN, so one transaction's changes
 * share a position and positions follow commit order. The slot advances only in confirm(): a
 * crash between a read and the spool write finds the same changes again, and a read skips the
 * transactions at or before `from` that the spool already holds.
 *
 * Reads go through a cursor (the server keeps the decoded rows in a tuplestore that spills to
 * disk); a transaction is held in memory from its first change to its commit, since its position
 * is known only then.
 *
 * DDL: logical decoding does not carry it, so event triggers (ddl_command_end, and sql_drop, since
 * a DROP leaves ddl_command_end nothing to look at) insert the statement into ferry_ddl in the DDL's
 * own transaction, whoever the writer (`ferry sql`, psql, pgbench -i, a migration tool); the insert
 * is decoded at its place in commit order and becomes an X change. The text is current_query(),
 * the query string the client sent, recorded once per transaction, client message and text: a
 * string of several DDL commands fires the triggers once per command. What a string holds besides
 * DDL (DML, transaction control, SET) is left out of the replayed text (replayable()), since rows
 * arrive as changes of their own. Not carried exactly: one query string that interleaves DDL with
 * DML on the tables it alters (its DDL replays at the place of the first command), or that holds
 * several transactions; functions and DO blocks that mix DDL with DML replay the DML too.
 * Replicas apply with session_replication_role = replica, where event triggers do not fire.
 */
import type pg from "pg";
import { RepositoryError } from "../../../errors.js";
import { lsnNumber, lsnText, one, quoteId, quoteLit, rows } from "./connection.js";
import { decodeMessage, type Relation, type TupleValue } from "./pgoutput.js";
import { checkReplicable, ownedSequences } from "./schema.js";
import { splitSql, statementStart } from "./sql-split.js";
import { TRANSACTION_VERBS } from "../script.js";
import { encodeValue, UNCHANGED, UNCHANGED_TOKEN } from "./values.js";
import type { ChangeOp, ChangeRead, EncodedChange } from "../types.js";

export const PUBLICATION = "ferry_pub";
/** Rows per peek: PostgreSQL ends a peek at the first transaction boundary after it. */
const PEEK_ROWS = 20_000;
const FETCH_ROWS = 2_000;
/** Changes per chunk handed to the sequencer. */
const CHUNK = 1_000;
const NOT_CAPTURED = new Set(["ferry_state", "ferry_ddl"]);

const DDL_FUNCTION = "ferry_capture_ddl";
const DDL_TRIGGERS: [name: string, event: string][] = [
  ["ferry_ddl_end", "ddl_command_end"],
  ["ferry_ddl_drop", "sql_drop"],
];

/**
 * The event triggers' function. A command is replayed when it touches an object of schema public
 * (other schemas, temporary objects and TOAST tables are not replicated) or one outside any schema
 * (an extension, a language), but not a schema, nor one of ferry's own objects (names starting
 * with ferry_: its tables, their sequences and indexes, this function). Never replayed: CREATE,
 * ALTER, DROP PUBLICATION and SUBSCRIPTION (capture's own machinery), GRANT, REVOKE and ALTER
 * DEFAULT PRIVILEGES (they name roles, which belong to the server, not the database). Event
 * triggers themselves fire no event trigger. CREATE TABLE AS and SELECT INTO are recorded as a
 * plain CREATE TABLE of the new table's columns, since its rows arrive as inserts, with the table's
 * name in `tbl`: ddl_command_end comes after those inserts, and capture moves the statement before
 * them. Rows of transactions that have all ended are pruned on the way (SKIP LOCKED: no DDL waits
 * for another). SECURITY DEFINER: any user's DDL may write to ferry_ddl.
 */
const DDL_FUNCTION_SQL = String.raw`
CREATE OR REPLACE FUNCTION public.${DDL_FUNCTION}() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $ferry$
DECLARE
  q text := current_query();
  c record;
  keep boolean := false;
  tbl text;
BEGIN
  IF TG_TAG IN ('CREATE PUBLICATION', 'ALTER PUBLICATION', 'DROP PUBLICATION', 'CREATE SUBSCRIPTION', 'ALTER SUBSCRIPTION',
      'DROP SUBSCRIPTION', 'GRANT', 'REVOKE', 'ALTER DEFAULT PRIVILEGES') OR to_regclass('public.ferry_ddl') IS NULL THEN
    RETURN;
  END IF;
  IF TG_EVENT = 'sql_drop' THEN
    keep := EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() x
      WHERE (x.schema_name = 'public' OR (x.schema_name IS NULL AND x.object_type <> 'schema'))
        AND coalesce(x.object_identity, '') !~ '^(public\.)?ferry_|^for public\.ferry_| on public\.ferry_');
  ELSE
    FOR c IN SELECT x.command_tag, x.object_type, x.objid, x.object_identity FROM pg_event_trigger_ddl_commands() x
      WHERE (x.schema_name = 'public' OR (x.schema_name IS NULL AND x.object_type <> 'schema'))
        AND coalesce(x.object_identity, '') !~ '^(public\.)?ferry_|^for public\.ferry_| on public\.ferry_'
    LOOP
      keep := true;
      IF c.command_tag IN ('CREATE TABLE AS', 'SELECT INTO') AND c.object_type = 'table' THEN
        q := format('CREATE TABLE %s (%s)', c.object_identity, coalesce((SELECT string_agg(format('%I %s', a.attname,
          format_type(a.atttypid, a.atttypmod)), ', ' ORDER BY a.attnum) FROM pg_attribute a
          WHERE a.attrelid = c.objid AND a.attnum > 0 AND NOT a.attisdropped), ''));
        tbl := (SELECT relname FROM pg_class WHERE oid = c.objid);
      END IF;
    END LOOP;
  END IF;
  IF NOT keep OR EXISTS (SELECT 1 FROM public.ferry_ddl d WHERE d.xid = pg_current_xact_id() AND d.at = statement_timestamp() AND d.sql = q) THEN
    RETURN;
  END IF;
  DELETE FROM public.ferry_ddl WHERE id IN (SELECT d.id FROM public.ferry_ddl d
    WHERE d.xid < pg_snapshot_xmin(pg_current_snapshot()) FOR UPDATE SKIP LOCKED);
  INSERT INTO public.ferry_ddl(sql, tbl) VALUES (q, tbl);
END
$ferry$`;

/** Statements of a recorded query string that are not replayed: their effects arrive as changes, or are the session's own. */
const NOT_REPLAYED = new Set([
  ...TRANSACTION_VERBS,
  ...["INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY", "VALUES", "TABLE", "WITH", "SET", "RESET", "DISCARD", "LOAD"],
  ...["LISTEN", "UNLISTEN", "NOTIFY", "LOCK", "VACUUM", "ANALYZE", "CLUSTER", "REINDEX", "CHECKPOINT", "SHOW", "EXPLAIN"],
  ...["DECLARE", "FETCH", "MOVE", "CLOSE", "EXECUTE", "DEALLOCATE", "GRANT", "REVOKE"],
]);
/** Objects of the server (not of the database) and capture's own machinery. */
const NOT_REPLAYED_DDL = /^(CREATE|ALTER|DROP)\s+(ROLE|USER|GROUP|DATABASE|TABLESPACE|PUBLICATION|SUBSCRIPTION|EVENT\s+TRIGGER)\b|^ALTER\s+(SYSTEM|DEFAULT\s+PRIVILEGES)\b/i;
/** CONCURRENTLY cannot run in a transaction block, which applying is; the plain form does the same. */
const CONCURRENTLY = /^(CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX)\s+CONCURRENTLY\b/i;

/** What a replica runs of a query string ferry_ddl recorded; null when nothing is left. */
export function replayable(query: string): string | null {
  const kept: string[] = [];
  for (const s of splitSql(query)) {
    const start = statementStart(s.sql);
    if (NOT_REPLAYED.has(s.verb) || NOT_REPLAYED_DDL.test(start)) continue;
    kept.push(CONCURRENTLY.test(start) ? start.replace(CONCURRENTLY, "$1") : s.sql);
  }
  return kept.length === 0 ? null : kept.join(";\n");
}

/** A slot name of the database's own: one server may hold several repositories. */
export function slotName(database: string): string {
  const plain = database.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 40);
  if (plain === database && plain.length > 0) return `ferry_${plain}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < database.length; i++) h = Math.imul(h ^ database.charCodeAt(i), 0x01000193);
  return `ferry_${plain}_${(h >>> 0).toString(16)}`;
}

interface Txn {
  end: number;
  /** [op, tbl, JSON of the Change]. */
  changes: [ChangeOp, string | null, string][];
}

/** Serialises use of the slot: PostgreSQL refuses a second session on an active slot. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  async lock(): Promise<() => void> {
    let release!: () => void;
    const next = new Promise<void>((r) => (release = r));
    const prev = this.tail;
    this.tail = prev.then(() => next);
    await prev;
    return release;
  }
}

export class Capture {
  private readonly mutex = new Mutex();
  /** Capture was started by this object: a slot gone since then took changes with it. */
  private installed = false;

  get expected(): boolean {
    return this.installed;
  }
  /** Why changes were lost, said once by the next read. */
  private lost: string | null = null;

  constructor(
    private readonly pool: pg.Pool,
    readonly slot: string,
  ) {}

  async exists(q: pg.Pool | pg.PoolClient = this.pool): Promise<boolean> {
    return (await rows(q, `SELECT 1 FROM pg_replication_slots WHERE slot_name = $1`, [this.slot])).length > 0;
  }

  /**
   * The publication before the slot (pgoutput looks the publication up as of each change), then
   * the slot; and every serial or identity sequence moved past its column's largest value, since
   * logical decoding does not carry sequences and this repository may have been a replica.
   */
  async install(): Promise<void> {
    const wal = (await one<{ wal_level: string }>(this.pool, "SHOW wal_level"))!.wal_level;
    if (wal !== "logical") {
      throw new RepositoryError("SQL_ERROR", `capture needs wal_level = logical; this server has wal_level = ${wal}`, {
        hint: "set wal_level = logical in postgresql.conf and restart PostgreSQL",
      });
    }
    await checkReplicable(this.pool);
    // The DDL triggers before the slot: no DDL may commit between the slot's start and them.
    await this.pool.query(DDL_FUNCTION_SQL);
    for (const [name, event] of DDL_TRIGGERS) {
      if ((await rows(this.pool, `SELECT 1 FROM pg_event_trigger WHERE evtname = $1`, [name])).length > 0) continue;
      await this.pool.query(`CREATE EVENT TRIGGER ${name} ON ${event} EXECUTE FUNCTION public.${DDL_FUNCTION}()`).catch((err) => {
        if ((err as { code?: string }).code !== "42710") throw err;
      });
    }
    if ((await rows(this.pool, `SELECT 1 FROM pg_publication WHERE pubname = $1`, [PUBLICATION])).length === 0) {
      await this.pool.query(`CREATE PUBLICATION ${PUBLICATION} FOR ALL TABLES`).catch((err) => {
        if ((err as { code?: string }).code !== "42710") throw err;
      });
    }
    const release = await this.mutex.lock();
    try {
      if (!(await this.exists())) {
        // ferry_state remembers a slot this database had as a master: gone, it took changes with it.
        const had = await one<{ value: string }>(this.pool, `SELECT value FROM ferry_state WHERE key = 'capture_slot'`);
        await this.createSlot();
        if (had) this.lost = `the capture slot ${this.slot} was gone when capture started again`;
      }
      this.installed = true;
    } finally {
      release();
    }
    for (const s of await ownedSequences(this.pool)) {
      await this.pool.query(
        `SELECT setval(${quoteLit(quoteId(s.seq))}, m) FROM (SELECT max(${quoteId(s.col)})::bigint AS m FROM ${quoteId(s.tbl)}) x, ${quoteId(s.seq)} q
         WHERE m IS NOT NULL AND m > (CASE WHEN q.is_called THEN q.last_value ELSE q.last_value - 1 END)`,
      );
    }
  }

  private async createSlot(): Promise<void> {
    await this.pool.query(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [this.slot]).catch((err) => {
      if ((err as { code?: string }).code !== "42710") throw err;
    });
    await this.pool.query(`INSERT INTO ferry_state(key, value) VALUES ('capture_slot', $1) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, [this.slot]);
  }

  /** Changes committed while no slot held them cannot be shipped: replicas need a resync. */
  private captureLost(why: string): RepositoryError {
    return new RepositoryError("CAPTURE_LOST", `${why}: changes committed meanwhile were not captured`, {
      hint: "every replica needs a resync (ferry resync --node ID); capture goes on with a new slot",
      details: { slot: this.slot },
    });
  }

  /** A slot left behind retains WAL for ever: a replica has none, nor the publication or the DDL triggers. */
  async remove(): Promise<void> {
    const release = await this.mutex.lock();
    this.installed = false;
    this.lost = null;
    try {
      await this.pool.query(`DELETE FROM ferry_state WHERE key = 'capture_slot'`);
      await this.pool.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, [this.slot]);
      await this.pool.query(`DROP PUBLICATION IF EXISTS ${PUBLICATION}`);
      for (const [name] of DDL_TRIGGERS) await this.pool.query(`DROP EVENT TRIGGER IF EXISTS ${name}`);
      await this.pool.query(`DROP FUNCTION IF EXISTS public.${DDL_FUNCTION}()`);
    } finally {
      release();
    }
  }

  async confirm(upto: number): Promise<void> {
    const release = await this.mutex.lock();
    try {
      await this.pool.query(
        `SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2::pg_lsn`,
        [this.slot, lsnText(upto)],
      );
    } finally {
      release();
    }
  }

  read(from: number, upto = Number.MAX_SAFE_INTEGER): ChangeRead {
    let reached = from;
    const self = this;
    return {
      reached: () => reached,
      async *[Symbol.asyncIterator](): AsyncGenerator<EncodedChange[]> {
        const release = await self.mutex.lock();
        const client = await self.pool.connect().catch((err) => {
          release();
          throw err;
        });
        try {
          const head = (await one<{ p: string; slot: string | null }>(
            client,
            `SELECT pg_current_wal_flush_lsn() AS p, (SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1) AS slot`,
            [self.slot],
          ))!;
          if (self.lost) {
            const why = self.lost;
            self.lost = null;
            throw self.captureLost(why);
          }
          if (head.slot === null) {
            if (!self.installed) return;
            await self.createSlot();
            throw self.captureLost(`the capture slot ${self.slot} was dropped while this node was master`);
          }
          const flushed = lsnNumber(head.p);
          let last = 0;
          for (;;) {
            const peek = { rows: 0, skipped: 0, pastUpto: false };
            for await (const txn of self.transactions(client, peek)) {
              if (txn.end <= from) {
                peek.skipped++;
                continue;
              }
              if (txn.end > upto) {
                peek.pastUpto = true;
                break;
              }
              for (let i = 0; i < txn.changes.length; i += CHUNK) {
                yield txn.changes.slice(i, i + CHUNK).map(([op, , json]): EncodedChange => [txn.end, op, json]);
              }
              last = txn.end;
            }
            const complete = peek.rows < PEEK_ROWS;
            if (peek.pastUpto) reached = Math.max(from, upto);
            else if (complete) reached = Math.max(from, last, Math.min(flushed, upto));
            else reached = Math.max(from, last);
            // A full peek of transactions the spool already holds: release them, or no read gets past them.
            if (last === 0 && !complete && !peek.pastUpto && peek.skipped > 0) {
              await client.query(
                `SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2::pg_lsn`,
                [self.slot, lsnText(from)],
              );
              continue;
            }
            return;
          }
        } finally {
          client.release();
          release();
        }
      },
    };
  }

  /** Changes of user tables (not heartbeats) in transactions past `after`. */
  async pending(after: number): Promise<number> {
    const release = await this.mutex.lock();
    const client = await this.pool.connect().catch((err) => {
      release();
      throw err;
    });
    try {
      if (!(await this.exists(client))) return 0;
      let n = 0;
      for await (const txn of this.transactions(client, { rows: 0 }, 0)) {
        if (txn.end > after) n += txn.changes.filter(([, tbl]) => tbl !== "ferry_heartbeat").length;
      }
      return n;
    } finally {
      client.release();
      release();
    }
  }

  /** The slot's committed transactions, decoded, through a cursor (rows counts the peek's rows). */
  private async *transactions(client: pg.PoolClient, stats: { rows: number }, bound = PEEK_ROWS): AsyncGenerator<Txn> {
    await client.query("BEGIN");
    let ok = false;
    try {
      await client.query(
        `DECLARE ferry_peek NO SCROLL CURSOR FOR SELECT data FROM pg_logical_slot_peek_binary_changes(${quoteLit(this.slot)}, NULL, ${bound || "NULL"},
           'proto_version', '1', 'publication_names', ${quoteLit(PUBLICATION)})`,
      );
      const relations = new Map<number, Relation>();
      let txn: Txn | null = null;
      for (;;) {
        const res = await client.query({ text: `FETCH ${FETCH_ROWS} FROM ferry_peek`, rowMode: "array" });
        for (const [hex] of res.rows as [string][]) {
          stats.rows++;
          const m = decodeMessage(Buffer.from(hex.slice(2), "hex"));
          switch (m.tag) {
            case "B":
              txn = { end: 0, changes: [] };
              break;
            case "C":
              if (txn) {
                txn.end = m.endLsn;
                yield txn;
              }
              txn = null;
              break;
            case "R":
              relations.set(m.relation.id, m.relation);
              break;
            case "I":
            case "U":
            case "D":
            case "T":
              if (!txn) break;
              for (const c of changesOf(m, relations)) {
                const at = c[3] === undefined ? -1 : firstSince(txn.changes, c[3]);
                if (at < 0) txn.changes.push([c[0], c[1], c[2]]);
                else txn.changes.splice(at, 0, [c[0], c[1], c[2]]);
              }
              break;
          }
        }
        if (res.rows.length < FETCH_ROWS) break;
      }
      ok = true;
    } finally {
      // A generator left early (the reader stopped at `upto`) closes the cursor with the transaction.
      await client.query(ok ? "COMMIT" : "ROLLBACK").catch(() => {});
    }
  }
}

type DataMessage = Extract<ReturnType<typeof decodeMessage>, { tag: "I" | "U" | "D" | "T" }>;

/** [op, tbl, JSON of the Change, the table whose first change of the transaction it must precede]. */
type Decoded = [ChangeOp, string | null, string, before?: string];

const change = (tbl: string | null, op: ChangeOp, rid: string | null, row: string | null): Decoded => [op, tbl, JSON.stringify([tbl, op, rid, row])];

function changesOf(m: DataMessage, relations: Map<number, Relation>): Decoded[] {
  if (m.tag === "T") {
    const names = m.relids
      .map((id) => relation(relations, id))
      .filter((r) => r.schema === "public" && !NOT_CAPTURED.has(r.name))
      .map((r) => quoteId(r.name));
    return names.length === 0 ? [] : [change(null, "X", null, `TRUNCATE TABLE ${names.join(", ")}${m.restartIdentity ? " RESTART IDENTITY" : ""}`)];
  }
  const rel = relation(relations, m.relid);
  if (rel.schema !== "public") return [];
  if (rel.name === "ferry_ddl") {
    // The DDL triggers record each query string here, in its transaction, where it ran (the module comment).
    if (m.tag !== "I") return [];
    const sql = m.row[rel.columns.findIndex((c) => c.name === "sql")];
    const tbl = m.row[rel.columns.findIndex((c) => c.name === "tbl")];
    const text = typeof sql === "string" ? replayable(sql) : null;
    if (text === null) return [];
    const x = change(null, "X", null, text);
    return [typeof tbl === "string" ? [x[0], x[1], x[2], tbl] : x];
  }
  if (NOT_CAPTURED.has(rel.name)) return [];
  if (m.tag === "I") return [change(rel.name, "I", null, image(rel, m.row))];
  // REPLICA IDENTITY FULL ('O'): the key image is the whole old row (apply takes the primary key's
  // values from it, or without one deletes one row equal to it), and an update's unchanged TOASTed
  // values are taken from it (its values are all there).
  if (m.tag === "D") return [change(rel.name, "D", m.oldKind === "O" ? image(rel, m.old) : keyImage(rel, m.old), null)];
  if (m.old && m.oldKind === "O") {
    const old = m.old;
    return [change(rel.name, "U", image(rel, old), image(rel, m.row.map((v, i) => (v === UNCHANGED ? old[i] : v))))];
  }
  const row = image(rel, m.row);
  const oldKey = m.old ? keyImage(rel, m.old) : null;
  return [change(rel.name, "U", oldKey !== null && oldKey !== keyImage(rel, m.row) ? oldKey : null, row)];
}

/**
 * Where a CREATE TABLE AS of `tbl` goes: before the rows it inserted, which its DDL trigger fired
 * after (the first change of `tbl` since the transaction's last DDL); -1 when there are none.
 */
function firstSince(changes: Txn["changes"], tbl: string): number {
  let at = -1;
  for (let i = changes.length - 1; i >= 0 && changes[i][0] !== "X"; i--) if (changes[i][1] === tbl) at = i;
  return at;
}

function relation(relations: Map<number, Relation>, id: number): Relation {
  const r = relations.get(id);
  if (!r) throw new RepositoryError("SQL_ERROR", `pgoutput: a change of relation ${id} came before its description`);
  return r;
}

function image(rel: Relation, row: TupleValue[]): string {
  let s = "[";
  for (let i = 0; i < rel.columns.length; i++) {
    const v = row[i];
    s += (i ? "," : "") + (v === UNCHANGED ? UNCHANGED_TOKEN : encodeValue(rel.columns[i].typeOid, v));
  }
  return s + "]";
}

function keyImage(rel: Relation, row: TupleValue[]): string {
  const parts: string[] = [];
  rel.columns.forEach((c, i) => {
    if (c.key) parts.push(encodeValue(c.typeOid, row[i] === UNCHANGED ? null : (row[i] as string | null)));
  });
  return `[${parts.join(",")}]`;
}
