/**
 * Compare reads on SQLite: one read transaction (WAL: writers go on) in which every chunk is read
 * in BINARY key order, each row as its row image, summed by checksum.ts. A range's bounds are key
 * images decoded in SQL and compared as row values, so the same range selects the same keys on
 * every node. A rowid table (the common case) is read a chunk per statement, its images joined in
 * SQL and hashed in place.
 */
import type Database from "better-sqlite3";
import { RepositoryError } from "../../../errors.js";
import { Chunker, RowSum } from "../checksum.js";
import type { ChunkSum, CompareRead, KeyedRow, KeyRange, Position, TableColumns } from "../types.js";
import { dec, enc, quoteId } from "./sql-text.js";
import type { DB } from "./db.js";

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

/** The WHERE clause (or "") and its parameters for from < rowid <= upto, null meaning open. */
function rowidRange(rowid: string, from: number | bigint | null, upto: number | bigint | null): [string, (number | bigint)[]] {
  const where = [from === null ? "" : `${rowid} > ?`, upto === null ? "" : `${rowid} <= ?`].filter(Boolean);
  return [where.length ? ` WHERE ${where.join(" AND ")}` : "", [from, upto].filter((b) => b !== null)];
}

export function openCompareRead(conn: DB, header: { seq: number; applied: Position }, tables: CompareTable[], close: () => void): CompareRead {
  const byName = new Map(tables.map((t) => [t.name, t]));
  const table = (name: string) => {
    const t = byName.get(name);
    if (!t) throw new RepositoryError("NOT_FOUND", `table ${name} does not exist here`, { hint: "the replica's schema differs from the master's: ferry resync --node ID" });
    return t;
  };
  const turn = () => new Promise((r) => setImmediate(r));
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
      await turn();
    }
  };

  /**
   * A rowid table's rows with from < rowid <= upto (null: open), at most `limit`, as one string of
   * row images apart by "\n" (JSON holds no raw newline): no string per row crosses into
   * JavaScript, which cost as much as the scan. [rows, the last rowid, the images].
   */
  const images = (t: CompareTable, from: number | bigint | null, upto: number | bigint | null, limit: number): [number, bigint | null, string | null] => {
    const k = quoteId(t.key[0]);
    const img = `json_array(${t.image.map((c) => enc(quoteId(c))).join(",")})`;
    const [where, params] = rowidRange(k, from, upto);
    const sql = `SELECT count(*), max(k), group_concat(img, char(10)) FROM (SELECT ${k} AS k, ${img} AS img FROM ${quoteId(t.name)}${where} ORDER BY ${k} LIMIT ?)`;
    const [rows, last, text] = prepared(sql)
      .safeIntegers(true)
      .get(...params, limit) as [bigint, bigint | null, string | null];
    return [Number(rows), last, text];
  };
  /** Whether a row follows rowid `from` (up to `upto`): the last chunk stays open-ended, as Chunker's. */
  const more = (t: CompareTable, from: bigint | null, upto: number | bigint | null): boolean => {
    const [where, params] = rowidRange(quoteId(t.key[0]), from, upto);
    return prepared(`SELECT 1 FROM ${quoteId(t.name)}${where} LIMIT 1`).get(...params) !== undefined;
  };
  const addImages = (sum: RowSum, text: string | null) => {
    if (text === null) return;
    for (let from = 0; from <= text.length; ) {
      const nl = text.indexOf("\n", from);
      const end = nl < 0 ? text.length : nl;
      sum.add(text, from, end);
      from = end + 1;
    }
  };
  /** chunks() of a rowid table: each chunk one statement, cut every chunkRows rows (rowids are unique). */
  const rowidChunks = async (t: CompareTable, { chunkRows, after, upto, maxChunks }: KeyRange & { chunkRows: number; maxChunks: number }) => {
    const chunks: ChunkSum[] = [];
    const end = upto === null ? null : rowidOf(upto);
    for (let from = after; ; ) {
      const [rows, last, text] = images(t, from === null ? null : rowidOf(from), end, chunkRows);
      const sum = new RowSum();
      addImages(sum, text);
      // The last chunk ends where the range ends (rows past the last key elsewhere fall into it).
      if (rows < chunkRows || !more(t, last, end)) {
        chunks.push({ after: from, upto, rows, sum: sum.digest() });
        return { chunks, done: true };
      }
      const cut = `[${last}]`;
      chunks.push({ after: from, upto: cut, rows, sum: sum.digest() });
      if (chunks.length >= maxChunks) return { chunks, done: false };
      from = cut;
      await turn();
    }
  };

  return {
    header,
    tables: tables.map((t): TableColumns => ({ name: t.name, db: "main", columns: t.image, key: t.key })),
    async chunks(name, { chunkRows, after, upto, maxChunks }) {
      const t = table(name);
      if (t.rowid) return rowidChunks(t, { chunkRows, after, upto, maxChunks });
      const chunker = new Chunker(chunkRows, after);
      const done = await each(t, { after, upto }, (key, row) => chunker.add(key, row, maxChunks));
      return { chunks: done ? chunker.end(upto) : chunker.chunks, done };
    },
    async sums(name, ranges) {
      const t = table(name);
      const sums = ranges.map(() => new RowSum());
      if (t.rowid) {
        for (const [i, r] of ranges.entries()) {
          const upto = r.upto === null ? null : rowidOf(r.upto);
          for (let from = r.after === null ? null : rowidOf(r.after); ; ) {
            const [rows, last, text] = images(t, from, upto, PAGE_ROWS);
            addImages(sums[i], text);
            if (rows < PAGE_ROWS) break;
            from = last;
            await turn();
          }
        }
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
