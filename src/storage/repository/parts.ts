/**
 * Packs captured changes that an adapter encodes one by one (PostgreSQL's decoded stream) into the
 * spool's parts (types.ts `CapturedPart`). SQLite builds its parts in SQL instead.
 */
import { jsonArrayBytes } from "./json-array.js";
import type { CapturedPart, ChangeOp } from "./types.js";

/** A captured change: [capture position, op, the Change as JSON text]. */
export type EncodedChange = [pos: number, op: ChangeOp, json: string];

export function* packParts(changes: Iterable<EncodedChange>, partBytes: number): Generator<CapturedPart> {
  let cur: string[] = [];
  let bytes = 1;
  let first = 0;
  let last = 0;
  let ddl = false;
  const take = (): CapturedPart => {
    const part = { first, last, count: cur.length, ddl, data: jsonArrayBytes(cur, bytes) };
    cur = [];
    bytes = 1;
    ddl = false;
    return part;
  };
  for (const [pos, op, json] of changes) {
    // With its comma (or the opening bracket) before it; `bytes` starts at 1 for the closing
    // bracket, so it is the part's whole length, which jsonArrayBytes need not count again.
    const size = Buffer.byteLength(json) + 1;
    if (cur.length > 0 && bytes + size > partBytes) yield take();
    if (cur.length === 0) first = pos;
    cur.push(json);
    bytes += size;
    last = pos;
    if (op === "X") ddl = true;
  }
  if (cur.length > 0) yield take();
}
