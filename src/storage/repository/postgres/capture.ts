/**
 * Capture by logical decoding: the built-in pgoutput plugin through a slot of this repository's
 * own, read as a stream (stream.ts) that the slot follows once the sequencer's spool is synced.
 * Changes become ferry's in changes.ts; the slot is peeked with SQL only to count what it still
 * holds, with the stream stopped (a slot serves one session at a time).
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
import { clientConfig, lsnNumber, lsnText, one, pollUntil, quoteId, quoteLit, rows } from "./connection.js";
import type { Target } from "./location.js";
import { TxnDecoder, type Txn } from "./changes.js";
import { checkReplicable, ownedSequences } from "./schema.js";
import { SlotStream } from "./stream.js";
import type { CapturedPart, ChangeRead } from "../types.js";
import { packParts, type EncodedChange } from "../parts.js";

export const PUBLICATION = "ferry_pub";
const FETCH_ROWS = 2_000;
/** How long closing the stream waits for the walsender to release the slot. */
const SLOT_RELEASE_MS = 5_000;
/** How long a read waits for the stream to pass what was flushed when it started: then it takes what has come. */
const READ_WAIT_MS = 1_000;
/** The same for a read bounded by a position (a snapshot's), which must get there. */
const BOUNDED_WAIT_MS = 10_000;

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

