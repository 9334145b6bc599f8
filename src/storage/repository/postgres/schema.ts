/**
 * What ferry reads from the catalogue: which tables it replicates, their columns and keys, the
 * schema objects a replica is rebuilt from, the fingerprint and the dump.
 *
 * Replicated tables are the ordinary tables of schema `public` (other schemas are not replicated)
 * plus ferry_heartbeat and ferry_requests. A row image holds a table's stored columns (generated
 * columns are left out, as pgoutput leaves them out) in column order; a key image holds the
 * primary key's columns, also in column order. A table without a primary key is replicated too:
 * its inserts always, its updates and deletes once the user sets REPLICA IDENTITY FULL (before
 * that PostgreSQL itself refuses them while the publication exists); its key is every column.
 */
import { createHash } from "node:crypto";
import { RepositoryError } from "../../../errors.js";
import { one, quoteId, rows, type Queryable } from "./connection.js";
import { REFUSED_TYPES } from "./values.js";
import type { SchemaObject } from "../types.js";

/** The schema replicated, and the name users give tables under (DB.TABLE). */
export const REPLICATED_SCHEMA = "public";

export const FERRY_TABLES = `
CREATE TABLE IF NOT EXISTS ferry_state(key text PRIMARY KEY, value text);
CREATE TABLE IF NOT EXISTS ferry_heartbeat(node text PRIMARY KEY, ts bigint NOT NULL, epoch bigint NOT NULL);
CREATE TABLE IF NOT EXISTS ferry_requests(id text PRIMARY KEY, ts bigint NOT NULL, node text NOT NULL, last_change bigint NOT NULL, results text NOT NULL);
CREATE TABLE IF NOT EXISTS ferry_ddl(id bigserial PRIMARY KEY, sql text NOT NULL, tbl text,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(), at timestamptz NOT NULL DEFAULT statement_timestamp());
`;

/** ferry_ddl as an earlier ferry made it, brought up to date (init() runs it only when a column is missing). */
export const FERRY_DDL_UPGRADE = {
  check: `SELECT count(*) = 3 AS ok FROM pg_attribute WHERE attrelid = 'ferry_ddl'::regclass AND attname IN ('tbl', 'xid', 'at') AND NOT attisdropped`,
  sql: `ALTER TABLE ferry_ddl ADD COLUMN IF NOT EXISTS tbl text,
  ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  ADD COLUMN IF NOT EXISTS at timestamptz NOT NULL DEFAULT statement_timestamp()`,
};

/** ferry's tables whose rows replicate like a user table's. */
export const REPLICATED_FERRY_TABLES = ["ferry_heartbeat", "ferry_requests"];

const USER_TABLES = `
SELECT c.oid, c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname NOT LIKE 'ferry\\_%' ORDER BY c.relname COLLATE "C"`;

export async function userTables(q: Queryable): Promise<string[]> {
  return (await rows<{ name: string }>(q, USER_TABLES)).map((r) => r.name);
}

export async function replicatedTables(q: Queryable): Promise<string[]> {
  return [...(await userTables(q)), ...REPLICATED_FERRY_TABLES];
}

export interface ColumnMeta {
  name: string;
  typeOid: number;
  /** format_type with the modifier, as in CREATE TABLE. */
  type: string;
  /**
   * The type's catalogue name without a modifier (`pg_catalog.bpchar`; format_type's `character`
   * would mean char(1)): what a value read as text is cast to before it meets the column.
   */
  cast: string;
  notNull: boolean;
  generated: string | null;
  identity: string;
  default: string | null;
  collation: string | null;
  key: boolean;
}

export interface TableMeta {
  name: string;
  columns: ColumnMeta[];
  /** Columns in a row image. */
  image: ColumnMeta[];
  /** Whether the table has a primary key. */
  primaryKey: boolean;
  /**
   * The primary key's columns; without a primary key, every column of the row image: rows are
   * then ordered (dump, table readers) and partitioned by all their values, and a key image is the
   * whole old row.
   */
  key: ColumnMeta[];
}

const COLUMNS = `
SELECT a.attname AS name, a.atttypid::int AS oid, format_type(a.atttypid, a.atttypmod) AS type,
  quote_ident(tn.nspname) || '.' || quote_ident(t.typname) AS cast, a.attnotnull AS not_null,
  CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated,
  a.attidentity AS identity,
  CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS def,
  CASE WHEN a.attcollation <> t.typcollation THEN quote_ident(co.collname) END AS collation,
  coalesce(a.attnum = ANY (i.indkey), false) AS key
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_namespace tn ON tn.oid = t.typnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind = 'r'
ORDER BY a.attnum`;

export async function tableMeta(q: Queryable, name: string): Promise<TableMeta | null> {
  const cols = (await rows(q, COLUMNS, [name])).map(
    (r): ColumnMeta => ({
      name: r.name!,
      typeOid: Number(r.oid),
      type: r.type!,
      cast: r.cast!,
      notNull: r.not_null === "t",
      generated: r.generated,
      identity: r.identity ?? "",
      default: r.def,
      collation: r.collation,
      key: r.key === "t",
    }),
  );
  if (cols.length === 0) return null;
  const image = cols.filter((c) => c.generated === null);
  const pk = image.filter((c) => c.key);
  return { name, columns: cols, image, primaryKey: pk.length > 0, key: pk.length > 0 ? pk : image };
}

