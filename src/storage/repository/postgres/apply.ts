/**
 * Applying row images to tables: upserts and deletes, many rows per statement, as named prepared
 * statements (one per table, column set, row count and kind, cached by the server per
 * connection). Row counts are powers of two, so a table has few distinct statements.
 *
 * Every value is bound as text of an unknown type, so the server parses it with the column's own
 * input function and type modifier (a value that does not fit fails instead of being cut, as an
 * explicit cast would). An UPDATE image may mark
 * a TOASTed column unchanged: the upsert leaves such a column out, so the row keeps its value.
 *
 * A table without a primary key takes plain INSERTs (no key to conflict on), and its key images
 * are whole old rows (REPLICA IDENTITY FULL on the master): a delete, or the old side of an
 * update, removes exactly one row equal to it in every column (there may be equal rows).
 */
import { createHash } from "node:crypto";
import type pg from "pg";
import { RepositoryError } from "../../../errors.js";
import { quoteId } from "./connection.js";
import { tableMeta, type ColumnMeta, type TableMeta } from "./schema.js";
import { decodeImage, UNCHANGED, type Param } from "./values.js";
import type { Change } from "../types.js";

const MAX_ROWS = 256;
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
    const add = async (kind: Kind, meta: TableMeta, params: Param[]) => {
      const mask = params.map((p) => (p === UNCHANGED ? "0" : "1")).join("");
      // An upsert's rows must not meet the same key twice in one statement; plain inserts and deletes may.
      const keyOf = kind === "upsert" ? JSON.stringify(meta.image.map((c, i) => (c.key ? params[i] : 0))) : null;
      const g = group as Group | null;
      if (!g || g.kind !== kind || g.meta !== meta || g.mask !== mask || (keyOf !== null && g.keys.has(keyOf)) || g.rows.length >= MAX_ROWS) {
        await flush();
        group = { kind, meta, mask, rows: [], keys: new Set() };
      }
      group!.rows.push(params.filter((p): p is string | null => p !== UNCHANGED));
      if (keyOf !== null) group!.keys.add(keyOf);
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
      const values = op === "D" ? null : image(meta, "row", row!, meta.image.length);
      if (op === "D" || rid !== null) {
        const old = image(meta, "key", rid!, meta.key.length, meta.image.length);
        if (!meta.primaryKey) await add("deleteOne", meta, old);
        else {
          // A whole old row (REPLICA IDENTITY FULL) of a table with a primary key: its key's values.
          const key = old.length === meta.key.length ? old : keyValues(meta, old);
          if (op === "D" || JSON.stringify(key) !== JSON.stringify(keyValues(meta, values!))) await add("delete", meta, key);
        }
      }
      if (values) await add(meta.primaryKey ? "upsert" : "insert", meta, values);
    }
    await flush();
    return ddl;
  }

  private async run(client: pg.ClientBase, g: Group): Promise<void> {
    const width = g.rows[0].length;
    const most =
      g.kind === "deleteOne" ? 1 : Math.min(MAX_ROWS, 2 ** Math.floor(Math.log2(Math.max(1, Math.floor(MAX_PARAMS / Math.max(1, width))))));
    let i = 0;
    while (i < g.rows.length) {
      let n = most;
      while (n > g.rows.length - i) n >>= 1;
      const q = this.statement(g, n);
      const values: Param[] = [];
      for (const r of g.rows.slice(i, i + n)) values.push(...r);
      const res = await client.query({ ...q, values });
      if (!g.meta.name.startsWith("ferry_")) this.userRows += res.rowCount ?? 0;
      i += n;
    }
  }

  private statement(g: Group, n: number): pg.QueryConfig {
    const id = `${g.kind}|${g.meta.name}|${g.mask}|${n}`;
    let q = this.texts.get(id);
    if (q) return q;
    const t = quoteId(g.meta.name);
    const cols = g.kind === "upsert" || g.kind === "insert" ? g.meta.image.filter((_, i) => g.mask[i] === "1") : g.meta.key;
    const tuples: string[] = [];
    let p = 0;
    for (let r = 0; r < n; r++) tuples.push(`(${cols.map(() => `$${++p}`).join(",")})`);
    let text: string;
    if (g.kind === "deleteOne") {
      text = `DELETE FROM ${t} WHERE ctid = (SELECT ctid FROM ${t} WHERE ${cols.map((c, i) => sameValue(c, i + 1)).join(" AND ")} LIMIT 1)`;
    } else if (g.kind === "delete") {
      const key = cols.map((c) => quoteId(c.name)).join(",");
      text = `DELETE FROM ${t} WHERE (${key}) IN (${tuples.join(",")})`;
    } else {
      text = `INSERT INTO ${t} (${cols.map((c) => quoteId(c.name)).join(",")}) OVERRIDING SYSTEM VALUE VALUES ${tuples.join(",")}`;
      if (g.kind === "upsert") {
        const set = cols.filter((c) => !c.key).map((c) => `${quoteId(c.name)} = EXCLUDED.${quoteId(c.name)}`);
        const conflict = g.meta.key.map((c) => quoteId(c.name)).join(",");
        text += ` ON CONFLICT (${conflict}) ${set.length ? `DO UPDATE SET ${set.join(", ")}` : "DO NOTHING"}`;
      }
    }
    q = { name: `ferry_${createHash("sha1").update(text).digest("hex").slice(0, 24)}`, text };
    this.texts.set(id, q);
    return q;
  }
}

/** A row or key image's values, checked against the widths the table allows. */
function image(meta: TableMeta, what: "row" | "key", text: string, ...widths: number[]): Param[] {
  const params = decodeImage(text);
  if (!widths.includes(params.length)) {
    throw new RepositoryError("SCHEMA_MISMATCH", `a ${what} image of ${meta.name} has ${params.length} values, the table ${widths[0]}`, {
      hint: "the replica's schema differs from the master's: resync it",
    });
  }
  return params;
}

/** The primary key's values of a whole row's. */
function keyValues(meta: TableMeta, row: Param[]): Param[] {
  return meta.image.flatMap((c, i) => (c.key ? [row[i]] : []));
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
