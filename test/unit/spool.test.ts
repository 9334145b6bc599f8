/**
 * The spool on a real LevelDB: a batch written in parts reads back in order, part by part, from
 * the cache or from disk; a batch of any size is never held in memory whole.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Spool } from "../../src/storage/spool.js";
import { openLevel, type LevelDb } from "../../src/storage/store.js";
import type { BatchMeta } from "../../src/batch.js";
import type { Change } from "../../src/storage/repository/types.js";
import { cleanup, tempDir } from "../helpers/procs.js";

let db: LevelDb | null = null;
test.after.each(async () => {
  await db?.close();
  db = null;
  await cleanup();
});

const enc = new TextEncoder();
/** `parts` parts of `perPart` inserts each, ids counting up from `from`; every row carries `pad` bytes. */
async function writeBatch(spool: Spool, lsn: number, parts: number, perPart: number, pad = 10, from = 1): Promise<BatchMeta> {
  let bytes = 0;
  let id = from;
  const part = () => {
    const changes: Change[] = [];
    for (let i = 0; i < perPart; i++, id++) changes.push(["t", "I", null, `[${id},"${"x".repeat(pad)}"]`]);
    const data = enc.encode(JSON.stringify(changes));
    bytes += data.length;
    return data;
  };
  for (let p = 0; p < parts - 1; p++) await spool.writeUnsynced({ lsn, part: p, parts: 0, data: part() });
  const data = part();
  const meta: BatchMeta = { lsn, epoch: 1, ts: Date.now(), parts, bytes, cum: (spool.last?.cum ?? 0) + bytes, firstId: from, lastId: id - 1, fp: "", ddl: false };
  await spool.write([{ lsn, part: parts - 1, parts, data, meta }]);
  return meta;
}

const ids = (changes: Iterable<Change>) => Array.from(changes, (c) => JSON.parse(c[3]!)[0] as number);

test("a batch in parts reads back whole and in order, from the cache and, in a new process, from disk", async () => {
  const dir = tempDir("ferry-spool-");
  db = await openLevel(dir);
  const spool = new Spool(db);
  await spool.load();
  const m1 = await writeBatch(spool, 1, 5, 100);
  const m2 = await writeBatch(spool, 2, 1, 3, 10, 501);
  const want = Array.from({ length: 500 }, (_, i) => i + 1);
  assert.equal(ids(spool.changesOf(m1)), want);
  assert.equal(ids(spool.changesOf(m2)), [501, 502, 503]);
  await db.close();
  db = await openLevel(dir);
  const again = new Spool(db);
  await again.load();
  assert.is(again.cachedBytes, 0, "a new spool holds nothing in memory");
  assert.equal(ids(again.changesOf((await again.meta(1))!)), want, "read from LevelDB part by part");
  assert.equal(ids(again.changesOf((await again.meta(2))!)), [501, 502, 503]);
});

test("a batch larger than the cache is never held whole: memory stays bounded while it is written, and it reads back", async () => {
  db = await openLevel(tempDir("ferry-spool-"));
  const spool = new Spool(db);
  await spool.load();
  await writeBatch(spool, 1, 2, 10);
  const small = spool.cachedBytes;
  assert.ok(small > 0, "small batches are cached");
  // 24 parts of ~1 MB: three times the cache. The cache never holds more than one batch's allowance.
  const perPart = 9000;
  let peak = 0;
  const orig = spool.writeUnsynced.bind(spool);
  spool.writeUnsynced = async (r) => {
    await orig(r);
    peak = Math.max(peak, spool.cachedBytes);
  };
  const big = await writeBatch(spool, 2, 24, perPart, 100, 10_000);
  assert.ok(big.bytes > 20 * 1024 * 1024, `the batch is ${big.bytes} bytes`);
  assert.ok(peak <= 8 * 1024 * 1024 + small + 1024 * 1024, `at most the cache's allowance while written (peak ${peak})`);
  assert.is(spool.cachedBytes, 0, "the large batch is not cached once complete");
  let n = 0;
  let expect = 10_000;
  for (const c of spool.changesOf(big)) {
    assert.is(JSON.parse(c[3]!)[0], expect++);
    n++;
  }
  assert.is(n, 24 * perPart);
  // Batches after it are cached again, and reads across the two work.
  const m3 = await writeBatch(spool, 3, 1, 2, 10, 900_000);
  assert.ok(spool.cachedBytes > 0);
  assert.equal(ids(spool.changesOf(m3)), [900_000, 900_001]);
  const served = await spool.read(2, 22, 64 * 1024 * 1024);
  assert.equal(served.map((r) => `${r.lsn}/${r.part}`), ["2/22", "2/23", "3/0"]);
});

test("a part missing from the spool is a retryable error (INTERNAL): the apply transaction rolls back, nothing half-applied", async () => {
  db = await openLevel(tempDir("ferry-spool-"));
  const spool = new Spool(db);
  await spool.load();
  await writeBatch(spool, 1, 1, 1);
  const m = await writeBatch(spool, 2, 3, 5, 10, 100);
  await db.close();
  db = await openLevel(tempDir("ferry-spool-"));
  const fresh = new Spool(db);
  await fresh.load();
  assert.throws(() => ids(fresh.changesOf(m)), (e: { code?: string }) => e.code === "INTERNAL");
});


test("pruneOver deletes the oldest batches while those after them hold more than the cap, never past upto nor the head", async () => {
  db = await openLevel(tempDir("ferry-spool-"));
  const spool = new Spool(db);
  await spool.load();
  assert.is(await spool.pruneOver(0), 0, "an empty spool");
  const metas: BatchMeta[] = [];
  for (let lsn = 1; lsn <= 10; lsn++) metas.push(await writeBatch(spool, lsn, 1, 10, 10, 1000 + lsn * 10));
  const size = metas[0].bytes;
  assert.ok(metas.every((m) => m.bytes === size), "batches of one size");
  const head = metas[9];
  // Batch L goes while the batches after it hold more than the cap: head.cum - cum(L) > cap.
  const expect = (cap: number, upto: number) => Math.min(upto, 9, Math.max(0, ...metas.filter((m) => head.cum - m.cum > cap).map((m) => m.lsn)));
  assert.is(await spool.pruneOver(head.cum, 10), 0, "all of it fits");
  assert.is(spool.first, 1);
  assert.is(await spool.pruneOver(size * 7, 2), expect(size * 7, 2), "not past upto");
  assert.is(spool.first, 3);
  assert.is(await spool.pruneOver(size * 4), expect(size * 4, 10));
  assert.is(spool.first, 6, "five batches stay: the four after the first hold 4 × size, within the cap");
  assert.equal(ids(spool.changesOf((await spool.meta(6))!)), Array.from({ length: 10 }, (_, i) => 1060 + i), "what stays reads back");
  assert.is(await spool.meta(5), null, "what went is gone");
  assert.is(await spool.pruneOver(0), 9, "a cap of 0 keeps only the head");
  assert.equal([spool.first, spool.head], [10, 10]);
  assert.is(await spool.pruneOver(0), 0, "the head batch always stays");
});

test.run();
