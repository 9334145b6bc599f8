/**
 * Compare reads on SQLite: one read transaction (WAL: writers go on) in which every chunk is read
 * in BINARY key order, each row as its row image, summed by checksum.ts. A range's bounds are key
 * images decoded in SQL and compared as row values, so the same range selects the same keys on
 * every node.
 */
import type Database from "better-sqlite3";
import { RepositoryError } from "../../../errors.js";
import { Chunker, RowSum } from "../checksum.js";
import type { CompareRead, KeyedRow, KeyRange, Position, TableColumns } from "../types.js";
import { dec, enc, quoteId } from "./sql-text.js";

type DB = Database.Database;

/** A table as a row image carries it: `image` columns (the rowid first when it is the key), `key` among them. */
export interface CompareTable {
  name: string;
  image: string[];
  key: string[];
}

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
  const select = (t: CompareTable, range: KeyRange | null) => {
    const ordered = t.key.map((k) => `${quoteId(k)} COLLATE BINARY`).join(",");
    const bound = `(SELECT ${t.key.map((_, i) => dec(i)).join(",")} FROM (SELECT ? AS j))`;
    const where: string[] = [];
    const params: string[] = [];
    if (range?.after) {
      where.push(`(${ordered}) > ${bound}`);
      params.push(range.after);
    }
    if (range?.upto) {
      where.push(`(${ordered}) <= ${bound}`);
      params.push(range.upto);
    }
    const key = `json_array(${t.key.map((c) => enc(quoteId(c))).join(",")})`;
    const img = `json_array(${t.image.map((c) => enc(quoteId(c))).join(",")})`;
    const sql = `SELECT ${key}, ${img} FROM ${quoteId(t.name)}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY ${ordered}`;
    return prepared(sql).iterate(...params) as IterableIterator<[string, string]>;
  };

  return {
    header,
    tables: tables.map((t): TableColumns => ({ name: t.name, db: "main", columns: t.image, key: t.key })),
    async chunks(name, { chunkRows, after, upto, maxChunks }) {
      const chunker = new Chunker(chunkRows, after);
      for (const [key, row] of select(table(name), { after, upto })) {
        if (!chunker.add(key, row, maxChunks)) return { chunks: chunker.chunks, done: false };
      }
      return { chunks: chunker.end(upto), done: true };
    },
    async sums(name, ranges) {
      const t = table(name);
      return ranges.map((r) => {
        const sum = new RowSum();
        for (const [, row] of select(t, r)) sum.add(row);
        return { ...r, rows: sum.rows, sum: sum.digest() };
      });
    },
    async rows(name, range) {
      const out: KeyedRow[] = [];
      for (const [key, row] of select(table(name), range)) out.push({ key, row });
      return out;
    },
    async close() {
      close();
    },
  };
}
