/**
 * From pgoutput's messages to ferry's changes: whole transactions at their commit end LSN (one
 * transaction's changes share a position, so positions follow commit order), each change the JSON
 * of [table, op, key image, row image]. The same decoding serves the slot read as a stream and
 * the slot peeked with SQL; it holds a transaction in memory from its first change to its commit,
 * since its position is known only then.
 *
 * DDL arrives as rows of ferry_ddl that the event triggers wrote (capture.ts) and becomes an X
 * change at its place in commit order; what of its query string is replayed is replayable()'s.
 */
import { RepositoryError } from "../../../errors.js";
import { quoteId } from "./connection.js";
import { decodeMessage, type Relation, type TupleValue } from "./pgoutput.js";
import { splitSql, statementStart } from "./sql-split.js";
import { TRANSACTION_VERBS } from "../script.js";
import { encodeValue, UNCHANGED, UNCHANGED_TOKEN } from "./values.js";
import type { ChangeOp } from "../types.js";

const NOT_CAPTURED = new Set(["ferry_state", "ferry_ddl"]);

/** Statements of a recorded query string that are not replayed: their effects arrive as changes, or are the session's own. */
const NOT_REPLAYED = new Set([
  ...TRANSACTION_VERBS,
  ...["INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY", "VALUES", "TABLE", "WITH", "SET", "RESET", "DISCARD", "LOAD"],
  ...["LISTEN", "UNLISTEN", "NOTIFY", "LOCK", "VACUUM", "ANALYZE", "CLUSTER", "REINDEX", "CHECKPOINT", "SHOW", "EXPLAIN"],
  ...["DECLARE", "FETCH", "MOVE", "CLOSE", "EXECUTE", "DEALLOCATE", "GRANT", "REVOKE"],
]);
/** Objects of the server (not of the database) and capture's own machinery. */
const NOT_REPLAYED_DDL = /^(CREATE|ALTER|DROP)\s+(ROLE|USER|GROUP|DATABASE|TABLESPACE|PUBLICATION|SUBSCRIPTION|EVENT\s+TRIGGER)\b|^ALTER\s+(SYSTEM|DEFAULT\s+PRIVILEGES)\b/i;
/** CONCURRENTLY cannot run in a transaction block, which applying is; the plain form does the same. */
const CONCURRENTLY = /^(CREATE\s+(?:UNIQUE\s+)?INDEX|DROP\s+INDEX)\s+CONCURRENTLY\b/i;

/** What a replica runs of a query string ferry_ddl recorded; null when nothing is left. */
export function replayable(query: string): string | null {
  const kept: string[] = [];
  for (const s of splitSql(query)) {
    const start = statementStart(s.sql);
    if (NOT_REPLAYED.has(s.verb) || NOT_REPLAYED_DDL.test(start)) continue;
    kept.push(CONCURRENTLY.test(start) ? start.replace(CONCURRENTLY, "$1") : s.sql);
  }
  return kept.length === 0 ? null : kept.join(";\n");
}

export interface Txn {
  /** The commit's end LSN: the position of every change in it. */
  end: number;
  /** [op, tbl, JSON of the Change]. */
  changes: [ChangeOp, string | null, string][];
  /** The bytes of its JSON, for bounding what waits in memory. */
  bytes: number;
  /** The transaction's id (xid8, as text) when it recorded DDL in ferry_ddl: capture waits until it is visible. */
  ddlXid: string | null;
}

/** pgoutput messages in, whole transactions out; relation descriptions are kept across transactions. */
export class TxnDecoder {
  private readonly relations = new Map<number, Relation>();
  private txn: Txn | null = null;

  /** The transaction this message completes, if it is a commit. */
  push(message: Buffer): Txn | null {
    const m = decodeMessage(message);
    switch (m.tag) {
      case "B":
        this.txn = { end: 0, changes: [], bytes: 0, ddlXid: null };
        return null;
      case "C": {
        const done = this.txn;
        this.txn = null;
        if (done) done.end = m.endLsn;
        return done;
      }
      case "R":
        this.relations.set(m.relation.id, m.relation);
        return null;
      case "I":
      case "U":
      case "D":
      case "T": {
        const txn = this.txn;
        if (!txn) return null;
        for (const c of changesOf(m, this.relations, txn)) {
          const at = c[3] === undefined ? -1 : firstSince(txn.changes, c[3]);
          if (at < 0) txn.changes.push([c[0], c[1], c[2]]);
          else txn.changes.splice(at, 0, [c[0], c[1], c[2]]);
          txn.bytes += c[2].length;
        }
        return null;
      }
      default:
        return null;
    }
  }
}

