/**
 * Row images upserted into one table many rows per statement. better-sqlite3 spends about as much
 * on a statement call as SQLite spends inserting a row, so a replica that ran one INSERT per row
 * cost twice a plain insert (measured on the bench's rows: one INSERT per row 2.0–2.7 µs, 64 rows
 * per INSERT 1.37–1.39 µs, the plain writer's insert 1.28–1.36 µs).
 *
 * Invariants: rows reach the table in the order they were added (a multi-row INSERT OR REPLACE
 * inserts its rows one after the other, so a key met twice ends with the later row); nothing is
 * written until flush(), which the caller runs before any other statement on the table; row
 * counts per statement are powers of two, so a table has at most seven statements.
 */
import type Database from "better-sqlite3";
import { RepositoryError } from "../../../errors.js";
import { decodeImage, type SqlValue } from "../row-image.js";

const MOST_ROWS = 64;
/** SQLite's SQLITE_MAX_VARIABLE_NUMBER as better-sqlite3 builds it. */
const MAX_PARAMS = 32_766;

/** The statement that upserts `rows` rows of `table`, and the table's row image width. */
export interface UpsertTarget {
  statement(table: string, rows: number): Database.Statement;
  width(table: string): number;
}

export const upsertSql = (table: string, cols: string[], rows: number) =>
  `INSERT OR REPLACE INTO ${table}(${cols.join(",")}) VALUES ${Array(rows).fill(`(${cols.map(() => "?").join(",")})`).join(",")}`;

export class Upserts {
  private table: string | null = null;
  private width = 0;
  private most = 1;
  private values: SqlValue[] = [];
  private rows = 0;

  constructor(private readonly target: UpsertTarget) {}

  /** Adds a row image (the text decodeImage reads) of `table`. */
  add(table: string, image: string): void {
    if (table !== this.table) {
      this.flush();
      this.table = table;
      this.width = this.target.width(table);
      this.most = Math.min(MOST_ROWS, 2 ** Math.floor(Math.log2(Math.max(1, Math.floor(MAX_PARAMS / this.width)))));
    }
    const before = this.values.length;
    decodeImage(image, this.values);
    if (this.values.length - before !== this.width) {
      throw new RepositoryError("SCHEMA_MISMATCH", `a row image of ${table} has ${this.values.length - before} values, the table ${this.width}`, {
        hint: "the replica's schema differs from the master's: resync it",
      });
    }
    if (++this.rows === this.most) this.flush();
  }

  flush(): void {
    if (this.rows === 0) return;
    const w = this.width;
    let done = 0;
    for (let n = this.most; done < this.rows; n >>= 1) {
      for (; this.rows - done >= n; done += n) {
        this.target.statement(this.table!, n).run(n === this.rows ? this.values : this.values.slice(done * w, (done + n) * w));
      }
    }
    this.values = [];
    this.rows = 0;
  }

  /** Writes what is pending before DDL; widths and statements are read again after it. */
  forget(): void {
    this.flush();
    this.table = null;
  }
}