/** A slot name of the database's own: one server may hold several repositories. */
export function slotName(database: string): string {
  const plain = database.toLowerCase().replace(/[^a-z0-9_]/g, "_").slice(0, 40);
  if (plain === database && plain.length > 0) return `ferry_${plain}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < database.length; i++) h = Math.imul(h ^ database.charCodeAt(i), 0x01000193);
  return `ferry_${plain}_${(h >>> 0).toString(16)}`;
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

  /** Runs from the first read until capture is removed, the repository closed or the stream fails. */
  private stream: SlotStream | null = null;

  constructor(
    private readonly pool: pg.Pool,
    private readonly target: Target,
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
      await this.stopStream();
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
    if (this.stream && !this.stream.failed) return this.stream.confirm(upto);
    const release = await this.mutex.lock();
    try {
      await this.advance(this.pool, upto);
    } finally {
      release();
    }
  }

  private async advance(q: pg.Pool | pg.PoolClient, upto: number): Promise<void> {
    await q.query(
      `SELECT pg_replication_slot_advance(slot_name, $2::pg_lsn) FROM pg_replication_slots WHERE slot_name = $1 AND confirmed_flush_lsn < $2::pg_lsn`,
      [this.slot, lsnText(upto)],
    );
  }

  /**
   * The transactions after `from` up to `upto`, complete to the WAL flushed when the read started
   * unless the stream lags past the wait; `reached` is how far the read is complete (past its last
   * transaction when the walsender has said it decoded further).
   */
  read(from: number, upto: number, partBytes: number): ChangeRead {
    let reached = from;
    const self = this;
    return {
      reached: () => reached,
      async *[Symbol.asyncIterator](): AsyncGenerator<CapturedPart> {
        const stream = await self.open();
        if (stream === null) return;
        const flushed = lsnNumber((await one<{ p: string }>(self.pool, `SELECT pg_current_wal_flush_lsn() AS p`))!.p);
        await stream.wait(Math.min(flushed, upto), upto < Number.MAX_SAFE_INTEGER ? BOUNDED_WAIT_MS : READ_WAIT_MS);
        const { txns, sent } = stream.take(from, upto);
        await self.visible(txns);
        const encoded = function* (): Generator<EncodedChange> {
          for (const txn of txns) for (const [op, , json] of txn.changes) yield [txn.end, op, json];
        };
        yield* packParts(encoded(), partBytes);
        reached = Math.max(from, txns.at(-1)?.end ?? 0, Math.min(sent, upto));
      },
    };
  }

  /**
   * Waits until every transaction of the read that recorded DDL is visible to new snapshots. A
   * commit is flushed to the WAL, and so can be decoded and streamed, a moment before the backend
   * that made it ends it in shared memory; a catalogue read in that moment (the batch's schema
   * fingerprint, read after the read) does not see its DDL yet. On a busy machine the moment is
   * milliseconds. Taking again after a failure re-reads the same transactions (take() keeps them).
   */
  private async visible(txns: Txn[]): Promise<void> {
    const xids = txns.flatMap((t) => (t.ddlXid === null ? [] : [t.ddlXid]));
    if (xids.length === 0) return;
    const visible = async () =>
      (await one<{ v: string }>(this.pool, `SELECT bool_and(pg_visible_in_snapshot(x, pg_current_snapshot())) AS v FROM unnest($1::xid8[]) x`, [xids]))?.v === "t";
    await pollUntil(visible, BOUNDED_WAIT_MS, `a committed DDL transaction (${xids.join(", ")}) was not visible`);
  }

  /** The running stream, or a new one from the slot's confirmed position; null when this repository captures nothing. */
  private async open(): Promise<SlotStream | null> {
    if (this.stream && !this.stream.failed) return this.stream;
    const release = await this.mutex.lock();
    try {
      if (this.stream?.failed) await this.stopStream();
      if (this.stream) return this.stream;
      const slot = await one<{ confirmed: string }>(this.pool, `SELECT confirmed_flush_lsn AS confirmed FROM pg_replication_slots WHERE slot_name = $1`, [
        this.slot,
      ]);
      if (this.lost) {
        const why = this.lost;
        this.lost = null;
        throw this.captureLost(why);
      }
      if (!slot) {
        if (!this.installed) return null;
        await this.createSlot();
        throw this.captureLost(`the capture slot ${this.slot} was dropped while this node was master`);
      }
      this.stream = await SlotStream.open(clientConfig(this.target), this.slot, PUBLICATION, lsnNumber(slot.confirmed));
      return this.stream;
    } finally {
      release();
    }
  }

  /** Closes the stream (the next read opens another). */
  async suspend(): Promise<void> {
    if (!this.stream) return;
    const release = await this.mutex.lock();
    await this.stopStream().finally(release);
  }

  /** With the mutex held. */
  private async stopStream(): Promise<void> {
    const s = this.stream;
    this.stream = null;
    if (!s) return;
    await s.close();
    // The walsender lets go of the slot a moment after its client leaves; a peek, an advance or a
    // drop before then fails with "replication slot is active". A server that does not answer has
    // no walsender to wait for.
    const deadline = Date.now() + SLOT_RELEASE_MS;
    while (Date.now() < deadline) {
      const r = await one<{ active: string }>(this.pool, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, [this.slot]).catch(() => undefined);
      if (r?.active !== "t") return;
      await new Promise((done) => setTimeout(done, 10));
    }
  }

  /**
   * While the stream runs, how far it has brought every committed transaction: a probe for "is
   * there more?" that costs no query (null: ask the server).
   */
  get streamed(): number | null {
    return this.stream && !this.stream.failed ? this.stream.position : null;
  }

  close(): Promise<void> {
    return this.suspend();
  }

  /** Changes of user tables (not heartbeats) in transactions past `after`: the slot peeked, the stream stopped. */
  async pending(after: number): Promise<number> {
    const release = await this.mutex.lock();
    try {
      await this.stopStream();
      const client = await this.pool.connect();
      try {
        if (!(await this.exists(client))) return 0;
        let n = 0;
        for await (const txn of this.peek(client)) {
          if (txn.end > after) n += txn.changes.filter(([, tbl]) => tbl !== "ferry_heartbeat").length;
        }
        return n;
      } finally {
        client.release();
      }
    } finally {
      release();
    }
  }

  /** The slot's committed transactions, decoded, through a cursor (the server keeps the decoded rows in a tuplestore that spills to disk). */
  private async *peek(client: pg.PoolClient) {
    await client.query("BEGIN");
    let ok = false;
    try {
      await client.query(
        `DECLARE ferry_peek NO SCROLL CURSOR FOR SELECT data FROM pg_logical_slot_peek_binary_changes(${quoteLit(this.slot)}, NULL, NULL,
           'proto_version', '1', 'publication_names', ${quoteLit(PUBLICATION)})`,
      );
      const decoder = new TxnDecoder();
      for (;;) {
        const res = await client.query({ text: `FETCH ${FETCH_ROWS} FROM ferry_peek`, rowMode: "array" });
        for (const [hex] of res.rows as [string][]) {
          const txn = decoder.push(Buffer.from(hex.slice(2), "hex"));
          if (txn) yield txn;
        }
        if (res.rows.length < FETCH_ROWS) break;
      }
      ok = true;
    } finally {
      await client.query(ok ? "COMMIT" : "ROLLBACK").catch(() => {});
    }
  }
}
