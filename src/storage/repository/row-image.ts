/**
 * ferry's row image: the text form in which every repository kind hands rows to the spool and
 * takes them back. A JSON array of the row's values, each with its exact type:
 * - a number token without '.' or exponent is a 64-bit integer (decoded as BigInt: every digit kept),
 * - a number token with '.' or an exponent is a double (1.0 stays a real),
 * - a string is text, null is NULL, ["x", HEX] is a blob,
 * - ["u"] (UNCHANGED_VALUE) is a value an update left as it was and the capture did not carry
 *   (PostgreSQL's unchanged out-of-line values): the target keeps what it has,
 * - a value an adapter cannot express in these (PostgreSQL's NaN float, numeric beyond a double)
 *   travels as the kind's exact text form in a string, which the kind parses back by column type.
 * SQLite's `json_array` writes exactly this (blobs tagged in SQL), so its capture costs no JS.
 * JSON.parse cannot decode it: it reads 1.0 as 1 and rounds integers above 2^53.
 */
import { RepositoryError } from "../../errors.js";

export const UNCHANGED_VALUE = `["u"]`;

export type SqlValue = bigint | number | string | Buffer | null;

export function decodeImage(json: string): SqlValue[] {
  const out: SqlValue[] = [];
  let i = skipWs(json, 0);
  if (json.charCodeAt(i) !== 0x5b) throw bad(json, i);
  i = skipWs(json, i + 1);
  if (json.charCodeAt(i) === 0x5d) return out;
  for (;;) {
    const [value, next] = readValue(json, i);
    out.push(value);
    i = skipWs(json, next);
    const c = json.charCodeAt(i);
    if (c === 0x2c) i = skipWs(json, i + 1);
    else if (c === 0x5d) return out;
    else throw bad(json, i);
  }
}

function readValue(s: string, i: number): [SqlValue, number] {
  const c = s.charCodeAt(i);
  if (c === 0x22) {
    const end = stringEnd(s, i);
    const raw = s.slice(i + 1, end);
    return [raw.includes("\\") ? (JSON.parse(s.slice(i, end + 1)) as string) : raw, end + 1];
  }
  if (c === 0x6e && s.startsWith("null", i)) return [null, i + 4];
  if (c === 0x5b) {
    // A blob: ["x","HEX"].
    const close = s.indexOf("]", i);
    const tagged = JSON.parse(s.slice(i, close + 1)) as unknown[];
    if (tagged[0] !== "x" || typeof tagged[1] !== "string") throw bad(s, i);
    return [Buffer.from(tagged[1], "hex"), close + 1];
  }
  let j = i;
  let real = false;
  for (; j < s.length; j++) {
    const d = s.charCodeAt(j);
    if (d === 0x2e || d === 0x65 || d === 0x45) real = true;
    else if (!((d >= 0x30 && d <= 0x39) || d === 0x2d || d === 0x2b)) break;
  }
  if (j === i) throw bad(s, i);
  const token = s.slice(i, j);
  return [real ? Number(token) : BigInt(token), j];
}

function stringEnd(s: string, i: number): number {
  for (let j = i + 1; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c === 0x5c) j++;
    else if (c === 0x22) return j;
  }
  throw bad(s, i);
}

function skipWs(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

function bad(s: string, at: number): RepositoryError {
  return new RepositoryError("SQL_ERROR", `malformed row image at ${at}: ${s.slice(0, 80)}`);
}
