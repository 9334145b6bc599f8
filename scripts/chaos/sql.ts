/**
 * The chaos run's SQL for each repository kind. The statements mean the same on both: the
 * workload table `w` has a key the database assigns (`rid`), so a write applied twice shows as two
 * rows with the same `k`; the sync tables hold fixed rows; the filler writes about 2 KB of
 * incompressible text per row.
 */
import type { RepositoryKind } from "../../src/storage/repository/types.js";

export interface ChaosSql {
  /** The workload's and the filler's tables (idempotent). */
  tables: string;
  /** A static table of n rows for mode-0 sync tasks (idempotent). */
  syncTable(name: string, n: number): string;
  /** One workload write: parameters [k, writer]. */
  insert: string;
  /** Eight filler rows of about 2 KB each (slave-backlog). */
  filler: string;
  /** What DB.TABLE names the database as, when the repository does not say (tableColumns().db). */
  defaultDb: string;
}

const SQLITE: ChaosSql = {
  tables: "CREATE TABLE IF NOT EXISTS w(rid INTEGER PRIMARY KEY, k INTEGER NOT NULL, writer TEXT NOT NULL); CREATE TABLE IF NOT EXISTS fill(id INTEGER PRIMARY KEY, pad TEXT)",
  syncTable: (t, n) =>
    `CREATE TABLE IF NOT EXISTS ${t}(id INTEGER PRIMARY KEY, v TEXT NOT NULL, n INTEGER); ` +
    `WITH RECURSIVE x(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM x WHERE i < ${n}) INSERT OR IGNORE INTO ${t} SELECT i, '${t}-' || i, i * 7 FROM x`,
  insert: "INSERT INTO w(k, writer) VALUES (?, ?)",
  filler:
    "INSERT INTO fill(pad) SELECT hex(randomblob(1000)) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8)",
  defaultDb: "main",
};

const POSTGRES: ChaosSql = {
  // bigserial: the database assigns rid, as SQLite's INTEGER PRIMARY KEY does (a promoted master's
  // sequence must continue past the old master's).
  tables: "CREATE TABLE IF NOT EXISTS w(rid bigserial PRIMARY KEY, k integer NOT NULL, writer text NOT NULL); CREATE TABLE IF NOT EXISTS fill(id bigserial PRIMARY KEY, pad text)",
  syncTable: (t, n) =>
    `CREATE TABLE IF NOT EXISTS ${t}(id integer PRIMARY KEY, v text NOT NULL, n integer); ` +
    `INSERT INTO ${t}(id, v, n) SELECT i, '${t}-' || i, i * 7 FROM generate_series(1, ${n}) AS x(i) ON CONFLICT DO NOTHING`,
  insert: "INSERT INTO w(k, writer) VALUES ($1, $2)",
  filler: "INSERT INTO fill(pad) SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 8) AS g(i) CROSS JOIN generate_series(1, 63) AS s(j) GROUP BY g.i",
  defaultDb: "public",
};

export function chaosSql(kind: RepositoryKind): ChaosSql {
  return kind === "postgres" ? POSTGRES : SQLITE;
}