/**
 * Tables capture cannot carry: with a replica identity other than the primary key or FULL (a key
 * image is the primary key, or the whole old row), or with a column type whose text is not exact.
 * Tables without a primary key are carried (see the module comment). Throws naming every one.
 */
export async function checkReplicable(q: Queryable): Promise<void> {
  const identity = await rows<{ name: string }>(
    q,
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relreplident NOT IN ('d', 'f') ORDER BY 1`,
  );
  if (identity.length > 0) {
    throw new RepositoryError("SQL_ERROR", `tables with a replica identity other than the primary key or FULL cannot be replicated: ${identity.map((r) => r.name).join(", ")}`, {
      hint: "ALTER TABLE t REPLICA IDENTITY DEFAULT (or FULL)",
    });
  }
  const refused = await rows<{ name: string; col: string; type: string }>(
    q,
    `SELECT c.relname AS name, a.attname AS col, format_type(a.atttypid, NULL) AS type
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     WHERE n.nspname = 'public' AND c.relkind = 'r' AND format_type(a.atttypid, NULL) = ANY ($1) ORDER BY 1, 2`,
    [Object.keys(REFUSED_TYPES)],
  );
  if (refused.length > 0) {
    const what = refused.map((r) => `${r.name}.${r.col} (${r.type}: ${REFUSED_TYPES[r.type]})`).join(", ");
    throw new RepositoryError("SQL_ERROR", `column types that cannot be replicated exactly: ${what}`, { hint: "change the columns' types" });
  }
}

/** A column's definition in CREATE TABLE. */
function columnSql(c: ColumnMeta): string {
  let s = `${quoteId(c.name)} ${c.type}`;
  if (c.collation) s += ` COLLATE ${c.collation}`;
  if (c.generated !== null) s += ` GENERATED ALWAYS AS (${c.generated}) STORED`;
  if (c.identity) s += ` GENERATED ${c.identity === "a" ? "ALWAYS" : "BY DEFAULT"} AS IDENTITY`;
  if (c.default !== null) s += ` DEFAULT ${c.default}`;
  if (c.notNull) s += " NOT NULL";
  return s;
}

const OWNED_SEQUENCES = `
SELECT s.relname AS seq, c.relname AS tbl, a.attname AS col, d.deptype
FROM pg_class s JOIN pg_namespace n ON n.oid = s.relnamespace
JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
JOIN pg_class c ON c.oid = d.refobjid
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
WHERE s.relkind = 'S' AND n.nspname = 'public' AND c.relname NOT LIKE 'ferry\\_%'`;

/** Sequences owned by a user table's column (serial and identity columns). */
export async function ownedSequences(q: Queryable): Promise<{ seq: string; tbl: string; col: string; identity: boolean }[]> {
  return (await rows<{ seq: string; tbl: string; col: string; deptype: string }>(q, OWNED_SEQUENCES)).map((r) => ({
    seq: r.seq,
    tbl: r.tbl,
    col: r.col,
    identity: r.deptype === "i",
  }));
}

/**
 * The user schema as objects a replica recreates in order: sequences (serial columns' defaults
 * name them), tables with their non-foreign-key constraints, indexes, foreign keys, and the
 * sequences' ownership. Identity columns bring their own sequences.
 */
export async function schemaObjects(q: Queryable): Promise<SchemaObject[]> {
  const out: SchemaObject[] = [];
  const owned = (await ownedSequences(q)).filter((s) => !s.identity);
  const ownedNames = new Set(owned.map((s) => s.seq));
  const seqs = await rows(
    q,
    `SELECT c.relname AS name, format_type(s.seqtypid, NULL) AS type, s.seqincrement AS inc, s.seqmin AS min, s.seqmax AS max,
       s.seqstart AS start, s.seqcache AS cache, s.seqcycle AS cycle
     FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relname NOT LIKE 'ferry\\_%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i')
     ORDER BY 1`,
  );
  for (const s of seqs) {
    out.push({
      type: "sequence",
      name: s.name!,
      tbl: ownedNames.has(s.name!) ? owned.find((o) => o.seq === s.name)!.tbl : s.name!,
      sql: `CREATE SEQUENCE ${quoteId(s.name!)} AS ${s.type} INCREMENT BY ${s.inc} MINVALUE ${s.min} MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache}${s.cycle === "t" ? " CYCLE" : " NO CYCLE"}`,
    });
  }
  for (const name of await userTables(q)) {
    const meta = (await tableMeta(q, name))!;
    const cons = await rows(
      q,
      `SELECT con.conname AS name, con.contype AS type, pg_get_constraintdef(con.oid) AS def
       FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relname = $1 ORDER BY con.contype = 'p' DESC, con.conname`,
      [name],
    );
    const defs = [...meta.columns.map(columnSql), ...cons.filter((c) => c.type !== "f").map((c) => `CONSTRAINT ${quoteId(c.name!)} ${c.def}`)];
    out.push({ type: "table", name, tbl: name, sql: `CREATE TABLE ${quoteId(name)} (${defs.join(", ")})` });
    for (const c of cons.filter((c) => c.type === "f")) {
      out.push({ type: "constraint", name: c.name!, tbl: name, sql: `ALTER TABLE ${quoteId(name)} ADD CONSTRAINT ${quoteId(c.name!)} ${c.def}` });
    }
    const idx = await rows(
      q,
      `SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS def
       FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND c.relname = $1
         AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = c.oid)
       ORDER BY 1`,
      [name],
    );
    for (const i of idx) out.push({ type: "index", name: i.name!, tbl: name, sql: i.def! });
    if (await fullIdentity(q, name)) out.push({ type: "replica identity", name, tbl: name, sql: `ALTER TABLE ${quoteId(name)} REPLICA IDENTITY FULL` });
  }
  for (const s of owned) {
    out.push({ type: "sequence owner", name: s.seq, tbl: s.tbl, sql: `ALTER SEQUENCE ${quoteId(s.seq)} OWNED BY ${quoteId(s.tbl)}.${quoteId(s.col)}` });
  }
  return out;
}

async function fullIdentity(q: Queryable, table: string): Promise<boolean> {
  const r = await one<{ f: string }>(
    q,
    `SELECT c.relreplident = 'f' AS f FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = $1 AND c.relkind = 'r'`,
    [table],
  );
  return r?.f === "t";
}

/** The order a replica creates schema objects in. */
export const OBJECT_ORDER = ["sequence", "table", "replica identity", "index", "constraint", "sequence owner"];

/** The newest DDL the event triggers recorded ("" before any; null without ferry_ddl: not initialised). */
export async function lastDdl(q: Queryable): Promise<string | null> {
  try {
    return (await one<{ id: string | null }>(q, `SELECT max(id)::text AS id FROM ferry_ddl`))?.id ?? "";
  } catch (err) {
    if ((err as { code?: string }).code === "42P01") return null;
    throw err;
  }
}

/** sha256 over tables, columns (name, type, NOT NULL) and primary keys, in name order. */
export async function fingerprint(q: Queryable): Promise<string> {
  const h = createHash("sha256");
  for (const name of await userTables(q)) {
    const meta = (await tableMeta(q, name))!;
    h.update(`table ${name}\n`);
    for (const c of meta.columns) h.update(`${c.name}|${c.type}|${c.notNull ? 1 : 0}|${c.key ? 1 : 0}\n`);
  }
  return h.digest("hex").slice(0, 16);
}

/**
 * Schema objects, then every user table's rows in key order: values as quoted literals, NULL bare.
 * A table without a primary key is ordered by all its columns, then by the dumped line (rows that
 * sort alike, -0 and 0, still print in one order).
 */
export async function dump(q: Queryable): Promise<string> {
  const out: string[] = [];
  for (const o of await schemaObjects(q)) out.push(`${o.type} ${o.name}: ${o.sql}`);
  for (const name of await userTables(q)) {
    const meta = (await tableMeta(q, name))!;
    const vals = meta.columns.map((c) => `quote_nullable(${quoteId(c.name)}::text)`).join(` || '|' || `);
    const order = [...meta.key.map((c) => orderExpr(c)), ...(meta.primaryKey ? [] : [`(${vals}) COLLATE "C"`])].join(", ");
    const res = await q.query({ text: `SELECT ${vals} FROM ${quoteId(name)} ORDER BY ${order}`, rowMode: "array" });
    for (const r of res.rows as string[][]) out.push(`${name}|${r[0]}`);
  }
  return out.join("\n") + "\n";
}

const TEXT_LIKE = new Set([25, 1043]);
const VALUE_ORDERED = new Set([17, 20, 21, 23, 26, 700, 701]);

/**
 * A key column as ORDER BY expression in ferry's key order (sync.ts compareKeys): NULL first
 * (a nullable column is only in the key of a table without a primary key), numbers and bytea by
 * value, everything a row image holds as a string by the bytes of that string (COLLATE "C").
 */
export function orderExpr(c: ColumnMeta): string {
  return `${orderValue(c)}${c.notNull ? "" : " NULLS FIRST"}`;
}

/** A key column's value as it compares in ferry's key order (without the NULLS placement). */
export function orderValue(c: ColumnMeta): string {
  const col = quoteId(c.name);
  if (VALUE_ORDERED.has(c.typeOid)) return col;
  if (TEXT_LIKE.has(c.typeOid)) return `${col} COLLATE "C"`;
  return `(${col}::text) COLLATE "C"`;
}

/** The right side of `(order exprs) > (...)`: the key image's values bound as $n. */
export function orderParam(c: ColumnMeta, n: number): string {
  if (VALUE_ORDERED.has(c.typeOid)) return `$${n}::${c.cast}`;
  return `($${n}::text) COLLATE "C"`;
}

export async function hasRows(q: Queryable, table: string): Promise<boolean> {
  return (await one<{ e: string }>(q, `SELECT EXISTS (SELECT 1 FROM ${quoteId(table)}) AS e`))?.e === "t";
}
