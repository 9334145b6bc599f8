/**
 * Applying row images to tables: upserts and deletes, many rows per statement, as named prepared
 * statements (one per table, column set and kind; a delete's also per row count, a power of two,
 * so a table has few distinct statements), cached by the server per connection.
 *
 * Upserts and inserts bind one parameter: the rows' images as one JSON array, their text as
 * captured (UTF-8 bytes, json's binary form), which the statement takes apart with
 * json_array_elements. Binding each value as its
 * own parameter cost the replica's process twice the CPU of the insert itself (pg's bind and
 * writeValues were 38% of it). Each value is read as text (`->>`), cast to the column's type
 * without its modifier, and assigned to the column, whose modifier then applies as an
 * assignment: a varchar(n) or bit(n) value that does not fit fails instead of being cut, as an
 * explicit cast would. The type is the catalogue's name (`pg_catalog.bpchar`), never
 * format_type's `character`, which means char(1). `json`, not `jsonb`, keeps every number token's
 * text (-0.0, digits past 2^53). An UPDATE image may mark a TOASTed column unchanged: the upsert
 * leaves such a column out, so the row keeps its value.
 *
 * Deletes bind the key's values one parameter each, as text of an unknown type, which the server
 * parses with the column's own input function.
 *
 * A table without a primary key takes plain INSERTs (no key to conflict on), and its key images
 * are whole old rows (REPLICA IDENTITY FULL on the master): a delete, or the old side of an
 * update, removes exactly one row equal to it in every column (there may be equal rows).
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { RepositoryError } from "../../../errors.js";
import { splitJsonArray } from "../../sync.js";
import { jsonArrayBytes } from "../json-array.js";
import { quoteId } from "./connection.js";
import { tableMeta, type ColumnMeta, type TableMeta } from "./schema.js";
import { decodeElement, imageValueSql, UNCHANGED, UNCHANGED_TOKEN } from "./values.js";
import type { Change } from "../types.js";

/** Rows of one delete statement. */
const MAX_ROWS = 256;
/** Rows of one upsert or insert, unless MAX_IMAGE_BYTES comes first. */
const MAX_UPSERT_ROWS = 2048;
/** An upsert's JSON parameter stays near this size (the server holds it, parsed, while it runs). */
const MAX_IMAGE_BYTES = 1 << 20;
const MAX_PARAMS = 65_535;
/** Types whose values are equal exactly when their text is (a row match may compare them directly, and use an index). */
const EXACT_EQUALITY = new Set([16, 17, 20, 21, 23, 26, 1082, 2950]);

/** upsert: INSERT ... ON CONFLICT (key); insert: plain INSERT (no primary key); delete: by key; deleteOne: one row equal to a whole old row. */
type Kind = "upsert" | "insert" | "delete" | "deleteOne";

interface Group {
  kind: Kind;
  meta: TableMeta;
  /** Which image columns the rows carry ('1') or leave unchanged ('0'). */
  mask: string;
  /** upsert, insert: the rows' images as captured. */
  images: string[];
  bytes: number;
  /** delete, deleteOne: the key images' values. */
  rows: (string | null)[][];
  keys: Set<string>;
}

export class Applier {
  private metas = new Map<string, TableMeta>();
  private texts = new Map<string, pg.QueryConfig>();
  /** Rows this object wrote to user tables (outside writers are what the statistics show beyond them). */
  userRows = 0;

  /** The schema may have changed (DDL applied, a failed transaction, a restore). */
  forget(): void {
    this.metas.clear();
    this.texts.clear();
  }

  async meta(client: pg.ClientBase, table: string): Promise<TableMeta> {
    let m = this.metas.get(table);
    if (!m) {
      const found = await tableMeta(client, table);
      if (!found) throw new RepositoryError("SCHEMA_MISMATCH", `table ${table} does not exist in this repository`, { hint: "resync this replica" });
      this.metas.set(table, (m = found));
    }
    return m;
  }

