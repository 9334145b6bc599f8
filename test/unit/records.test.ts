/**
 * src/nats/records.ts: the KV records and the heartbeat decode only when their schema accepts
 * them (anything else is null, i.e. malformed), keep the fields a role adds, and every record
 * of the protocol table has a schema that accepts what ferry writes.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { KV } from "@nats-io/kv";
import { PUBLISHED, RECORDS } from "../../src/nats/protocol.js";
import { decodeLease, decodeMember, decodeTask, LEASE_KEY, readFailoverState } from "../../src/nats/records.js";

const bytes = (v: unknown) => new TextEncoder().encode(typeof v === "string" ? v : JSON.stringify(v));
const NOT_OBJECTS = ["null", "42", '"master"', "[1,2]", "true"];

const lease = { node: "n1", epoch: 3, instance: "i-1", role: "master", ts: 1700000000000, host: "h1", lsn: 12 };
const member = { node: "n1", role: "slave", state: "standby", host: "h1", instance: "i-1", pid: 7, ts: 1, appliedLsn: 5, spooledLsn: 6, needsResync: false, replica: "streaming" };
const task = { id: "t-1", db: "main", table: "t", mode: 2, dest: "/tmp/d", partitions: 4, columns: ["id"], key: ["id"], kinds: ["integer"], format: "parquet", createdAt: 1 };

test("a lease decodes with the fields its holder added", () => {
  assert.equal(decodeLease(bytes(lease)), lease);
  assert.equal(decodeLease(bytes({ node: "n2", epoch: 4, instance: "handover-from-i-1", from: "n1", ts: 2 }))?.from, "n1");
});

test("a lease that is missing, not JSON, not an object or of the wrong types is null", () => {
  for (const v of [null, undefined, new Uint8Array(0), bytes("{not json"), ...NOT_OBJECTS.map(bytes)]) assert.is(decodeLease(v), null);
  assert.is(decodeLease(bytes({ ...lease, epoch: "3" })), null, "epoch as a string");
  assert.is(decodeLease(bytes({ ...lease, epoch: 1.5 })), null, "a fractional epoch");
  assert.is(decodeLease(bytes({ ...lease, node: 1 })), null, "node as a number");
  const { instance: _, ...noInstance } = lease;
  assert.is(decodeLease(bytes(noInstance)), null, "no instance");
});

test("a heartbeat decodes with every status field of its role; only node is required", () => {
  assert.equal(decodeMember(bytes(member)), member);
  assert.equal(decodeMember(bytes({ node: "c1", role: "collector", source: null, cursors: 2 })), { node: "c1", role: "collector", source: null, cursors: 2 });
  assert.equal(decodeMember(bytes({ node: "w1" })), { node: "w1" });
});

test("a heartbeat that is not JSON, not an object, without a node or with a field of the wrong type is null", () => {
  for (const v of [bytes("{not json"), new Uint8Array(0), ...NOT_OBJECTS.map(bytes)]) assert.is(decodeMember(v), null);
  assert.is(decodeMember(bytes({ role: "slave" })), null, "no node");
  assert.is(decodeMember(bytes({ ...member, appliedLsn: "5" })), null, "appliedLsn as a string");
  assert.is(decodeMember(bytes({ ...member, needsResync: "no" })), null, "needsResync not a boolean");
  assert.is(decodeMember(bytes({ ...member, pid: null })), null, "pid null");
});

test("a task decodes, one recorded before formats and kinds existed too; another shape is null", () => {
  assert.equal(decodeTask(bytes(task)), task);
  const { kinds: _k, format: _f, ...legacy } = task;
  assert.equal(decodeTask(bytes({ ...legacy, mode: 0 })), { ...legacy, mode: 0 });
  assert.equal(decodeTask(bytes({ ...task, addedLater: { x: 1 } }))?.addedLater, { x: 1 });
  for (const bad of [{ ...task, mode: 3 }, { ...task, columns: "id" }, { ...task, partitions: 0 }, { ...task, dest: undefined }]) assert.is(decodeTask(bytes(bad)), null, JSON.stringify(bad));
  for (const v of [bytes("{not json"), ...NOT_OBJECTS.map(bytes)]) assert.is(decodeTask(v), null);
});

/** A leases bucket holding one value under `failover` (or none). */
const bucketWith = (value: Uint8Array | null, operation = "PUT") =>
  ({ get: async (key: string) => (key === LEASE_KEY.failover && value ? { operation, value } : null) }) as unknown as KV;

