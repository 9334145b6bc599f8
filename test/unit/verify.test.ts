/** What a continuous compare's report says about each replica (machines/verify.ts's findings), and how a mark reads. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { describeMark, findings, KEYS_KEPT, type DivergedMark, type VerifyReport } from "../../src/machines/verify.js";

const keys = (n: number) => Array.from({ length: n }, (_, i) => `[${i + 1}]`);
const table = (node: string, t: string, diff: string[]) => ({ table: t, node, diffs: diff.map((key) => ({ key })) });
const report = (tables: VerifyReport["tables"], errors: string[] = []): VerifyReport => ({ master: "m1", lsn: 40, tables, errors: errors.map((node) => ({ node })) });

test("a replica with differing rows is marked per table, with its first keys; an identical one is not", () => {
  const f = findings(report([table("s1", "a", keys(3)), table("s1", "b", []), table("s1", "c", keys(30)), table("s2", "a", [])]), {}, 5);
  assert.equal(f.clean, []);
  assert.is(f.diverged.length, 1);
  const m = f.diverged[0];
  assert.equal({ ...m, tables: m.tables.map((t) => [t.table, t.rows, t.keys.length]) }, { node: "s1", master: "m1", lsn: 40, at: 5, rows: 33, tables: [["a", 3, 3], ["c", 30, KEYS_KEPT]] });
  assert.is(describeMark(m), "a: 3 row(s), key(s) [1], [2], [3]; c: 30 row(s), key(s) [1], [2], [3], [4], [5] and 25 more");
});

test("against the recorded marks: an unchanged difference is not news, a changed one is, a clean or failed replica and the master are told apart", () => {
  const old: DivergedMark = { node: "s1", master: "m1", lsn: 30, at: 1, rows: 2, tables: [{ table: "a", rows: 2, keys: ["[1]", "[2]"] }] };
  const known = { s1: old, s2: { ...old, node: "s2" }, s3: { ...old, node: "s3" }, m1: { ...old, node: "m1" } };
  const same = findings(report([table("s1", "a", ["[1]", "[2]"]), table("s2", "a", ["[1]"]), table("s3", "a", [])]), known, 9);
  assert.equal(same.diverged.map((m) => m.node), ["s2"], "s1's difference is the one recorded; s2's changed");
  assert.equal(same.clean, ["s3", "m1"], "s3 is identical now; m1 is the master, the reference");
  const failed = findings(report([table("s1", "a", [])], ["s1"]), known, 9);
  assert.equal(failed, { diverged: [], clean: ["m1"] }, "a replica that could not be compared is neither marked nor cleared");
});

test.run();
