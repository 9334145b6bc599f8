/**
 * Packs captured changes that an adapter encodes one by one (PostgreSQL's decoded stream) into the
 * spool's parts (types.ts `CapturedPart`). SQLite builds its parts in SQL instead.
 */
import type { CapturedPart, ChangeOp } from "./types.js";

/** A captured change: [capture position, op, the Change as JSON text]. */
export type EncodedChange = [pos: number, op: ChangeOp, json: string];

const OPEN = 0x5b; // [
const COMMA = 0x2c;
const CLOSE = 0x5d; // ]

/**
 * Each change is written as UTF-8 into one buffer as it comes, and a part is a copy of what the
 * buffer holds (a part kept by the spool's cache must not keep a whole buffer alive): joining the
 * texts and encoding the joined string took 3-4 times as long, a tenth of the master's busy time.
 */
export function* packParts(changes: Iterable<EncodedChange>, partBytes: number): Generator<CapturedPart> {
  let buf = Buffer.allocUnsafe(Math.max(1024, partBytes + 2));
  let at = 0;
  let count = 0;
  let first = 0;
  let last = 0;
  let ddl = false;
  const take = (): CapturedPart => {
    buf[at++] = CLOSE;
    const part = { first, last, count, ddl, data: new Uint8Array(buf.subarray(0, at)) };
    at = 0;
    count = 0;
    ddl = false;
    return part;
  };
  for (const [pos, op, json] of changes) {
    const size = Buffer.byteLength(json);
    // The part with this change and its closing bracket would pass partBytes.
    if (count > 0 && at + size + 2 > partBytes) yield take();
    if (at + size + 2 > buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * buf.length, at + size + 2));
      buf.copy(grown, 0, 0, at);
      buf = grown;
    }
    if (count === 0) first = pos;
    buf[at++] = count === 0 ? OPEN : COMMA;
    at += buf.write(json, at);
    count++;
    last = pos;
    if (op === "X") ddl = true;
  }
  if (count > 0) yield take();
}