  /** Applies changes in order; returns whether DDL ran. */
  async apply(client: pg.ClientBase, changes: Iterable<Change>): Promise<boolean> {
    let ddl = false;
    let group: Group | null = null;
    const flush = async () => {
      if (group) await this.run(client, group);
      group = null;
    };
    const open = async (kind: Kind, meta: TableMeta, mask: string, key: string | null, bytes: number) => {
      const g = group as Group | null;
      const full = g !== null && (g.kind === "upsert" || g.kind === "insert" ? g.images.length >= MAX_UPSERT_ROWS || g.bytes + bytes > MAX_IMAGE_BYTES : g.rows.length >= MAX_ROWS);
      // An upsert's rows must not meet the same key twice in one statement; plain inserts and deletes may.
      if (!g || g.kind !== kind || g.meta !== meta || g.mask !== mask || (key !== null && g.keys.has(key)) || full) {
        await flush();
        group = { kind, meta, mask, images: [], bytes: 0, rows: [], keys: new Set() };
      }
      if (key !== null) group!.keys.add(key);
      return group!;
    };
    const addRow = async (meta: TableMeta, text: string, values: string[]) => {
      const kind = meta.primaryKey ? "upsert" : "insert";
      const mask = text.includes(UNCHANGED_TOKEN) ? values.map((v) => (v === UNCHANGED_TOKEN ? "0" : "1")).join("") : "1".repeat(values.length);
      const g = await open(kind, meta, mask, kind === "upsert" ? keyText(meta, values) : null, text.length);
      g.images.push(text);
      g.bytes += text.length;
    };
    const addDelete = async (kind: Kind, meta: TableMeta, key: string[]) => {
      const g = await open(kind, meta, "", null, 0);
      g.rows.push(key.map(keyValue));
    };
    for (const [tbl, op, rid, row] of changes) {
      if (op === "X") {
        await flush();
        await client.query(row!);
        this.forget();
        ddl = true;
        continue;
      }
      const meta = await this.meta(client, tbl!);
      const values = op === "D" ? null : elements(meta, "row", row!, meta.image.length);
      if (op === "D" || rid !== null) {
        const old = elements(meta, "key", rid!, meta.key.length, meta.image.length);
        if (!meta.primaryKey) await addDelete("deleteOne", meta, old);
        else {
          // A whole old row (REPLICA IDENTITY FULL) of a table with a primary key: its key's values.
          const key = old.length === meta.key.length ? old : keyValues(meta, old);
          if (op === "D" || key.join(",") !== keyText(meta, values!)) await addDelete("delete", meta, key);
        }
      }
      if (values) await addRow(meta, row!, values);
    }
    await flush();
    return ddl;
  }

  private async run(client: pg.ClientBase, g: Group): Promise<void> {
    const count = (res: pg.QueryResult) => {
      if (!g.meta.name.startsWith("ferry_")) this.userRows += res.rowCount ?? 0;
    };
    // A Buffer goes as the parameter's binary form, which for json is its text.
    if (g.kind === "upsert" || g.kind === "insert") return count(await client.query({ ...this.statement(g, 0), values: [jsonArrayBytes(g.images)] }));
    const width = g.rows[0].length;
    const most = g.kind === "deleteOne" ? 1 : Math.min(MAX_ROWS, 2 ** Math.floor(Math.log2(Math.max(1, Math.floor(MAX_PARAMS / Math.max(1, width))))));
    let i = 0;
    while (i < g.rows.length) {
      let n = most;
      while (n > g.rows.length - i) n >>= 1;
      const values: (string | null)[] = [];
      for (const r of g.rows.slice(i, i + n)) values.push(...r);
      count(await client.query({ ...this.statement(g, n), values }));
      i += n;
    }
  }

