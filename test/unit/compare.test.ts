/** Compare's checksums and row matching: order-independent sums, exact images, chunk cuts, diffs. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Chunker, RowSum, murmur128 } from "../../src/storage/repository/checksum.js";
import { diffRows } from "../../src/client/compare.js";

const sum = (rows: string[]) => {
  const s = new RowSum();
  for (const r of rows) s.add(r);
  return s.digest();
};

test("a chunk's sum does not depend on the order of its rows, and changes with any row", () => {
  const rows = Array.from({ length: 50 }, (_, i) => `[${i},"v${i}",${i}.5]`);
  assert.is(sum(rows), sum([...rows].reverse()));
  assert.is.not(sum(rows), sum(rows.slice(1)));
  assert.is.not(sum(rows), sum([...rows.slice(1), `[0,"v0",0.50000000000000001]`]));
});

test("row images that differ only in type or precision hash apart", () => {
  const pairs = [
    ["[1,9007199254740993]", "[1,9007199254740992]"],
    ["[1,1.0]", "[1,1]"],
    ['[1,""]', "[1,null]"],
    ['[1,["x","00"]]', '[1,["x","0000"]]'],
    ['[1,"1"]', "[1,1]"],
    ["[1,0.30000000000000004]", "[1,0.3]"],
    ['[1,"-0"]', '[1,"0"]'],
    ["a", "a\u0000"],
  ];
  for (const [a, b] of pairs) assert.is.not(Array.from(murmur128(a)).join(), Array.from(murmur128(b)).join(), `${a} vs ${b}`);
  const lanes = Array.from(murmur128("[1]"));
  assert.is(new Set(lanes).size, 4, "four independent lanes even for a short image");
});

test("a range of a string hashes as the substring does, at every length and offset", () => {
  const text = Array.from({ length: 40 }, (_, i) => `[${i},"ü${"x".repeat(i)}",${i}.5]`).join("\n");
  for (let start = 0; start < 24; start += 3) {
    for (let end = start; end <= start + 37; end++) {
      assert.equal(Array.from(murmur128(text, start, end)), Array.from(murmur128(text.slice(start, end))), `${start}..${end}`);
    }
  }
  const whole = new RowSum();
  const ranged = new RowSum();
  let from = 0;
  for (const row of text.split("\n")) {
    whole.add(row);
    ranged.add(text, from, from + row.length);
    from += row.length + 1;
  }
  assert.is(ranged.digest(), whole.digest());
});

test("chunks cut only between different keys, the last one ending where the range ends", () => {
  const c = new Chunker(2, null);
  for (const k of ["[1]", "[2]", "[2]", "[2]", "[3]", "[4]", "[5]"]) c.add(k, `${k}x`, 100);
  const chunks = c.end(null);
  assert.equal(
    chunks.map((x) => [x.after, x.upto, x.rows]),
    [
      [null, "[2]", 4],
      ["[2]", "[4]", 2],
      ["[4]", null, 1],
    ],
  );
  const paged = new Chunker(1, "[0]");
  const taken = ["[1]", "[2]", "[3]"].map((k) => paged.add(k, k, 2));
  assert.equal(taken, [true, true, false]);
  assert.equal(paged.chunks.map((x) => [x.after, x.upto]), [["[0]", "[1]"], ["[1]", "[2]"]]);
});

test("rows are matched by key: missing, extra, changed; equal rows of a table without a key match one for one", () => {
  const d = diffRows(
    [
      { key: "[1]", row: "[1,a]" },
      { key: "[2]", row: "[2,b]" },
      { key: '["a",1]', row: '["a",1]' },
      { key: '["a",1]', row: '["a",1]' },
    ],
    [
      { key: "[2]", row: "[2,B]" },
      { key: "[3]", row: "[3,c]" },
      { key: '["a",1]', row: '["a",1]' },
    ],
  );
  assert.equal(
    d.map((x) => `${x.key} ${x.kind}`).sort(),
    ['["a",1] missing', "[1] missing", "[2] changed", "[3] extra"],
  );
});

test.run();
