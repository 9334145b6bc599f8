/**
 * Raw image values (JSON text: integer tokens, real tokens with '.' or an exponent, strings,
 * {"$blob": HEX}, null) as the typed values a column format stores for a column's kind. A value
 * that does not fit its column's declared kind (SQLite lets any column hold any type) is refused
 * rather than changed: a typed file must not hold a silently different value.
 */
import { SyncError } from "../../errors.js";
import type { ValueKind } from "../repository/types.js";

export type TypedValue = bigint | number | string | Uint8Array | boolean | null;

const INTEGER = /^-?\d+$/;

function mismatch(column: string, kind: ValueKind, raw: string): SyncError {
  return new SyncError("SINK_TYPE_MISMATCH", `column ${column} holds ${raw.slice(0, 40)}, which is not ${kind === "integer" ? "an" : "a"} ${kind} value as the column's type says`, {
    hint: "a typed file holds one type a column: fix the value, or sync the table with --format jsonl, which keeps each value's own type",
  });
}

const text = (raw: string) => (raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1));
const hexOf = (raw: string) => (JSON.parse(raw) as { $blob: string }).$blob;

/** What a raw value is: null, a number token, a string (parsed), or a blob's HEX. */
export function rawShape(raw: string | undefined): { t: "null" } | { t: "number"; token: string } | { t: "string"; s: string } | { t: "blob"; hex: string } {
  if (raw === undefined || raw === "null") return { t: "null" };
  const c = raw.charCodeAt(0);
  if (c === 34 /* " */) return { t: "string", s: text(raw) };
  if (c === 123 /* { */) return { t: "blob", hex: hexOf(raw) };
  return { t: "number", token: raw };
}

/** Reads the raw text once, without building a shape: this runs for every value of every row. */
export function typedValue(raw: string | undefined, kind: ValueKind, column: string): TypedValue {
  if (raw === undefined || raw === "null") return null;
  const c = raw.charCodeAt(0);
  const isText = c === 34; /* " */
  const isBlob = c === 123; /* { */
  const isNumber = !isText && !isBlob;
  switch (kind) {
    case "integer":
      if (isNumber && INTEGER.test(raw)) return BigInt(raw);
      break;
    case "real":
      if (isNumber) return Number(raw);
      // PostgreSQL's NaN and infinities travel as strings.
      if (isText && /^"-?(NaN|Infinity)"$/.test(raw)) return Number(text(raw));
      break;
    case "boolean":
      if (isText && /^"(t|f|true|false)"$/.test(raw)) return raw.charCodeAt(1) === 116; /* t */
      break;
    case "blob":
      return isBlob ? Buffer.from(hexOf(raw), "hex") : Buffer.from(isText ? text(raw) : raw, "utf8");
    case "text":
      if (isText) return text(raw);
      if (isNumber) return raw;
      break;
    case "any":
      return isText ? text(raw) : isNumber ? raw : `\\x${hexOf(raw)}`;
  }
  throw mismatch(column, kind, raw);
}
