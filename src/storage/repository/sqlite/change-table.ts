/**
 * `ferry_changes`, the capture table: one row per captured change, `id` its change id.
 *
 * Invariants:
 * - ids only grow: a change's id is above every id captured before it, also across deletes. The
 *   table has no AUTOINCREMENT (which costs every captured row a write of `sqlite_sequence`;
 *   capture ran at 0.55× of a plain insert with it, 0.78× without), so SQLite takes
 *   max(id) + 1, and therefore the row with the highest id is never deleted.
 * - a row with op `N` is a placeholder that only holds the sequence (left where changes were
 *   discarded, or where an older table's AUTOINCREMENT counter stood); it is not a change: reads
 *   skip it and it counts for nothing.
 */
import { cached, type DB } from "./db.js";
import type { CapturedPart } from "../types.js";

export const PLACEHOLDER = "N";

export const CHANGE_TABLE = `CREATE TABLE IF NOT EXISTS ferry_changes(id INTEGER PRIMARY KEY, tbl TEXT, op TEXT NOT NULL, rid TEXT, row TEXT);`;

const SEQ_SQL = `SELECT coalesce(max(id), 0) AS seq FROM ferry_changes`;

/** The highest change id (0 when none was ever captured): where capture stands. */
export function seqOf(db: DB): number {
  return (cached(db, SEQ_SQL).get() as { seq: number }).seq;
}

/**
 * Past this many rows a truncate (below) holds the write lock and the event loop too long (it frees
 * about 20 million rows a second); a larger backlog goes a slice at a time.
 */
const TRUNCATE_MAX_ROWS = 1_000_000;

/**
 * Deletes sequenced changes up to `upto`, never the highest row; true when some up to `upto` are
 * left. When the rows after `upto` are few beside those before, the table is emptied and they are
 * put back: SQLite empties a table without a WHERE clause by freeing its pages (its truncate
 * optimisation), a tenth of the CPU of deleting row by row, which rewrites every page into the WAL
 * and cost the master as much as reading the changes. Otherwise one range of rowids from the start
 * of the table, at most `rows` ids.
 */
export function pruneChanges(db: DB, upto: number, rows: number): boolean {
  const { lo, hi } = db.prepare(`SELECT min(id) AS lo, max(id) AS hi FROM ferry_changes`).get() as { lo: number | null; hi: number | null };
  if (lo === null || hi === null) return false;
  const end = Math.min(upto, hi - 1);
  if (end < lo) return false;
  if (end - lo < TRUNCATE_MAX_ROWS && (hi - end) * 4 <= end - lo + 1) {
    db.transaction(() => {
      db.prepare(`CREATE TEMP TABLE IF NOT EXISTS ferry_changes_kept(id INTEGER PRIMARY KEY, tbl TEXT, op TEXT NOT NULL, rid TEXT, row TEXT)`).run();
      db.prepare(`INSERT INTO temp.ferry_changes_kept SELECT id, tbl, op, rid, row FROM main.ferry_changes WHERE id > ?`).run(end);
      db.prepare(`DELETE FROM main.ferry_changes`).run();
      db.prepare(`INSERT INTO main.ferry_changes(id, tbl, op, rid, row) SELECT id, tbl, op, rid, row FROM temp.ferry_changes_kept`).run();
      db.prepare(`DELETE FROM temp.ferry_changes_kept`).run();
    }).immediate();
    return false;
  }
  const cut = Math.min(end, lo + rows - 1);
  db.prepare(`DELETE FROM ferry_changes WHERE id <= ?`).run(cut);
  return cut < end;
}

/** Whether a comma-separated list of change ids (SQLite's group_concat of them) ascends. */
export function idsAscend(ids: string): boolean {
  let prev = -1;
  let n = 0;
  for (let i = 0; i <= ids.length; i++) {
    const c = i < ids.length ? ids.charCodeAt(i) : 0x2c;
    if (c !== 0x2c) {
      n = n * 10 + (c - 0x30);
      continue;
    }
    if (n <= prev) return false;
    prev = n;
    n = 0;
  }
  return true;
}

/**
 * One part of captured changes past the first parameter, up to the second, from at most the third
 * many rows: [rows read, last id read, first and last change's id, changes, DDL among them, the
 * part's bytes, the ids in the order the part holds them]. Placeholders are read (they move the
 * position) but are not changes.
 *
 * The aggregate joins the rows in the order the ordered subquery hands them over. SQLite does not
 * promise that order, so the ids come along, joined in the same pass, and a part whose ids do not
 * ascend is read again with ORDER BY in the aggregate, which always sorts (a temporary B-tree of
 * every row image: a third of the read's CPU, measured 0.69–0.78 against 0.45–0.51 µs per row).
 */
