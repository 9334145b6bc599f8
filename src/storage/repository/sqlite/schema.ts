/**
 * The schema as ferry reads it: which tables replicate, a table's row image (its columns, key and
 * value kinds), the user objects a snapshot carries, their fingerprint, and a deterministic dump.
 */
import { createHash } from "node:crypto";
import Database from "better-sqlite3";
import { quoteId } from "./sql-text.js";
import type { DB } from "./db.js";
import type { SchemaObject, ValueKind } from "../types.js";

/**
 * Replicated: user tables, ferry_heartbeat (HVR's heartbeat table) and ferry_requests (the keys of
 * writes, so a master promoted after a failover recognises a client's retry of a write it holds).
 */
export const REPLICATED = `type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
  AND (name NOT LIKE 'ferry\\_%' ESCAPE '\\' OR name IN ('ferry_heartbeat', 'ferry_requests'))`;
export const USER_OBJECTS = `name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE 'ferry\\_%' ESCAPE '\\'
  AND tbl_name NOT LIKE 'ferry\\_%' ESCAPE '\\' AND sql IS NOT NULL`;

export interface TableInfo {
  name: string;
  /** Columns in a row image: the implicit rowid first (when the table has one that is not aliased), then the columns. */
  image: string[];
  /** Identity columns (for U with a changed key, and D). */
  key: string[];
  /** The image's columns' values by their declared types (SQLite's affinity rules). */
  kinds: ValueKind[];
  /** The key is the rowid (or its alias): always one integer. */
  rowid: boolean;
}

/** SQLite's affinity rules (section 3.1 of its datatype page); NUMERIC and untyped columns hold any type. */
function affinityKind(declared: string): ValueKind {
  const t = declared.toUpperCase();
  if (t.includes("INT")) return "integer";
  if (/CHAR|CLOB|TEXT/.test(t)) return "text";
  if (t.includes("BLOB")) return "blob";
  if (/REAL|FLOA|DOUB/.test(t)) return "real";
  return "any";
}

/** A table as row images carry it, from its declaration. */
export function readTableInfo(db: DB, name: string): TableInfo {
  const cols = db.prepare(`SELECT name, type, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid`).all(name) as {
    name: string;
    type: string;
    pk: number;
    hidden: number;
  }[];
  const withoutRowid = isWithoutRowid(db, name);
  const stored = cols.filter((c) => c.hidden === 0).map((c) => c.name);
  const pks = cols.filter((c) => c.pk > 0).sort((a, b) => a.pk - b.pk);
  const alias = !withoutRowid && pks.length === 1 && pks[0].type.toUpperCase() === "INTEGER";
  const kinds = cols.filter((c) => c.hidden === 0).map((c) => affinityKind(c.type));
  if (withoutRowid) return { name, image: stored, key: pks.map((c) => c.name), kinds, rowid: false };
  if (alias) return { name, image: stored, key: [pks[0].name], kinds, rowid: true };
  return { name, image: ["rowid", ...stored], key: ["rowid"], kinds: ["integer", ...kinds], rowid: true };
}

/** A table of the user's (not SQLite's nor ferry's own). */
export function isUserTable(db: DB, name: string): boolean {
  return db.prepare(`SELECT 1 FROM sqlite_master WHERE type='table' AND ${USER_OBJECTS} AND name=?`).get(name) !== undefined;
}

export function replicatedTables(db: DB): string[] {
  return (db.prepare(`SELECT name FROM sqlite_master WHERE ${REPLICATED} ORDER BY name`).all() as { name: string }[]).map(
    (r) => r.name,
  );
}

/** From SQLite itself: the table's text may list options in any order (`STRICT, WITHOUT ROWID`). */
function isWithoutRowid(db: DB, table: string): boolean {
  const r = db.prepare(`SELECT wr FROM pragma_table_list(?) WHERE schema = 'main'`).get(table) as { wr: number } | undefined;
  return r?.wr === 1;
}

/** User objects (tables first); with the heartbeat table when it is to be shipped in a snapshot. */
export function schemaOf(db: DB, withHeartbeat = false): SchemaObject[] {
  const hb = withHeartbeat ? ` OR (type='table' AND name='ferry_heartbeat')` : "";
  return db
    .prepare(`SELECT type, name, tbl_name AS tbl, sql FROM sqlite_master WHERE (${USER_OBJECTS})${hb} ORDER BY type DESC, name`)
    .all() as SchemaObject[];
}

const normalise = (sql: string) => sql.replace(/\s+/g, " ").trim();

/** The user schema's fingerprint: the seed's "same hash algorithm" check between master and slaves. */
export function fingerprintOf(db: DB): string {
  const h = createHash("sha256");
  for (const o of schemaOf(db)) h.update(`${o.type}|${o.name}|${normalise(o.sql)}\n`);
  return h.digest("hex").slice(0, 16);
}

/** A deterministic dump of the user tables (schema, then rows in key order with quote()). */
export function dumpDb(db: DB): string {
  const out: string[] = [];
  const objs = schemaOf(db);
  for (const o of objs) out.push(`${o.type} ${o.name}: ${normalise(o.sql)}`);
  for (const o of objs.filter((x) => x.type === "table")) {
    const cols = (db.prepare(`SELECT name FROM pragma_table_info(?)`).all(o.name) as { name: string }[]).map((c) => quoteId(c.name));
    const withoutRowid = isWithoutRowid(db, o.name);
    const order = withoutRowid ? cols.join(",") : "rowid";
    const rows = db.prepare(`SELECT ${cols.map((c) => `quote(${c})`).join(",")} FROM ${quoteId(o.name)} ORDER BY ${order}`).raw().all();
    for (const r of rows) out.push(`${o.name}|${(r as string[]).join("|")}`);
  }
  return out.join("\n") + "\n";
}

/** Dumps a repository file through a read-only connection (for tests and checks beside a running node). */
export function dumpFile(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true, timeout: 5000 });
  try {
    return dumpDb(db);
  } finally {
    db.close();
  }
}
