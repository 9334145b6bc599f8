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

/** Where decodeImage is in its text: one cursor, not a [value, next] pair a value (the allocations showed in replicas' profiles). */
let at = 0;

/** The image's values, appended to `out` when given (a caller binding many rows at once). */
export function decodeImage(json: string, out: SqlValue[] = []): SqlValue[] {
  at = skipWs(json, 0);
  if (json.charCodeAt(at) !== 0x5b) throw bad(json, at);
  at = skipWs(json, at + 1);
  if (json.charCodeAt(at) === 0x5d) return out;
  for (;;) {
    out.push(readValue(json));
    at = skipWs(json, at);
    const c = json.charCodeAt(at);
    if (c === 0x2c) at = skipWs(json, at + 1);
    else if (c === 0x5d) return out;
    else throw bad(json, at);
  }
}

/** Integer tokens of up to 15 digits are exact as doubles: summed digit by digit, not parsed by BigInt. */
const SMALL_DIGITS = 15;

function readValue(s: string): SqlValue {
  const i = at;
  const c = s.charCodeAt(i);
  if (c === 0x22) {
    const quote = s.indexOf('"', i + 1);
    if (quote < 0) throw bad(s, i);
    const raw = s.slice(i + 1, quote);
    if (!raw.includes("\\")) {
      at = quote + 1;
      return raw;
    }
    at = stringEnd(s, i) + 1;
    return JSON.parse(s.slice(i, at)) as string;
  }
  if (c === 0x6e && s.startsWith("null", i)) {
    at = i + 4;
    return null;
  }
  if (c === 0x5b) {
    // A blob: ["x","HEX"].
    const close = s.indexOf("]", i);
    const tagged = JSON.parse(s.slice(i, close + 1)) as unknown[];
    if (tagged[0] !== "x" || typeof tagged[1] !== "string") throw bad(s, i);
    at = close + 1;
    return Buffer.from(tagged[1], "hex");
  }
  let j = c === 0x2d ? i + 1 : i;
  const digitsFrom = j;
  let n = 0;
  let real = false;
  for (; j < s.length; j++) {
    const d = s.charCodeAt(j);
    if (d >= 0x30 && d <= 0x39) n = n * 10 + (d - 0x30);
    else if (d === 0x2e || d === 0x65 || d === 0x45 || d === 0x2d || d === 0x2b) real = true;
    else break;
  }
  if (j === digitsFrom) throw bad(s, i);
  at = j;
  if (real) {
    const v = Number(s.slice(i, j));
    if (Number.isNaN(v)) throw bad(s, i);
    return v;
  }
  if (j - digitsFrom <= SMALL_DIGITS) return BigInt(c === 0x2d ? -n : n);
  return BigInt(s.slice(i, j));
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
