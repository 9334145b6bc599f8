/** packParts: encoded changes into the spool's parts (PostgreSQL's capture packs with it). */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { jsonArrayBytes } from "../../src/storage/repository/json-array.js";
import { packParts, type EncodedChange } from "../../src/storage/repository/parts.js";
import type { Change } from "../../src/storage/repository/types.js";

const change = (pos: number, op: "I" | "X", row: string): EncodedChange => [pos, op, JSON.stringify(["t", op, null, row] satisfies Change)];

test("parts hold at most partBytes (UTF-8 bytes) or one change, in order, with their first and last position and DDL", () => {
  const changes = [change(10, "I", "a"), change(10, "I", "é".repeat(40)), change(12, "X", "CREATE INDEX i ON t(v)"), change(13, "I", "x".repeat(500)), change(14, "I", "b"), change(15, "I", "c")];
  const parts = [...packParts(changes, 100)];
  const decoded = parts.map((p) => JSON.parse(Buffer.from(p.data).toString()) as Change[]);
  assert.equal(decoded.flat(), changes.map(([, , json]) => JSON.parse(json)), "every change once, in order");
  for (const p of parts) assert.ok(p.data.length <= 100 || p.count === 1, `${p.data.length} bytes in ${p.count} changes`);
  assert.equal(
    parts.map((p) => [p.first, p.last, p.count, p.ddl]),
    [
      [10, 10, 1, false], // the second change's 80 bytes of é do not fit beside the first
      [10, 10, 1, false], // 100 bytes with the brackets: exactly a part
      [12, 12, 1, true],
      [13, 13, 1, false], // larger than a part: alone
      [14, 15, 2, false],
    ],
  );
  assert.equal([...packParts([], 100)], [], "no change, no part");
});

test("multi-byte text counts by its UTF-8 bytes, and each part holds its own changes", () => {
  const changes = [change(1, "I", "small"), change(2, "I", "ü".repeat(5000)), change(3, "I", "after")];
  const parts = [...packParts(changes, 64 * 1024)];
  assert.is(parts.length, 1);
  assert.equal(JSON.parse(Buffer.from(parts[0].data).toString()), changes.map(([, , json]) => JSON.parse(json)));
  const two = [change(1, "I", "a".repeat(80)), change(2, "I", "b".repeat(80))];
  const many = [...packParts(two, 100)];
  assert.equal(
    many.map((p) => JSON.parse(Buffer.from(p.data).toString())),
    two.map(([, , json]) => [JSON.parse(json)]),
  );
});

test("jsonArrayBytes joins texts as UTF-8 and refuses a size its caller miscounted", () => {
  assert.is(jsonArrayBytes([]).toString(), "[]");
  const texts = ['"é"', "1", '{"a":[null]}'];
  assert.is(jsonArrayBytes(texts).toString(), `[${texts.join(",")}]`);
  const size = Buffer.byteLength(`[${texts.join(",")}]`);
  assert.is(jsonArrayBytes(texts, size).toString(), `[${texts.join(",")}]`);
  assert.throws(() => jsonArrayBytes(texts, size - 1), /counted, \d+ written/);
  assert.throws(() => jsonArrayBytes(texts, size + 1), /counted, \d+ written/);
});

test.run();
