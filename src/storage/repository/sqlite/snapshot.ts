/**
 * Reads of one read transaction, in batches: a snapshot's tables as row images (resync, a new
 * replica), and one table as JSON objects in key order (offline sync).
 */
import { RepositoryError } from "../../../errors.js";
import { partitionOf, splitJsonArray } from "../../sync.js";
import { dec, enc, quoteId, quoteStr } from "./sql-text.js";
import { endRead, type DB } from "./db.js";
import type { TableInfo } from "./schema.js";
import type { SnapshotReader, TableReader, TableReadOpts } from "../types.js";

/** Encodes a value for a JSON object row: blobs become {"$blob": HEX}. */
const encObj = (expr: string) => `CASE WHEN typeof(${expr})='blob' THEN json_object('$blob',hex(${expr})) ELSE ${expr} END`;

/** sync.ts partitionOf as SQLite SQL over a table's key columns (the read's WHERE clause). */
function partitionSql(keyExprs: string[], encoded: string[], index: number, count: number): string {
  if (count <= 1) return "1";
  const hashed = `ferry_partition(json_array(${encoded.join(",")}), ${count})`;
  if (keyExprs.length !== 1) return `${hashed} = ${index}`;
  const k = keyExprs[0];
  return `(CASE WHEN typeof(${k})='integer' AND ${k} BETWEEN -9007199254740991 AND 9007199254740991 THEN ((${k} % ${count}) + ${count}) % ${count} ELSE ${hashed} END) = ${index}`;
}

/** Rows of an iterator in batches of at most maxBytes, at least one row: a row that does not fit waits for the next batch. */
class RowBatches {
  private pending: string | null = null;

  constructor(private readonly size: (row: string) => number) {}

  /** The next batch; `done` once the iterator ran out (the batch may still hold rows). */
  take(iter: Iterator<unknown[]>, maxBytes: number): { rows: string[]; done: boolean } {
    const rows: string[] = [];
    let bytes = 0;
    if (this.pending !== null) {
      rows.push(this.pending);
      bytes += this.size(this.pending);
      this.pending = null;
    }
    for (;;) {
      const r = iter.next();
      if (r.done) return { rows, done: true };
      const row = r.value[0] as string;
      const size = this.size(row);
      if (rows.length > 0 && bytes + size > maxBytes) {
        this.pending = row;
        return { rows, done: false };
      }
      rows.push(row);
      bytes += size;
    }
  }
}

/** The tables' rows as row images, table after table; the read ends with close(). */
export function imageBatches(conn: DB, tables: TableInfo[]): Omit<SnapshotReader, "header"> {
  let ti = 0;
  let iter: IterableIterator<unknown[]> | null = null;
  const batches = new RowBatches((row) => row.length);
  return {
    async next(maxBytes: number) {
      while (ti < tables.length) {
        const t = tables[ti];
        iter ??= conn.prepare(`SELECT json_array(${t.image.map((c) => enc(quoteId(c))).join(",")}) FROM ${quoteId(t.name)}`).raw().iterate() as IterableIterator<unknown[]>;
        const { rows, done } = batches.take(iter, maxBytes);
        if (done) {
          iter = null;
          ti++;
        }
        if (rows.length > 0) return { table: t.name, rows };
      }
      return null;
    },
    close: async () => endRead(conn, iter),
  };
}

/** One table's rows as JSON Lines of objects in key order, from a partition, after a key, since a value; the read ends with close(). */
export function objectLines(conn: DB, t: TableInfo, opts: TableReadOpts): Omit<TableReader, "header"> {
  conn.function("ferry_partition", { deterministic: true }, (k: unknown, n: unknown) => partitionOf(splitJsonArray(String(k)), Number(n)));
  const keys = t.key.map(quoteId);
  const where: string[] = [];
  const params: unknown[] = [];
  if (opts.partition) where.push(partitionSql(keys, keys.map(enc), opts.partition.index, opts.partition.count));
  // Key order is BINARY whatever the columns' collation: the change stream compares keys the same way.
  const ordered = keys.map((k) => `${k} COLLATE BINARY`).join(",");
  if (opts.after) {
    where.push(`(${ordered}) > (SELECT ${t.key.map((_, i) => dec(i)).join(",")} FROM (SELECT ? AS j))`);
    params.push(opts.after);
  }
  if (opts.since) {
    if (!t.image.includes(opts.since.column)) {
      throw new RepositoryError("NOT_FOUND", `table ${opts.table} has no column ${opts.since.column}`);
    }
    where.push(`${quoteId(opts.since.column)} >= ?`);
    params.push(opts.since.min);
  }
  const obj = `json_object(${t.image.map((c) => `${quoteStr(c)},${encObj(quoteId(c))}`).join(",")})`;
  const sql = `SELECT ${obj} FROM ${quoteId(t.name)}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY ${ordered}`;
  const iter = conn.prepare(sql).raw().iterate(...params) as IterableIterator<[string]>;
  const batches = new RowBatches((row) => Buffer.byteLength(row) + 1);
  let done = false;
  return {
    async next(maxBytes: number) {
      if (done) return null;
      const taken = batches.take(iter, maxBytes);
      done = taken.done;
      return taken.rows.length === 0 ? null : { rows: taken.rows.length, text: taken.rows.join("\n") + "\n" };
    },
    close: async () => endRead(conn, iter),
  };
}
