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

/** What a raw value is: null, a number token, a string (parsed), or a blob's HEX. */
export function rawShape(raw: string | undefined): { t: "null" } | { t: "number"; token: string } | { t: "string"; s: string } | { t: "blob"; hex: string } {
  if (raw === undefined || raw === "null") return { t: "null" };
  const c = raw.charCodeAt(0);
  if (c === 34 /* " */) return { t: "string", s: raw.includes("\\") ? (JSON.parse(raw) as string) : raw.slice(1, -1) };
  if (c === 123 /* { */) return { t: "blob", hex: (JSON.parse(raw) as { $blob: string }).$blob };
  return { t: "number", token: raw };
}

function mismatch(column: string, kind: ValueKind, raw: string): SyncError {
  return new SyncError("SINK_TYPE_MISMATCH", `column ${column} holds ${raw.slice(0, 40)}, which is not ${kind === "integer" ? "an" : "a"} ${kind} value as the column's type says`, {
    hint: "a typed file holds one type a column: fix the value, or sync the table with --format jsonl, which keeps each value's own type",
  });
}

export function typedValue(raw: string | undefined, kind: ValueKind, column: string): TypedValue {
  const v = rawShape(raw);
  if (v.t === "null") return null;
  switch (kind) {
    case "integer":
      if (v.t === "number" && INTEGER.test(v.token)) return BigInt(v.token);
      if (v.t === "number" && Number.isInteger(Number(v.token))) return BigInt(Number(v.token));
      throw mismatch(column, kind, raw!);
    case "real":
      if (v.t === "number") return Number(v.token);
      // PostgreSQL's NaN and infinities travel as strings.
      if (v.t === "string" && /^-?(NaN|Infinity)$/.test(v.s)) return Number(v.s);
      throw mismatch(column, kind, raw!);
    case "boolean":
      if (v.t === "string" && /^(t|f|true|false)$/.test(v.s)) return v.s.startsWith("t");
      throw mismatch(column, kind, raw!);
    case "blob":
      return v.t === "blob" ? Buffer.from(v.hex, "hex") : Buffer.from(v.t === "string" ? v.s : v.token, "utf8");
    case "text":
      if (v.t === "blob") throw mismatch(column, kind, raw!);
      return v.t === "string" ? v.s : v.token;
    case "any":
      return v.t === "string" ? v.s : v.t === "number" ? v.token : `\\x${v.hex}`;
  }
}
