/**
 * Compare reads on SQLite: one read transaction (WAL: writers go on) in which every chunk is read
 * in BINARY key order, each row as its row image, summed by checksum.ts. A range's bounds are key
 * images decoded in SQL and compared as row values, so the same range selects the same keys on
 * every node; ranges of rowids are summed in one pass.
 */
import type Database from "better-sqlite3";
import { RepositoryError } from "../../../errors.js";
import { Chunker, RowSum } from "../checksum.js";
import type { CompareRead, KeyedRow, KeyRange, Position, TableColumns } from "../types.js";
import { dec, enc, quoteId } from "./sql-text.js";

type DB = Database.Database;

const PAGE_ROWS = 2000;

/** A table as a row image carries it: `image` columns (the rowid first when it is the key), `key` among them. */
export interface CompareTable {
  name: string;
  image: string[];
  key: string[];
  /** The key is the rowid: one integer, so JavaScript can place a row in its range. */
  rowid: boolean;
}

/** A rowid's key image ("[123]") as a number, exact (BigInt past 2^53). */
const rowidOf = (image: string): number | bigint => {
  const digits = image.slice(1, -1);
  return digits.length < 16 ? Number(digits) : BigInt(digits);
};

export function openCompareRead(conn: DB, header: { seq: number; applied: Position }, tables: CompareTable[], close: () => void): CompareRead {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const table = (name: string) => {
    const t = byName.get(name);
    if (!t) throw new RepositoryError("NOT_FOUND", `table ${name} does not exist here`, { hint: "the replica's schema differs from the master's: ferry resync --node ID" });
    return t;
  };
  const statements = new Map<string, Database.Statement>();
  const prepared = (sql: string) => {
    let st = statements.get(sql);
    if (!st) statements.set(sql, (st = conn.prepare(sql).raw()));
    return st;
  };
  /** Up to `limit` rows of a range in key order, [key image, row image]. */
  const page = (t: CompareTable, range: KeyRange, limit: number): [string, string][] => {
    const ordered = t.key.map((k) => `${quoteId(k)} COLLATE BINARY`).join(",");
    const bound = `(SELECT ${t.key.map((_, i) => dec(i)).join(",")} FROM (SELECT ? AS j))`;
    const where: string[] = [];
    const params: unknown[] = [];
    if (range.after) {
      where.push(`(${ordered}) > ${bound}`);
      params.push(range.after);
    }
    if (range.upto) {
      where.push(`(${ordered}) <= ${bound}`);
      params.push(range.upto);
    }
    const key = `json_array(${t.key.map((c) => enc(quoteId(c))).join(",")})`;
    const img = `json_array(${t.image.map((c) => enc(quoteId(c))).join(",")})`;
    const sql = `SELECT ${key}, ${img} FROM ${quoteId(t.name)}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY ${ordered} LIMIT ?`;
    return prepared(sql).all(...params, limit) as [string, string][];
  };

  /**
   * Every row of a range, [key image, row image], until `fn` says false; true when all were read.
   * Rows come in pages (keyset: each after the last key of the one before), faster than a row
   * iterator, and the event loop gets a turn between pages (SQLite reads block it), so a compare
   * on a master delays neither its writes nor its lease renewals.
   */
  const each = async (t: CompareTable, range: KeyRange, fn: (key: string, row: string) => boolean | void): Promise<boolean> => {
    for (let after = range.after; ; ) {
      const rows = page(t, { after, upto: range.upto }, PAGE_ROWS);
      for (const [key, row] of rows) if (fn(key, row) === false) return false;
      if (rows.length < PAGE_ROWS) return true;
      after = rows[rows.length - 1][0];
      await new Promise((r) => setImmediate(r));
    }
  };

  return {
    header,
    tables: tables.map((t): TableColumns => ({ name: t.name, db: "main", columns: t.image, key: t.key })),
    async chunks(name, { chunkRows, after, upto, maxChunks }) {
      const chunker = new Chunker(chunkRows, after);
      const done = await each(table(name), { after, upto }, (key, row) => chunker.add(key, row, maxChunks));
      return { chunks: done ? chunker.end(upto) : chunker.chunks, done };
    },
    async sums(name, ranges) {
      const t = table(name);
      const sums = ranges.map(() => new RowSum());
      if (t.rowid && ranges.length > 0) {
        // Contiguous ranges of rowids: one pass over all of them, each row placed by its rowid.
        const bounds = ranges.map((r) => (r.upto === null ? null : rowidOf(r.upto)));
        let i = 0;
        await each(t, { after: ranges[0].after, upto: ranges[ranges.length - 1].upto }, (key, row) => {
          const k = rowidOf(key);
          while (bounds[i] !== null && k > bounds[i]!) i++;
          sums[i].add(row);
        });
      } else {
        for (let i = 0; i < ranges.length; i++) await each(t, ranges[i], (_key, row) => sums[i].add(row));
      }
      return ranges.map((r, i) => ({ ...r, rows: sums[i].rows, sum: sums[i].digest() }));
    },
    async rows(name, range) {
      const out: KeyedRow[] = [];
      await each(table(name), range, (key, row) => {
        out.push({ key, row });
      });
      return out;
    },
    async close() {
      close();
    },
  };
}
