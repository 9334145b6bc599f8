/**
 * src/nats/protocol.ts, rpc.ts and inventory.ts: the table's subjects are distinct and the
 * README's table is the one the table prints; call() and serve() against a real nats-server.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import pino from "pino";
import { ClusterError, FerryError } from "../../src/errors.js";
import { decodeFrame, encodeFrame } from "../../src/nats/codec.js";
import { ENDPOINTS, PUBLISHED, RECORDS } from "../../src/nats/protocol.js";
import { TABLE_END, TABLE_START, inventory, markdownTable } from "../../src/nats/inventory.js";
import { call, callFrame, serve } from "../../src/nats/rpc.js";
import { subjects } from "../../src/nats/subjects.js";
import { cleanup, natsServer } from "../helpers/procs.js";

let nc: NatsConnection | null = null;
const log = pino({ level: "silent" });
const s = subjects("t");

test.after(async () => {
  await nc?.close();
  await cleanup();
});

async function conn(): Promise<NatsConnection> {
  if (!nc) nc = await connect({ servers: (await natsServer()).url });
  return nc;
}

async function rejects(p: Promise<unknown>): Promise<FerryError> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, FerryError);
    return err as FerryError;
  }
  throw new Error("expected a rejection");
}

test("every subject and bucket appears once, in ferry's namespace", () => {
  const items = inventory("t");
  assert.is(items.length, Object.keys(ENDPOINTS).length + PUBLISHED.length + RECORDS.length);
  assert.is(new Set(items.map((i) => i.name)).size, items.length);
  for (const i of items) assert.ok(i.name.startsWith("ferry.t.") || i.name.startsWith("ferry_t_"), i.name);
});

test("the README's table of subjects and buckets is the one the protocol table prints (npm run docs)", () => {
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  const start = readme.indexOf(TABLE_START);
  const end = readme.indexOf(TABLE_END);
  assert.ok(start >= 0 && end > start, "the README marks its table");
  assert.fixture(readme.slice(start + TABLE_START.length, end).trim(), markdownTable());
});

test("call: nobody serving is the endpoint's absent code with its hint; the nats.js error is the cause", async () => {
  const c = await conn();
  const e = await rejects(call(c, ENDPOINTS.sql, s.sql, { sql: "SELECT 1" }, { timeoutMs: 2000 }));
  assert.instance(e, ClusterError);
  assert.is(e.code, "NO_ACTIVE_MASTER");
  assert.is(e.message, "no active master");
  assert.match(e.hint ?? "", "start a master");
  assert.ok(e.cause, "keeps the nats.js error");
  const named = await rejects(call(c, ENDPOINTS.resync, s.node("s9").resync, {}, { timeoutMs: 2000, peer: "node s9" }));
  assert.is(named.code, "NOT_FOUND");
  assert.is(named.message, "node s9 does not answer (the node is not running)");
});

test("call: a subscriber that never answers is a TIMEOUT naming the peer", async () => {
  const c = await conn();
  const sub = c.subscribe(s.switchover, { callback: () => {} });
  try {
    const e = await rejects(call(c, ENDPOINTS.switchover, s.switchover, { to: "s1", timeoutMs: 10 }, { timeoutMs: 200, peer: "the master" }));
    assert.is(e.code, "TIMEOUT");
    assert.is(e.message, "the master did not answer within 200 ms");
  } finally {
    sub.unsubscribe();
  }
});

test("serve: answers JSON bodies and frames, refuses a malformed request, and answers a thrown error with its code", async () => {
  const c = await conn();
  const subs = [
    serve(c, log, ENDPOINTS.resync, s.node("n1").resync, () => ({ node: "n1", started: true })),
    serve(c, log, ENDPOINTS.control, s.node("n1").control, (req) => {
      if (req.op === "promote") throw new ClusterError("NOT_MASTER", "n1 cannot be promoted while active");
      return { op: req.op };
    }),
    serve(c, log, ENDPOINTS.changes, s.node("n1").changes, (req) => encodeFrame({ ok: true, lsn: req.lsn, len: 2 }, [new Uint8Array([1, 2])])),
  ];
  try {
    assert.equal(await call(c, ENDPOINTS.resync, s.node("n1").resync, {}, { timeoutMs: 2000 }), { ok: true, node: "n1", started: true });
    // An empty body is {} (nats req SUBJECT ''), so the empty resync request is well formed.
    assert.equal((await c.request(s.node("n1").resync, new Uint8Array(0), { timeout: 2000 })).json(), { ok: true, node: "n1", started: true });
    const refused = await rejects(call(c, ENDPOINTS.control, s.node("n1").control, { op: "promote" }, { timeoutMs: 2000 }));
    assert.instance(refused, ClusterError);
    assert.is(refused.code, "NOT_MASTER");
    assert.is(refused.message, "n1 cannot be promoted while active");
    const bad = await rejects(call(c, ENDPOINTS.control, s.node("n1").control, { op: "explode" } as never, { timeoutMs: 2000 }));
    assert.is(bad.code, "MALFORMED_MESSAGE");
    const frame = await callFrame(c, ENDPOINTS.changes, s.node("n1").changes, { lsn: 7, part: 0, maxBytes: 100 }, { timeoutMs: 2000 });
    const { header, payloads } = decodeFrame<{ lsn: number; len: number }>(s.node("n1").changes, frame, (h) => [h.len]);
    assert.is(header.lsn, 7);
    assert.equal([...payloads[0]], [1, 2]);
    const badFrame = await rejects(callFrame(c, ENDPOINTS.changes, s.node("n1").changes, { lsn: 0, part: 0, maxBytes: 100 }, { timeoutMs: 2000 }));
    assert.is(badFrame.code, "MALFORMED_MESSAGE", "a frame endpoint's error reply is thrown too");
  } finally {
    for (const sub of subs) sub.unsubscribe();
  }
});

test("call: a reply with a schema in the table (ping answers a heartbeat) must parse; its role's own fields are kept", async () => {
  const c = await conn();
  const subs = [
    serve(c, log, ENDPOINTS.ping, s.ping("n1"), () => ({ node: "n1", role: "slave", appliedLsn: 4, replica: "streaming" })),
    serve(c, log, ENDPOINTS.ping, s.ping("n2"), () => ({ node: "n2", appliedLsn: "4" })),
  ];
  try {
    assert.equal(await call(c, ENDPOINTS.ping, s.ping("n1"), {}, { timeoutMs: 2000 }), { ok: true, node: "n1", role: "slave", appliedLsn: 4, replica: "streaming" });
    const bad = await rejects(call(c, ENDPOINTS.ping, s.ping("n2"), {}, { timeoutMs: 2000 }));
    assert.is(bad.code, "MALFORMED_MESSAGE");
    assert.match(bad.message, "appliedLsn");
  } finally {
    for (const sub of subs) sub.unsubscribe();
  }
});

test.run();
