/**
 * DuckDB as the outside reader of the sync destination's files: rows as plain values (64-bit
 * integers as BigInt, blobs as uppercase HEX), so they compare with the repository's rows.
 */
import { DuckDBBlobValue, DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";

let conn: DuckDBConnection | null = null;

const plain = (v: unknown): unknown => (v instanceof DuckDBBlobValue ? Buffer.from(v.bytes).toString("hex").toUpperCase() : v);

export async function duck(sql: string): Promise<Record<string, unknown>[]> {
  conn ??= await (await DuckDBInstance.create(":memory:")).connect();
  const r = await conn.runAndReadAll(sql);
  return r.getRowObjects().map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, plain(v)])));
}

/** The column types DuckDB reads from a query, by name. */
export async function duckTypes(sql: string): Promise<Record<string, string>> {
  return Object.fromEntries((await duck(`DESCRIBE ${sql}`)).map((r) => [String(r.column_name), String(r.column_type)]));
}

/** A string literal for a path in DuckDB SQL. */
export const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;