const partSql = (ordered: boolean) => `SELECT count(*), max(id), min(CASE WHEN op <> '${PLACEHOLDER}' THEN id END), max(CASE WHEN op <> '${PLACEHOLDER}' THEN id END), coalesce(sum(op <> '${PLACEHOLDER}'), 0), max(op = 'X'),
  CAST('[' || group_concat(CASE WHEN op <> '${PLACEHOLDER}' THEN json_array(tbl, op, rid, row) END, ','${ordered ? " ORDER BY id" : ""}) || ']' AS BLOB),
  ${ordered ? "NULL" : "group_concat(id)"}
  FROM (SELECT * FROM ferry_changes WHERE id > ? AND id <= ? ORDER BY id LIMIT ?)`;
const PART_SQL = partSql(false);
const ORDERED_PART_SQL = partSql(true);
type PartRow = [rows: number, read: number, first: number | null, last: number | null, count: number, ddl: number | null, data: Buffer | null, ids: string | null];

const FIRST_PART_ROWS = 64;
const MAX_PART_ROWS = 100_000;

/** Reads captured changes in parts of about `partBytes`, each read sized by the last part's rows. */
export class PartReader {
  private rows = FIRST_PART_ROWS;

  /** Parts past `from` up to `upto`, in one read transaction of `db` (whole transactions only); `reached` hears each id read up to. */
  *read(db: DB, from: number, upto: number, partBytes: number, reached: (id: number) => void): Generator<CapturedPart> {
    db.exec("BEGIN");
    try {
      const read = cached(db, PART_SQL).raw();
      let at = from;
      let limit = this.rows;
      for (;;) {
        let row = read.get(at, upto, limit) as PartRow;
        if (row[7] !== null && !idsAscend(row[7])) row = cached(db, ORDERED_PART_SQL).raw().get(at, upto, limit) as PartRow;
        const [rows, upTo, first, last, count, ddl, data] = row;
        if (rows === 0) return;
        // A part past partBytes is read again shorter.
        if (data !== null && data.length > partBytes && count > 1) {
          limit = Math.max(1, Math.floor((rows * partBytes * 0.9) / data.length));
          continue;
        }
        at = upTo;
        reached(at);
        if (data === null) continue; // placeholders only
        limit = this.rows = Math.max(1, Math.min(MAX_PART_ROWS, Math.floor((rows * partBytes * 0.9) / data.length)));
        yield { first: first!, last: last!, count, ddl: ddl === 1, data };
      }
    } finally {
      if (db.inTransaction) db.exec("COMMIT");
    }
  }
}

/** Changes past the parameter that are ferry's to replicate (heartbeat rows and placeholders are not). */
export const PENDING_SQL = `SELECT count(*) AS n FROM ferry_changes WHERE id > ? AND op <> '${PLACEHOLDER}' AND (tbl IS NULL OR tbl <> 'ferry_heartbeat')`;

/**
 * Discards every captured change (a snapshot replaces the data they describe) and keeps the
 * sequence: the highest row stays, as a placeholder.
 */
export function discardChanges(db: DB): void {
  db.exec(`DELETE FROM ferry_changes WHERE id < (SELECT max(id) FROM ferry_changes);
    UPDATE ferry_changes SET tbl = NULL, op = '${PLACEHOLDER}', rid = NULL, row = NULL`);
}

/**
 * A table created with AUTOINCREMENT (by ferry before this file) is rebuilt without it, in one
 * write transaction, its rows kept and its counter kept as a placeholder where it is above every
 * row. `triggers` drops and restores the capture triggers that write the table (a rename under a
 * trigger's reference is not safe). Reads only, when there is nothing to migrate.
 */
export function migrateChangeTable(db: DB, triggers: { drop(): void; restore(): void }): boolean {
  const row = db.prepare(`SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ferry_changes'`).get() as { sql: string } | undefined;
  if (!row || !/AUTOINCREMENT/i.test(row.sql)) return false;
  db.transaction(() => {
    triggers.drop();
    db.exec(`CREATE TABLE ferry_changes_v2(id INTEGER PRIMARY KEY, tbl TEXT, op TEXT NOT NULL, rid TEXT, row TEXT);
      INSERT INTO ferry_changes_v2 SELECT id, tbl, op, rid, row FROM ferry_changes;
      INSERT INTO ferry_changes_v2(id, op) SELECT seq, '${PLACEHOLDER}' FROM sqlite_sequence
        WHERE name = 'ferry_changes' AND seq > (SELECT coalesce(max(id), 0) FROM ferry_changes);
      DROP TABLE ferry_changes;
      ALTER TABLE ferry_changes_v2 RENAME TO ferry_changes;
      DELETE FROM sqlite_sequence WHERE name = 'ferry_changes';`);
    triggers.restore();
  }).immediate();
  return true;
}
