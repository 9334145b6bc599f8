/**
 * Online-to-offline sync: the pure pieces the repository (snapshots), the collector (change
 * stream) and the synctool (pack files, resuming) share.
 *
 * Keys and values stay as the JSON text the repository rendered them (row images, JSON objects), so an
 * integer beyond 2^53 keeps every digit and the snapshot and the change stream agree on every key.
 *
 * Partition of a row: from its key image (the JSON array of its key columns; the rowid for rowid
 * tables without an INTEGER PRIMARY KEY): a single safe integer k goes to ((k % P) + P) % P, any
 * other key to FNV-1a(the raw element texts joined by ",") % P.
 *
 * A subtask's position (saved in the synctool's LevelDB, carried in pack requests, recoverable from
 * the destination's file names):
 * - `snapshot`: `rows` rows written so far, in key order; `key` is the key image of the last one.
 * - `stream`: the next change to read is change `off` of part `part` of batch `lsn`.
 * - `done`: a mode-0 subtask whose snapshot is complete.
 * `segs` lists the snapshot segments: a snapshot that had to be reopened (another collector, a
 * restarted synctool) continues after the last key written, read at a newer LSN. A change at LSN x
 * to key k is then written only when x is past the LSN of the segment that holds k; the stream
 * starts after the first segment's LSN, so nothing is lost and nothing is written twice.
 */

import { UNCHANGED_VALUE } from "./repository/row-image.js";

export interface SyncSegment {
  /** LSN the segment's snapshot was read at. */
  lsn: number;
  /** Key image after which the segment starts (null: from the first key). */
  after: string | null;
  /** Ordinal of the segment's first row in the subtask's snapshot (1-based). */
  firstRow: number;
}

export type SyncPosition =
  | { phase: "snapshot"; segs: SyncSegment[]; rows: number; key: string | null }
  | { phase: "stream"; segs: SyncSegment[]; lsn: number; part: number; off: number }
  | { phase: "done" };

export const START: SyncPosition = { phase: "snapshot", segs: [], rows: 0, key: null };

/** Sort key of positions of one subtask: a later position compares greater. */
export function positionRank(p: SyncPosition): number[] {
  if (p.phase === "done") return [3];
  if (p.phase === "stream") return [2, p.lsn, p.part, p.off];
  return [1, p.rows];
}

export function comparePositions(a: SyncPosition, b: SyncPosition): number {
  const x = positionRank(a);
  const y = positionRank(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? 0) - (y[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  return 0;
}

/** The LSN a replica must have applied to continue this position. */
export function requiredLsn(p: SyncPosition): number {
  if (p.phase === "done") return 0;
  if (p.phase === "stream") return p.lsn - 1;
  return p.segs.reduce((m, s) => Math.max(m, s.lsn), 0);
}

export function describePosition(p: SyncPosition): string {
  if (p.phase === "done") return "done";
  if (p.phase === "stream") return p.part || p.off ? `stream within LSN ${p.lsn} (part ${p.part}, change ${p.off})` : `stream through LSN ${p.lsn - 1}`;
  return p.segs.length === 0 ? "snapshot (not started)" : `snapshot at LSN ${p.segs[p.segs.length - 1].lsn}, ${p.rows} rows`;
}

// ---- raw JSON ------------------------------------------------------------------------------

/** Calls back with [start, end) of each top-level member of the JSON array or object `text`. */
function members(text: string, each: (start: number, end: number) => void): void {
  let depth = 0;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */) i++;
        else if (d === 34) break;
      }
    } else if (c === 91 /* [ */ || c === 123 /* { */) {
      if (depth++ === 0) start = i + 1;
    } else if (c === 93 /* ] */ || c === 125 /* } */) {
      if (--depth === 0) {
        each(start, i);
        return;
      }
    } else if (c === 44 /* , */ && depth === 1) {
      each(start, i);
      start = i + 1;
    }
  }
  throw new Error(`not a complete JSON array or object: ${text.slice(0, 80)}`);
}

/** The top-level elements of a JSON array, each as its raw JSON text. */
export function splitJsonArray(text: string): string[] {
  const out: string[] = [];
  members(text, (s, e) => {
    const el = text.slice(s, e).trim();
    if (el !== "") out.push(el);
  });
  return out;
}

