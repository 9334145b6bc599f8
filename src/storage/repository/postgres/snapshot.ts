/**
 * Consistent reads: every replicated table (a replica's initial copy) or one table (a sync
 * snapshot), at a position.
 *
 * On a master the snapshot must match a capture position exactly: every transaction it sees must
 * end at or before `seq`, every one it misses after. A REPEATABLE READ snapshot and a WAL position
 * cannot be taken at the same instant, so a second session holds SHARE locks on the tables while
 * both are taken: writers that hold the tables finish first, new ones wait (briefly: the locks go
 * as soon as the snapshot is exported to the reading session). On a replica the snapshot holds
 * the applied position, which the apply commits with the data.
 */
import type pg from "pg";
import { RepositoryError } from "../../../errors.js";
import { partitionOf, splitJsonArray, toObject } from "../../sync.js";
import { lsnNumber, newClient, one, pollUntil, quoteId, quoteLit } from "./connection.js";
import type { Target } from "./location.js";
import { orderExpr, orderParam, orderValue, tableMeta, type TableMeta } from "./schema.js";
import { decodeElement, encodeValue } from "./values.js";
import type { Position } from "../types.js";

const FETCH_ROWS = 500;
const LOCK_TIMEOUT = "2s";

export interface Consistent {
  client: pg.Client;
  seq: number;
  applied: Position;
}

