/**
 * The collector's JSON Lines as records of one shape for the column formats: a row's raw image
 * values by column, with the change columns. A snapshot row is an insert at the snapshot's LSN;
 * an update that changed the key becomes a delete of the old key and the update, sharing one
 * `_seq` (they touch different keys, so a reader's latest-per-key order is unaffected).
 */
import { SyncError } from "../../errors.js";
import { splitJsonObject } from "../sync.js";
import type { SinkBatch, SinkTable } from "./types.js";

export type ChangeOp = "insert" | "update" | "delete";

export interface SinkRecord {
  op: ChangeOp;
  lsn: number;
  seq: number;
  /** Raw values (JSON text as the repository rendered them) by column; undefined where the record has none. */
  raws: (string | undefined)[];
}

const dec = new TextDecoder();

/** The change columns' names, beside the row's columns in modes 1 and 2. */
export const CHANGE_COLUMNS = ["_op", "_lsn", "_seq"] as const;

/** The index after the JSON value starting at `i` (numbers and literals end at a comma, brace or space). */
function valueEnd(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === 34 /* " */) return stringEnd(s, i) + 1;
  if (c === 123 /* { */ || c === 91 /* [ */) return nestedEnd(s, i);
  let j = i;
  for (let d = s.charCodeAt(j); j < s.length && d !== 44 && d !== 125 && d !== 93 && d > 32; d = s.charCodeAt(++j));
  return j;
}

function stringEnd(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === 92 /* \ */) j++;
    else if (c === 34) return j;
  }
  throw new SyncError("MALFORMED_MESSAGE", `a pack line is not complete JSON: ${s.slice(0, 80)}`);
}

function nestedEnd(s: string, i: number): number {
  let depth = 0;
  for (let j = i; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === 34) j = stringEnd(s, j);
    else if (c === 123 || c === 91) depth++;
    else if ((c === 125 || c === 93) && --depth === 0) return j + 1;
  }
  throw new SyncError("MALFORMED_MESSAGE", `a pack line is not complete JSON: ${s.slice(0, 80)}`);
}

/**
 * A row object's raw values by column. Rows come with their members in column order, so a name is
 * compared in place with the next column's and sliced only when it is another: no string is made
 * for a name, one for a value.
 */
function rowValues(s: string, table: SinkTable, index: Map<string, number>): (string | undefined)[] {
  const { columns } = table;
  const raws = new Array<string | undefined>(columns.length);
  let n = 0;
  let i = s.indexOf("{") + 1;
  for (;;) {
    while (s.charCodeAt(i) <= 32) i++;
    if (s.charCodeAt(i) !== 34 /* " */) break;
    const nameEnd = stringEnd(s, i);
    const expected = columns[n];
    let col: number | undefined = n;
    if (expected === undefined || nameEnd - i - 1 !== expected.length || !s.startsWith(expected, i + 1)) {
      const raw = s.slice(i + 1, nameEnd);
      const name = raw.includes("\\") ? (JSON.parse(`"${raw}"`) as string) : raw;
      col = index.get(name);
      if (col === undefined) {
        throw new SyncError("SINK_SCHEMA_CHANGED", `a row of the table has column ${name}, which the task's files do not have (${columns.join(", ")})`, {
          hint: "the table's columns changed after the task was created: delete the task and create it again with another -d",
        });
      }
    }
    i = s.indexOf(":", nameEnd + 1) + 1;
    while (s.charCodeAt(i) <= 32) i++;
    const v = i;
    i = valueEnd(s, i);
    raws[col] = s.slice(v, i);
    n = col + 1;
    while (s.charCodeAt(i) <= 32) i++;
    if (s.charCodeAt(i) === 44 /* , */) i++;
  }
  return raws;
}

export function* sinkRecords(batch: SinkBatch, table: SinkTable): Generator<SinkRecord> {
  const index = new Map(table.columns.map((c, i) => [c, i]));
  const rowValuesOf = (text: string) => rowValues(text, table, index);
  let seq = batch.firstSeq;
  for (const payload of batch.payloads) {
    for (const line of dec.decode(payload).split("\n")) {
      if (line === "") continue;
      if (batch.kind === "snapshot") {
        yield { op: "insert", lsn: batch.lsn, seq: seq++, raws: rowValuesOf(line) };
        continue;
      }
      const members = new Map(splitJsonObject(line));
      const op = JSON.parse(members.get("op") ?? "null") as ChangeOp;
      const lsn = Number(members.get("lsn"));
      const old = members.get("old");
      if (old !== undefined) yield { op: "delete", lsn, seq, raws: rowValuesOf(old) };
      yield { op, lsn, seq: seq++, raws: rowValuesOf(members.get("row") ?? "{}") };
    }
  }
}
