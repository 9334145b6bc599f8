/**
 * A decoder of pgoutput's protocol version 1 (the built-in logical decoding plugin), as
 * the slot's stream (XLogData) and pg_logical_slot_peek_binary_changes carry it: one message at a
 * time, values as text.
 * https://www.postgresql.org/docs/15/protocol-logicalrep-message-formats.html
 */
import { RepositoryError } from "../../../errors.js";
import { UNCHANGED } from "./values.js";

export interface RelationColumn {
  name: string;
  typeOid: number;
  /** Part of the replica identity (the primary key; every column under REPLICA IDENTITY FULL). */
  key: boolean;
}

export interface Relation {
  id: number;
  schema: string;
  name: string;
  /** relreplident: 'd' default (the primary key), 'f' full, 'i' an index, 'n' nothing. */
  identity: string;
  columns: RelationColumn[];
}

/** The old row of an update or delete: 'K' its replica identity columns only, 'O' every column (REPLICA IDENTITY FULL). */
export type OldKind = "K" | "O";

export type TupleValue = string | null | typeof UNCHANGED;

export type PgOutputMessage =
  | { tag: "B" }
  | { tag: "C"; endLsn: number }
  | { tag: "R"; relation: Relation }
  | { tag: "I"; relid: number; row: TupleValue[] }
  | { tag: "U"; relid: number; old: TupleValue[] | null; oldKind: OldKind | null; row: TupleValue[] }
  | { tag: "D"; relid: number; old: TupleValue[]; oldKind: OldKind }
  | { tag: "T"; relids: number[]; cascade: boolean; restartIdentity: boolean }
  | { tag: "skip" };

class Reader {
  private i = 0;
  constructor(private readonly b: Buffer) {}
  byte(): number {
    return this.b[this.i++];
  }
  char(): string {
    return String.fromCharCode(this.byte());
  }
  int16(): number {
    const v = this.b.readInt16BE(this.i);
    this.i += 2;
    return v;
  }
  int32(): number {
    const v = this.b.readInt32BE(this.i);
    this.i += 4;
    return v;
  }
  uint32(): number {
    const v = this.b.readUInt32BE(this.i);
    this.i += 4;
    return v;
  }
  /** An LSN or timestamp: exact as a number below 2^53. */
  int64(): number {
    const hi = this.b.readUInt32BE(this.i);
    const lo = this.b.readUInt32BE(this.i + 4);
    this.i += 8;
    return hi * 2 ** 32 + lo;
  }
  string(): string {
    const end = this.b.indexOf(0, this.i);
    const s = this.b.toString("utf8", this.i, end);
    this.i = end + 1;
    return s;
  }
  text(n: number): string {
    const s = this.b.toString("utf8", this.i, this.i + n);
    this.i += n;
    return s;
  }
}

function tuple(r: Reader): TupleValue[] {
  const n = r.int16();
  const out: TupleValue[] = new Array(n);
  for (let k = 0; k < n; k++) {
    const kind = r.char();
    if (kind === "n") out[k] = null;
    else if (kind === "u") out[k] = UNCHANGED;
    else if (kind === "t") out[k] = r.text(r.int32());
    else throw new RepositoryError("SQL_ERROR", `pgoutput: unexpected tuple value kind '${kind}'`);
  }
  return out;
}

export function decodeMessage(data: Buffer): PgOutputMessage {
  const r = new Reader(data);
  const tag = r.char();
  switch (tag) {
    case "B":
      return { tag };
    case "C": {
      r.byte(); // flags
      r.int64(); // commit LSN
      return { tag, endLsn: r.int64() };
    }
    case "R": {
      const id = r.uint32();
      const schema = r.string();
      const name = r.string();
      const identity = r.char();
      const n = r.int16();
      const columns: RelationColumn[] = [];
      for (let k = 0; k < n; k++) {
        const flags = r.byte();
        const colName = r.string();
        const typeOid = r.uint32();
        r.int32(); // typmod
        columns.push({ name: colName, typeOid, key: (flags & 1) === 1 });
      }
      return { tag, relation: { id, schema, name, identity, columns } };
    }
    case "I": {
      const relid = r.uint32();
      r.char(); // 'N'
      return { tag, relid, row: tuple(r) };
    }
    case "U": {
      const relid = r.uint32();
      let old: TupleValue[] | null = null;
      let oldKind: OldKind | null = null;
      const kind = r.char();
      if (kind === "K" || kind === "O") {
        old = tuple(r);
        oldKind = kind;
        r.char(); // 'N'
      }
      return { tag, relid, old, oldKind, row: tuple(r) };
    }
    case "D": {
      const relid = r.uint32();
      const oldKind = r.char() as OldKind;
      return { tag, relid, oldKind, old: tuple(r) };
    }
    case "T": {
      const n = r.int32();
      const options = r.byte();
      const relids: number[] = [];
      for (let k = 0; k < n; k++) relids.push(r.uint32());
      return { tag, relids, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2 };
    }
    default:
      // Origin, Type and logical messages carry nothing ferry replicates.
      return { tag: "skip" };
  }
}