  private statement(g: Group, n: number): pg.QueryConfig {
    const id = `${g.kind}|${g.meta.name}|${g.mask}|${n}`;
    let q = this.texts.get(id);
    if (q) return q;
    const t = quoteId(g.meta.name);
    let text: string;
    if (g.kind === "upsert" || g.kind === "insert") {
      const cols = g.meta.image.map((c, i) => ({ c, i })).filter(({ i }) => g.mask[i] === "1");
      const names = cols.map(({ c }) => quoteId(c.name));
      const values = cols.map(({ c, i }) => imageValueSql(c.typeOid, c.cast, "r.v", i));
      text = `INSERT INTO ${t} (${names.join(",")}) OVERRIDING SYSTEM VALUE SELECT ${values.join(",")} FROM pg_catalog.json_array_elements($1::pg_catalog.json) AS r(v)`;
      if (g.kind === "upsert") {
        const set = cols.filter(({ c }) => !c.key).map(({ c }) => `${quoteId(c.name)} = EXCLUDED.${quoteId(c.name)}`);
        const conflict = g.meta.key.map((c) => quoteId(c.name)).join(",");
        text += ` ON CONFLICT (${conflict}) ${set.length ? `DO UPDATE SET ${set.join(", ")}` : "DO NOTHING"}`;
      }
    } else if (g.kind === "deleteOne") {
      text = `DELETE FROM ${t} WHERE ctid = (SELECT ctid FROM ${t} WHERE ${g.meta.key.map((c, i) => sameValue(c, i + 1)).join(" AND ")} LIMIT 1)`;
    } else {
      const tuples: string[] = [];
      let p = 0;
      for (let r = 0; r < n; r++) tuples.push(`(${g.meta.key.map(() => `$${++p}`).join(",")})`);
      text = `DELETE FROM ${t} WHERE (${g.meta.key.map((c) => quoteId(c.name)).join(",")}) IN (${tuples.join(",")})`;
    }
    q = { name: `ferry_${createHash("sha1").update(text).digest("hex").slice(0, 24)}`, text };
    this.texts.set(id, q);
    return q;
  }
}

/** A row or key image's elements (raw JSON text each), checked against the widths the table allows. */
function elements(meta: TableMeta, what: "row" | "key", text: string, ...widths: number[]): string[] {
  const values = splitJsonArray(text);
  if (!widths.includes(values.length)) {
    throw new RepositoryError("SCHEMA_MISMATCH", `a ${what} image of ${meta.name} has ${values.length} values, the table ${widths[0]}`, {
      hint: "the replica's schema differs from the master's: resync it",
    });
  }
  return values;
}

/** A key image's element as a text parameter (a key image never leaves a value out). */
function keyValue(raw: string): string | null {
  const v = decodeElement(raw);
  if (v === UNCHANGED) throw new RepositoryError("SQL_ERROR", `malformed key image value: ${raw}`);
  return v;
}

const keyIndexes = new WeakMap<TableMeta, number[]>();

/** The primary key's elements of a whole row's. */
function keyValues(meta: TableMeta, row: string[]): string[] {
  let at = keyIndexes.get(meta);
  if (!at) keyIndexes.set(meta, (at = meta.image.flatMap((c, i) => (c.key ? [i] : []))));
  return at.map((i) => row[i]);
}

/** A row's key as one string: images are canonical, so equal keys have equal text. */
function keyText(meta: TableMeta, row: string[]): string {
  return keyValues(meta, row).join(",");
}

/**
 * Column `c` equal to parameter $n, NULL equal to NULL. Values of most types compare by their text
 * as this server prints the parameter parsed as the column's type: exact where `=` is not (numeric
 * 1.0 and 1.00, -0 and 0) or missing (json, point).
 */
function sameValue(c: ColumnMeta, n: number): string {
  const col = quoteId(c.name);
  if (EXACT_EQUALITY.has(c.typeOid)) return `${col} IS NOT DISTINCT FROM $${n}`;
  return `(${col}::text COLLATE "C") IS NOT DISTINCT FROM ($${n}::${c.type})::text`;
}
