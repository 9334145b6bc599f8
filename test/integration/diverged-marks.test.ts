/**
 * Diverged marks on a real JetStream KV: written by compare-and-set against the bucket as it was
 * when a compare began, so a repair that cleared a mark meanwhile is never undone.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { bucketSequence } from "../../src/nats/buckets.js";
import { clearDiverged, decodeDiverged, writeDiverged, LEASE_KEY, type DivergedRecord } from "../../src/nats/records.js";

let cl: TestCluster;
test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

const mark = (lsn: number): DivergedRecord => ({ node: "s1", master: "m1", lsn, at: Date.now(), rows: 1, tables: [{ table: "t", rows: 1, keys: ["[1]"] }] });

test("a mark found by a compare that began before a repair is not written back; one found after is", async () => {
  cl = await TestCluster.start();
  const kv = (await (await cl.client()).buckets()).leases;
  const read = async () => {
    const e = await kv.get(LEASE_KEY.diverged("s1"));
    return e?.operation === "PUT" ? decodeDiverged(e.value) : null;
  };
  // A first compare finds s1 different: written, though the key never existed.
  assert.ok(await writeDiverged(kv, mark(10), await bucketSequence(kv)));
  assert.is((await read())?.lsn, 10);
  // The next compare begins; a repair clears the mark while it runs; its old finding is not written.
  const since = await bucketSequence(kv);
  assert.ok(await clearDiverged(kv, "s1"), "the repair clears the mark");
  assert.is(await read(), null);
  assert.not.ok(await writeDiverged(kv, mark(20), since), "the compare that began before the repair does not mark again");
  assert.is(await read(), null);
  // A compare begun after the repair finds it again: written over the delete marker.
  assert.ok(await writeDiverged(kv, mark(30), await bucketSequence(kv)));
  assert.is((await read())?.lsn, 30);
  // A compare that found it clean, begun before another compare marked it, leaves the newer mark.
  const old = await bucketSequence(kv);
  assert.ok(await writeDiverged(kv, mark(40), await bucketSequence(kv)));
  assert.not.ok(await clearDiverged(kv, "s1", undefined, old));
  assert.is((await read())?.lsn, 40);
});

test.run();
