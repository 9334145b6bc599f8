import { test } from "uvu";
import * as assert from "uvu/assert";
import Database from "better-sqlite3";
import { decodeImage } from "../../src/storage/repository/row-image.js";

test("integers become BigInt (exact beyond 2^53), reals stay numbers, text, null and blobs", () => {
  assert.equal(decodeImage(`[1,-2,9223372036854775807,-9223372036854775808]`), [1n, -2n, 9223372036854775807n, -9223372036854775808n]);
  assert.equal(decodeImage(`[1.0,-0.5,1.0e+20,2.5E-7]`), [1, -0.5, 1e20, 2.5e-7]);
  assert.equal(decodeImage(`["a","with \\"quotes\\" and \\\\ and \\n","ünï ☃",""]`), ["a", 'with "quotes" and \\ and \n', "ünï ☃", ""]);
  assert.equal(decodeImage(`[null, ["x","00FF10"] ,"x"]`), [null, Buffer.from([0, 255, 16]), "x"]);
  assert.equal(decodeImage(`[]`), []);
});

test("integers of every length decode exactly, on both sides of the short-integer path, and reals as doubles", () => {
  const ints: bigint[] = [0n, -0n, 9n, -9n];
  for (let digits = 1; digits <= 19; digits++) {
    const top = 10n ** BigInt(digits) - 1n;
    ints.push(top, -top, 10n ** BigInt(digits - 1), top / 7n, -(top / 3n));
  }
  ints.push(9223372036854775807n, -9223372036854775808n, 2n ** 53n + 1n, -(2n ** 53n) - 1n);
  assert.equal(decodeImage(`[${ints.join(",")}]`), ints);
  const reals = ["0.0", "-0.0", "1.5", "-1.5e-3", "1e5", "1E+300", "123456789012345678.5", "4.9e-324"];
  const decoded = decodeImage(`[${reals.join(",")}]`);
  assert.equal(decoded, reals.map(Number));
  assert.ok(decoded.every((v) => typeof v === "number"), "a token with '.' or an exponent is a real, however short");
  assert.ok(Object.is(decoded[1], -0), "-0.0 keeps its sign");
});

test("malformed images are refused with a clear error", () => {
  for (const bad of [`{}`, `[1,`, `[1 2]`, `["open]`, `[["y","00"]]`, `[abc]`, `[-]`, `[1-2]`, `["a" "b"]`]) {
    assert.throws(() => decodeImage(bad), /malformed row image/, bad);
  }
});

test("round trip through SQLite keeps every value's type and value", () => {
  const db = new Database(":memory:");
  db.exec("CREATE TABLE src(v); CREATE TABLE dst(v)");
  const values = ["1", "1.0", "-7", "9007199254740993", "3.14159", "1e300", "'text'", "'1.0'", "x'00ff'", "NULL", "0.1", "-0.0"];
  for (const v of values) db.exec(`INSERT INTO src VALUES (${v})`);
  const ins = db.prepare("INSERT INTO dst VALUES (?)");
  for (const { j } of db.prepare("SELECT json_array(CASE WHEN typeof(v)='blob' THEN json_array('x',hex(v)) ELSE v END) AS j FROM src ORDER BY rowid").all() as { j: string }[]) {
    ins.run(...decodeImage(j));
  }
  const q = (t: string) => db.prepare(`SELECT typeof(v) AS t, quote(v) AS q FROM ${t} ORDER BY rowid`).all();
  assert.equal(q("dst"), q("src"));
  db.close();
});

test.run();