/** A read-only REPEATABLE READ session; aligned with the capture position when `locked` is given. */
export async function openConsistent(target: Target, locked: string[] | null): Promise<Consistent> {
  const b = await newClient(target);
  try {
    let seq: number;
    if (locked) {
      const a = await newClient(target);
      try {
        // LOCK does not take the transaction's snapshot; the SELECT after it does.
        await a.query(`BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
        await a.query(`LOCK TABLE ${locked.map(quoteId).join(", ")} IN SHARE MODE`);
        const x = (await one<{ snap: string; lsn: string }>(a, `SELECT pg_export_snapshot() AS snap, pg_current_wal_insert_lsn() AS lsn`))!;
        await b.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT ${quoteLit(x.snap)}`);
        await a.query("COMMIT");
        seq = lsnNumber(x.lsn);
      } finally {
        await a.end().catch(() => {});
      }
      await waitFlushed(b, seq);
    } else {
      await b.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`);
      seq = lsnNumber((await one<{ p: string }>(b, `SELECT pg_current_wal_flush_lsn() AS p`))!.p);
    }
    return { client: b, seq, applied: await positionOf(b) };
  } catch (err) {
    await b.end().catch(() => {});
    throw err;
  }
}

/** The capture reads only flushed WAL: `seq` is a position once the flush has passed it. */
async function waitFlushed(c: pg.Client, lsn: number): Promise<void> {
  const flushed = async () => lsnNumber((await one<{ p: string }>(c, `SELECT pg_current_wal_flush_lsn() AS p`))!.p) >= lsn;
  await pollUntil(flushed, 10_000, `the WAL was not flushed past ${lsn}`);
}

export async function positionOf(q: pg.ClientBase | pg.Pool): Promise<Position> {
  const r = await q.query(`SELECT key, value FROM ferry_state WHERE key IN ('applied_lsn', 'applied_epoch')`);
  const m = new Map((r.rows as { key: string; value: string }[]).map((x) => [x.key, Number(x.value)]));
  return { lsn: m.get("applied_lsn") ?? 0, epoch: m.get("applied_epoch") ?? 0 };
}

/** A table's rows as arrays of row image elements, through a cursor in the session's snapshot. */
export class RowCursor {
  private buffered: string[][] = [];
  private done = false;
  private opened = false;

  constructor(
    private readonly client: pg.ClientBase,
    readonly meta: TableMeta,
    private readonly name: string,
    private readonly where = "",
    private readonly params: unknown[] = [],
    private readonly order = "",
  ) {}

  /** The next row's elements, or null at the end. */
  async next(): Promise<string[] | null> {
    if (this.buffered.length === 0 && !this.done) await this.fetch();
    return this.buffered.shift() ?? null;
  }

  /** Ends the read before its last row. */
  async close(): Promise<void> {
    if (this.opened && !this.done) await this.client.query(`CLOSE ${this.name}`);
    this.done = true;
    this.buffered = [];
  }

  /** Puts a row back (it did not fit in the caller's budget). */
  unshift(row: string[]): void {
    this.buffered.unshift(row);
  }

  private async fetch(): Promise<void> {
    if (!this.opened) {
      const cols = this.meta.image.map((c) => quoteId(c.name)).join(", ");
      await this.client.query(
        `DECLARE ${this.name} NO SCROLL CURSOR FOR SELECT ${cols} FROM ${quoteId(this.meta.name)}${this.where}${this.order}`,
        this.params,
      );
      this.opened = true;
    }
    const res = await this.client.query({ text: `FETCH ${FETCH_ROWS} FROM ${this.name}`, rowMode: "array" });
    const types = this.meta.image.map((c) => c.typeOid);
    for (const r of res.rows as (string | null)[][]) this.buffered.push(r.map((v, i) => encodeValue(types[i], v)));
    if (res.rows.length < FETCH_ROWS) {
      this.done = true;
      await this.client.query(`CLOSE ${this.name}`);
    }
  }
}

/**
 * The cursor's next rows as `encode` writes them (null: the row is skipped), within maxBytes as
 * `size` counts them but at least one; `ended` once the cursor has no more rows.
 */
export async function takeRows(
  cursor: RowCursor,
  maxBytes: number,
  encode: (row: string[]) => string | null,
  size: (text: string) => number,
): Promise<{ texts: string[]; ended: boolean }> {
  const texts: string[] = [];
  let bytes = 0;
  for (;;) {
    const row = await cursor.next();
    if (row === null) return { texts, ended: true };
    const text = encode(row);
    if (text === null) continue;
    const n = size(text);
    if (texts.length > 0 && bytes + n > maxBytes) {
      cursor.unshift(row);
      return { texts, ended: false };
    }
    texts.push(text);
    bytes += n;
  }
}

/**
 * A reader of one table in ferry's key order, as JSON Lines of objects. A table without a primary
 * key is read in the order of all its columns (TableMeta.key), text by bytes (COLLATE "C"), NULL
 * first. Such a table may hold equal rows, and `after` skips every row equal to it: a read resumed
 * after a key (a sync whose session was lost) misses the rest of a run of equal rows it was in.
 */
export async function tableCursor(
  client: pg.ClientBase,
  table: string,
  opts: { after?: string | null; since?: { column: string; min: number } },
): Promise<RowCursor> {
  const meta = await tableMeta(client, table);
  if (!meta) throw new RepositoryError("NOT_FOUND", `table ${table} does not exist`);
  const where: string[] = [];
  const params: unknown[] = [];
  if (opts.after) {
    const key = splitJsonArray(opts.after).map(decodeElement);
    where.push(afterKey(meta, params.length + 1));
    params.push(...key);
  }
  if (opts.since) {
    const col = meta.image.find((c) => c.name === opts.since!.column);
    if (!col) throw new RepositoryError("NOT_FOUND", `table ${table} has no column ${opts.since.column}`);
    params.push(String(opts.since.min));
    where.push(`${quoteId(col.name)} >= $${params.length}`);
  }
  return new RowCursor(
    client,
    meta,
    "ferry_table",
    where.length ? ` WHERE ${where.join(" AND ")}` : "",
    params,
    ` ORDER BY ${meta.key.map(orderExpr).join(", ")}`,
  );
}

/** Rows past a key bound as $first...: a row comparison, or for nullable key columns its NULL-first expansion. */
export function afterKey(meta: TableMeta, first: number): string {
  const cols = meta.key.map((c, i) => ({ c, col: orderValue(c), p: orderParam(c, first + i) }));
  if (cols.every(({ c }) => c.notNull)) return `(${cols.map((x) => x.col).join(", ")}) > (${cols.map((x) => x.p).join(", ")})`;
  // (a, b) > (x, y) as a1 > x OR (a1 = x AND b > y), where NULL = NULL and NULL < any value.
  const gt = ({ col, p }: (typeof cols)[number]) => `((${p}) IS NULL AND ${col} IS NOT NULL OR coalesce(${col} > ${p}, false))`;
  const eq = ({ col, p }: (typeof cols)[number]) => `${col} IS NOT DISTINCT FROM ${p}`;
  return `(${cols.map((x, i) => [...cols.slice(0, i).map(eq), gt(x)].join(" AND ")).join(" OR ")})`;
}

/** The key image elements of a row's image elements. */
export function keyElements(meta: TableMeta, row: string[]): string[] {
  if (!meta.primaryKey) return row;
  const out: string[] = [];
  meta.image.forEach((c, i) => {
    if (c.key) out.push(row[i]);
  });
  return out;
}

export function inPartition(meta: TableMeta, row: string[], partition?: { index: number; count: number }): boolean {
  return !partition || partition.count <= 1 || partitionOf(keyElements(meta, row), partition.count) === partition.index;
}

export const asObject = (meta: TableMeta, row: string[]) =>
  toObject(
    meta.image.map((c) => c.name),
    row,
  );
