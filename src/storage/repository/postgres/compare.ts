/**
 * Compare reads on PostgreSQL: one REPEATABLE READ session (aligned with the capture position on a
 * master, as a snapshot is) in which every range is read through a cursor in ferry's key order
 * (snapshot.ts), each row as its row image, summed by checksum.ts.
 */
import type pg from "pg";
import { RepositoryError } from "../../../errors.js";
import { splitJsonArray } from "../../sync.js";
import { Chunker, RowSum } from "../checksum.js";
import type { CompareRead, KeyedRow, KeyRange, Position, TableColumns } from "../types.js";
import { orderExpr, tableMeta, type TableMeta } from "./schema.js";
import { RowCursor, afterKey, keyElements } from "./snapshot.js";
import { decodeElement } from "./values.js";

export async function openPgCompareRead(
  c: pg.Client,
  header: { seq: number; applied: Position },
  names: string[],
  close: () => Promise<void>,
): Promise<CompareRead> {
  const metas = new Map<string, TableMeta>();
  for (const n of names) {
    const m = await tableMeta(c, n);
    if (m) metas.set(n, m);
  }
  const meta = (name: string) => {
    const m = metas.get(name);
    if (!m) throw new RepositoryError("NOT_FOUND", `table ${name} does not exist here`, { hint: "the replica's schema differs from the master's: ferry resync --node ID" });
    return m;
  };
  /** Every row of a range as [key image, row image], in key order, until `fn` says false; true when all were read. */
  const each = async (m: TableMeta, range: KeyRange | null, fn: (key: string, row: string) => boolean | void): Promise<boolean> => {
    const where: string[] = [];
    const params: unknown[] = [];
    if (range?.after) {
      where.push(afterKey(m, params.length + 1));
      params.push(...splitJsonArray(range.after).map(decodeElement));
    }
    if (range?.upto) {
      where.push(`NOT ${afterKey(m, params.length + 1)}`);
      params.push(...splitJsonArray(range.upto).map(decodeElement));
    }
    const cursor = new RowCursor(c, m, "ferry_compare", where.length ? ` WHERE ${where.join(" AND ")}` : "", params, ` ORDER BY ${m.key.map(orderExpr).join(", ")}`);
    for (let row = await cursor.next(); row !== null; row = await cursor.next()) {
      if (fn(`[${keyElements(m, row).join(",")}]`, `[${row.join(",")}]`) === false) {
        await cursor.close();
        return false;
      }
    }
    return true;
  };

  return {
    header,
    tables: [...metas.values()].map((m): TableColumns => ({ name: m.name, db: "public", columns: m.image.map((x) => x.name), key: m.key.map((x) => x.name) })),
    async chunks(name, { chunkRows, after, upto, maxChunks }) {
      const chunker = new Chunker(chunkRows, after);
      const done = await each(meta(name), { after, upto }, (key, row) => chunker.add(key, row, maxChunks));
      return { chunks: done ? chunker.end(upto) : chunker.chunks, done };
    },
    async sums(name, ranges) {
      const m = meta(name);
      const out = [];
      for (const r of ranges) {
        const sum = new RowSum();
        await each(m, r, (_key, row) => sum.add(row));
        out.push({ ...r, rows: sum.rows, sum: sum.digest() });
      }
      return out;
    },
    async rows(name, range) {
      const out: KeyedRow[] = [];
      await each(meta(name), range, (key, row) => {
        out.push({ key, row });
      });
      return out;
    },
    close,
  };
}