test("the failover count decodes; none, a deleted or a malformed one is a fresh count", async () => {
  const stored = { history: [1, 2], enabled: false, resetAt: 3, by: "w1" };
  assert.equal(await readFailoverState(bucketWith(bytes(stored))), stored);
  const fresh = { history: [], enabled: true };
  assert.equal(await readFailoverState(bucketWith(null)), fresh);
  assert.equal(await readFailoverState(bucketWith(bytes(stored), "DEL")), fresh);
  for (const bad of ["{not json", "[]", JSON.stringify({ history: ["1"], enabled: true }), JSON.stringify({ history: [], enabled: "yes" })]) {
    assert.equal(await readFailoverState(bucketWith(bytes(bad))), fresh, bad);
  }
});

test("the protocol table states a schema for every published body and every record, and they accept what ferry writes", () => {
  const bodies = new Map(PUBLISHED.map((p) => [p.name, p.body]));
  assert.equal([...bodies.keys()], ["heartbeat", "alert", "notify", "push", "resync progress"]);
  assert.ok(bodies.get("heartbeat")!.safeParse(member).success);
  const alert = { ts: new Date().toISOString(), cluster: "c", node: "w1", role: "watchdog", kind: "failover", severity: "critical", message: "m", data: { to: "n2" } };
  assert.ok(bodies.get("alert")!.safeParse(alert).success);
  assert.not.ok(bodies.get("alert")!.safeParse({ ...alert, severity: "loud" }).success);
  assert.ok(bodies.get("notify")!.safeParse({ node: "n1", epoch: 1, lsn: 9 }).success);
  const meta = { lsn: 9, epoch: 1, ts: 1, parts: 1, bytes: 40, cum: 400, firstId: 3, lastId: 5, fp: "ab", ddl: false };
  const push = { node: "n1", epoch: 1, head: 9, ack: false, records: [{ lsn: 9, part: 0, parts: 1, len: 40, meta }] };
  assert.ok(bodies.get("push")!.safeParse(push).success);
  assert.not.ok(bodies.get("push")!.safeParse({ ...push, records: [{ ...push.records[0], parts: 2 }] }).success, "only a batch of one part is pushed");
  assert.not.ok(bodies.get("push")!.safeParse({ ...push, records: [] }).success);
  assert.not.ok(bodies.get("push")!.safeParse({ ...push, records: [{ ...push.records[0], meta: { ...meta, fp: 1 } }] }).success);
  assert.ok(bodies.get("resync progress")!.safeParse({ node: "n2", master: "n1", phase: "copying", lsn: 4, totalRows: 10, rows: 5, table: "t" }).success);
  assert.ok(bodies.get("resync progress")!.safeParse({ node: "n2", master: "n1", phase: "failed", error: "gone" }).success);

  const [leases, members, tasks] = RECORDS.map((r) => r.values);
  assert.equal(leases.map((v) => v.keys), ["master, watchdog, synctool, collector.<host>", "failover", "diverged.<node>"]);
  assert.ok(leases[0].schema.safeParse(lease).success);
  assert.ok(leases[1].schema.safeParse({ history: [], enabled: true, resetAt: 1 }).success);
  const diverged = { node: "s1", master: "m1", lsn: 7, at: 1, rows: 2, tables: [{ table: "t", rows: 2, keys: ["[17]", "[600]"] }] };
  assert.ok(leases[2].schema.safeParse(diverged).success);
  assert.not.ok(leases[2].schema.safeParse({ ...diverged, tables: "t" }).success);
  assert.ok(members[0].schema.safeParse(member).success);
  assert.ok(tasks[0].schema.safeParse(task).success);
});

test.run();
