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

export function* sinkRecords(batch: SinkBatch, table: SinkTable): Generator<SinkRecord> {
  const index = new Map(table.columns.map((c, i) => [c, i]));
  const rowValues = (text: string): (string | undefined)[] => {
    const raws = new Array<string | undefined>(table.columns.length);
    for (const [name, raw] of splitJsonObject(text)) {
      const i = index.get(name);
      if (i === undefined) {
        throw new SyncError("SINK_SCHEMA_CHANGED", `a row of the table has column ${name}, which the task's files do not have (${table.columns.join(", ")})`, {
          hint: "the table's columns changed after the task was created: delete the task and create it again with another -d",
        });
      }
      raws[i] = raw;
    }
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
      const members = new Map(splitJsonObject(line));
      const op = JSON.parse(members.get("op") ?? "null") as ChangeOp;
      const lsn = Number(members.get("lsn"));
      const old = members.get("old");
      if (old !== undefined) yield { op: "delete", lsn, seq, raws: rowValues(old) };
      yield { op, lsn, seq: seq++, raws: rowValues(members.get("row") ?? "{}") };
    }
  }
}