type DataMessage = Extract<ReturnType<typeof decodeMessage>, { tag: "I" | "U" | "D" | "T" }>;

/** [op, tbl, JSON of the Change, the table whose first change of the transaction it must precede]. */
type Decoded = [ChangeOp, string | null, string, before?: string];

const change = (tbl: string | null, op: ChangeOp, rid: string | null, row: string | null): Decoded => [op, tbl, JSON.stringify([tbl, op, rid, row])];

function changesOf(m: DataMessage, relations: Map<number, Relation>, txn: Txn): Decoded[] {
  if (m.tag === "T") {
    const names = m.relids
      .map((id) => relation(relations, id))
      .filter((r) => r.schema === "public" && !NOT_CAPTURED.has(r.name))
      .map((r) => quoteId(r.name));
    return names.length === 0 ? [] : [change(null, "X", null, `TRUNCATE TABLE ${names.join(", ")}${m.restartIdentity ? " RESTART IDENTITY" : ""}`)];
  }
  const rel = relation(relations, m.relid);
  if (rel.schema !== "public") return [];
  if (rel.name === "ferry_ddl") {
    // The DDL triggers record each query string here, in its transaction, where it ran (the module
    // comment), with the xid that capture waits to see visible before the batch's fingerprint read.
    if (m.tag !== "I") return [];
    const [sql, tbl, xid] = ["sql", "tbl", "xid"].map((name) => m.row[rel.columns.findIndex((c) => c.name === name)]);
    if (typeof xid === "string") txn.ddlXid ??= xid;
    const text = typeof sql === "string" ? replayable(sql) : null;
    if (text === null) return [];
    const x = change(null, "X", null, text);
    return [typeof tbl === "string" ? [x[0], x[1], x[2], tbl] : x];
  }
  if (NOT_CAPTURED.has(rel.name)) return [];
  if (m.tag === "I") return [change(rel.name, "I", null, image(rel, m.row))];
  // REPLICA IDENTITY FULL ('O'): the key image is the whole old row (apply takes the primary key's
  // values from it, or without one deletes one row equal to it), and an update's unchanged TOASTed
  // values are taken from it (its values are all there).
  if (m.tag === "D") return [change(rel.name, "D", m.oldKind === "O" ? image(rel, m.old) : keyImage(rel, m.old), null)];
  if (m.old && m.oldKind === "O") {
    const old = m.old;
    return [change(rel.name, "U", image(rel, old), image(rel, m.row.map((v, i) => (v === UNCHANGED ? old[i] : v))))];
  }
  const row = image(rel, m.row);
  const oldKey = m.old ? keyImage(rel, m.old) : null;
  return [change(rel.name, "U", oldKey !== null && oldKey !== keyImage(rel, m.row) ? oldKey : null, row)];
}

/**
 * Where a CREATE TABLE AS of `tbl` goes: before the rows it inserted, which its DDL trigger fired
 * after (the first change of `tbl` since the transaction's last DDL); -1 when there are none.
 */
function firstSince(changes: Txn["changes"], tbl: string): number {
  let at = -1;
  for (let i = changes.length - 1; i >= 0 && changes[i][0] !== "X"; i--) if (changes[i][1] === tbl) at = i;
  return at;
}

function relation(relations: Map<number, Relation>, id: number): Relation {
  const r = relations.get(id);
  if (!r) throw new RepositoryError("SQL_ERROR", `pgoutput: a change of relation ${id} came before its description`);
  return r;
}

function image(rel: Relation, row: TupleValue[]): string {
  let s = "[";
  for (let i = 0; i < rel.columns.length; i++) {
    const v = row[i];
    s += (i ? "," : "") + (v === UNCHANGED ? UNCHANGED_TOKEN : encodeValue(rel.columns[i].typeOid, v));
  }
  return s + "]";
}

function keyImage(rel: Relation, row: TupleValue[]): string {
  const parts: string[] = [];
  rel.columns.forEach((c, i) => {
    if (c.key) parts.push(encodeValue(c.typeOid, row[i] === UNCHANGED ? null : (row[i] as string | null)));
  });
  return `[${parts.join(",")}]`;
}