/** The members of a JSON object as [name, raw value text] pairs. */
export function splitJsonObject(text: string): [string, string][] {
  const out: [string, string][] = [];
  members(text, (s, e) => {
    const m = text.slice(s, e).trim();
    if (m === "") return;
    let i = 1;
    for (; i < m.length; i++) {
      const d = m.charCodeAt(i);
      if (d === 92) i++;
      else if (d === 34) break;
    }
    const name = m.slice(1, i);
    out.push([name.includes("\\") ? (JSON.parse(m.slice(0, i + 1)) as string) : name, m.slice(m.indexOf(":", i + 1) + 1).trim()]);
  });
  return out;
}

/** A raw image value as a JSON object member value: blobs ["x","HEX"] become {"$blob":"HEX"}. */
export function objectValue(raw: string): string {
  return raw.charCodeAt(0) === 91 ? `{"$blob":${JSON.stringify((JSON.parse(raw) as string[])[1])}}` : raw;
}

/** A raw object member value as an image value: {"$blob":"HEX"} becomes ["x","HEX"]. */
export function imageValue(raw: string): string {
  return raw.charCodeAt(0) === 123 ? JSON.stringify(["x", (JSON.parse(raw) as { $blob: string }).$blob]) : raw;
}

/**
 * A JSON object text from column names and raw image values. A value the update left unchanged
 * and the capture did not carry is left out: the record holds the columns it knows.
 */
export function toObject(columns: string[], raws: string[]): string {
  let s = "{";
  for (let i = 0; i < columns.length; i++) {
    if (raws[i] === UNCHANGED_VALUE) continue;
    s += `${s.length > 1 ? "," : ""}${JSON.stringify(columns[i])}:${objectValue(raws[i] ?? "null")}`;
  }
  return s + "}";
}

/** The last line of JSON Lines bytes (which end with a newline). */
export function lastJsonLine(payload: Uint8Array): string {
  const end = payload[payload.length - 1] === 10 ? payload.length - 1 : payload.length;
  return new TextDecoder().decode(payload.subarray(payload.lastIndexOf(10, end - 1) + 1, end));
}

/** The key image (JSON array text) of a row given as a JSON object line. */
export function keyOfRow(line: string, key: string[]): string {
  const byName = new Map(splitJsonObject(line));
  return `[${key
    .map((k) => {
      const raw = byName.get(k);
      if (raw === undefined) throw new Error(`row has no key column ${k}`);
      return imageValue(raw);
    })
    .join(",")}]`;
}

// ---- partitions and key order -------------------------------------------------------------

const INTEGER = /^-?\d+$/;

/** The partition of a key given as its raw element texts (see the module comment). */
export function partitionOf(key: string[], count: number): number {
  if (count <= 1) return 0;
  if (key.length === 1 && INTEGER.test(key[0])) {
    const n = Number(key[0]);
    if (Number.isSafeInteger(n)) return ((n % count) + count) % count;
  }
  return fnv1a(key.join(",")) % count;
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}


/** ferry's key order (SQLite's BINARY collation; what every adapter's table reader gives): NULL < numbers < text by bytes < blobs. */
function rank(raw: string): number {
  const c = raw.charCodeAt(0);
  if (raw === "null") return 0;
  if (c === 34) return 2;
  if (c === 91) return 3;
  return 1;
}

function compareRaw(a: string, b: string): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  if (ra === 1) {
    if (INTEGER.test(a) && INTEGER.test(b)) {
      const x = BigInt(a);
      const y = BigInt(b);
      return x < y ? -1 : x > y ? 1 : 0;
    }
    return Math.sign(Number(a) - Number(b));
  }
  if (ra === 2) return Buffer.compare(Buffer.from(JSON.parse(a) as string), Buffer.from(JSON.parse(b) as string));
  if (ra === 3) {
    const x = (JSON.parse(a) as string[])[1];
    const y = (JSON.parse(b) as string[])[1];
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return 0;
}

/** Compares two keys (raw element texts) in ferry's key order. */
export function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = compareRaw(a[i], b[i]);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/**
 * Whether a change at batch `lsn` to `key` belongs after the snapshot: true when lsn is past the
 * LSN of the segment that holds the key. `afters` are the parsed `after` keys of `segs`.
 */
export function pastSnapshot(segs: SyncSegment[], afters: (string[] | null)[], key: string[], lsn: number): boolean {
  let j = 0;
  for (let i = 1; i < segs.length; i++) if (afters[i] && compareKeys(key, afters[i]!) > 0) j = i;
  return segs.length === 0 || lsn > segs[j].lsn;
}
