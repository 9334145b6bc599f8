/**
 * PostgreSQL values in ferry's row images (row-image.ts), from and to the server's text form.
 *
 * Encoding is by the column's type OID, always from the text the server printed (pgoutput sends
 * text; snapshots read text), so capture and snapshots give the same image for the same row:
 * integers as bare JSON number tokens (every digit, also past 2^53), floats as number tokens with
 * a '.' or an exponent (NaN and infinities as strings), bytea as ["x", HEX], everything else
 * (numeric, bool, dates, uuid, json, arrays, ...) as the exact text in a JSON string.
 *
 * Decoding never goes through a JS number: each value is bound as text and the server parses it as
 * the column's type, so the replica reads exactly what the master printed.
 */
import { RepositoryError } from "../../../errors.js";
import type { ValueKind } from "../types.js";

const INT = new Set([20, 21, 23, 26]);
const FLOAT = new Set([700, 701]);
const BYTEA = 17;
const BOOL = 16;

/** A column's values in neutral terms: numeric, dates, uuid, json and arrays keep their exact text. */
export function valueKind(typeOid: number): ValueKind {
  if (INT.has(typeOid)) return "integer";
  if (FLOAT.has(typeOid)) return "real";
  if (typeOid === BYTEA) return "blob";
  if (typeOid === BOOL) return "boolean";
  return "text";
}

/** Types whose text form depends on a server setting no session option fixes: refused by name. */
export const REFUSED_TYPES: Record<string, string> = {
  money: "its text depends on lc_monetary; use numeric",
  "money[]": "its text depends on lc_monetary; use numeric[]",
};

/** In an UPDATE image: a TOASTed column the update did not change (pgoutput does not send it). */
export const UNCHANGED_TOKEN = `["u"]`;
export const UNCHANGED: unique symbol = Symbol("unchanged");

/** One value as a row image element (raw JSON text). */
export function encodeValue(typeOid: number, text: string | null): string {
  if (text === null) return "null";
  if (INT.has(typeOid)) return text;
  if (FLOAT.has(typeOid)) {
    if (!/^-?[0-9]/.test(text)) return JSON.stringify(text); // NaN, Infinity, -Infinity
    return /[.eE]/.test(text) ? text : `${text}.0`;
  }
  if (typeOid === BYTEA) return `["x","${text.slice(2).toUpperCase()}"]`;
  return JSON.stringify(text);
}

export type Param = string | null | typeof UNCHANGED;

/**
 * SQL that reads element `i` of the row image `row` (an expression of type json) as a value of
 * type `cast`: the inverse of encodeValue on the server, for statements that take row images
 * as one JSON parameter.
 */
export function imageValueSql(typeOid: number, cast: string, row: string, i: number): string {
  if (typeOid === BYTEA) return `pg_catalog.decode(${row}->${i}->>1, 'hex')`;
  return `(${row}->>${i})::${cast}`;
}

export function decodeElement(raw: string): Param {
  const c = raw.charCodeAt(0);
  if (c === 0x22) return JSON.parse(raw) as string;
  if (raw === "null") return null;
  if (c === 0x5b) {
    const tagged = JSON.parse(raw) as string[];
    if (tagged[0] === "x" && typeof tagged[1] === "string") return `\\x${tagged[1]}`;
    if (tagged[0] === "u") return UNCHANGED;
    throw new RepositoryError("SQL_ERROR", `malformed row image value: ${raw.slice(0, 80)}`);
  }
  if (!/^[-+0-9.eE]+$/.test(raw)) throw new RepositoryError("SQL_ERROR", `malformed row image value: ${raw.slice(0, 80)}`);
  return raw;
}
