/**
 * The collector's JSON Lines as records of one shape for the column formats: a row's raw image
 * values by column, with the change columns. A snapshot row is an insert at the snapshot's LSN;
 * an update that changed the key becomes a delete of the old key and the update, sharing one
 * `_seq` (they touch different keys, so a reader's latest-per-key order is unaffected).
 */
import { SyncError } from "../../errors.js";
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

/**
 * Calls back each member of the JSON object starting at `at` with its name and raw value text;
 * returns the index after the object. One pass, values sliced, never parsed: this runs for every
 * value of every row.
 */
function eachMember(s: string, at: number, fn: (name: string, raw: string) => void): number {
  let i = at + 1;
  for (;;) {
    while (s.charCodeAt(i) <= 32) i++;
    if (s.charCodeAt(i) === 125 /* } */) return i + 1;
    const nameEnd = stringEnd(s, i);
    const name = s.slice(i + 1, nameEnd);
    i = s.indexOf(":", nameEnd + 1) + 1;
    while (s.charCodeAt(i) <= 32) i++;
    const v = i;
    const c = s.charCodeAt(i);
    if (c === 34 /* " */) i = stringEnd(s, i) + 1;
    else if (c === 123 /* { */ || c === 91 /* [ */) i = nestedEnd(s, i);
    else while (i < s.length && s.charCodeAt(i) !== 44 && s.charCodeAt(i) !== 125) i++;
    fn(name.includes("\\") ? (JSON.parse(`"${name}"`) as string) : name, s.slice(v, i).trimEnd());
    while (s.charCodeAt(i) <= 32) i++;
    if (s.charCodeAt(i) === 44 /* , */) i++;
  }
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

export function* sinkRecords(batch: SinkBatch, table: SinkTable): Generator<SinkRecord> {
  const index = new Map(table.columns.map((c, i) => [c, i]));
  const rowValues = (text: string): (string | undefined)[] => {
    const raws = new Array<string | undefined>(table.columns.length);
    let n = 0;
    eachMember(text, 0, (name, raw) => {
      // Rows come in column order: the next column is the likely one.
      const i = table.columns[n] === name ? n : index.get(name);
      if (i === undefined) {
        throw new SyncError("SINK_SCHEMA_CHANGED", `a row of the table has column ${name}, which the task's files do not have (${table.columns.join(", ")})`, {
          hint: "the table's columns changed after the task was created: delete the task and create it again with another -d",
        });
      }
      raws[i] = raw;
      n = i + 1;
    });
    return raws;
  };
  let seq = batch.firstSeq;
  for (const payload of batch.payloads) {
    for (const line of dec.decode(payload).split("\n")) {
      if (line === "") continue;
      if (batch.kind === "snapshot") {
        yield { op: "insert", lsn: batch.lsn, seq: seq++, raws: rowValues(line) };
        continue;
      }
      const members = new Map<string, string>();
      eachMember(line, 0, (name, raw) => members.set(name, raw));
      const op = JSON.parse(members.get("op") ?? "null") as ChangeOp;
      const lsn = Number(members.get("lsn"));
      const old = members.get("old");
      if (old !== undefined) yield { op: "delete", lsn, seq, raws: rowValues(old) };
      yield { op, lsn, seq: seq++, raws: rowValues(members.get("row") ?? "{}") };
    }
  }
}
