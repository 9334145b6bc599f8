/** src/nats/codec.ts: JSON messages, binary frames, and replies that rebuild typed errors. */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { z } from "zod";
import { decodeFrame, decodeJson, encodeFrame, encodeJson, errorReply, isJsonReply, okReply, unwrapReply } from "../../src/nats/codec.js";
import {
  ClusterError,
  FerryError,
  MalformedMessageError,
  ReplicationError,
  RepositoryError,
  fromWire,
} from "../../src/errors.js";

const S = "ferry.t.node.m1.pull";
const enc = new TextEncoder();
const bytes = (...xs: number[]) => Uint8Array.from(xs);

function throwsMalformed(fn: () => unknown, reason: string) {
  try {
    fn();
  } catch (err) {
    assert.instance(err, MalformedMessageError);
    assert.is((err as FerryError).code, "MALFORMED_MESSAGE");
    assert.match((err as Error).message, `malformed message on ${S}`);
    assert.match((err as Error).message, reason);
    return;
  }
  assert.unreachable(`expected MalformedMessageError (${reason})`);
}

type H = { lens: number[]; tag?: string };
const lengths = (h: H) => h.lens;

test("frames round-trip: header and payloads, including empty payloads and none", () => {
  const payloads = [bytes(1, 2, 3), bytes(), enc.encode('[["t","I",null,"[1]"]]')];
  const f = encodeFrame({ lens: payloads.map((p) => p.length), tag: "é" }, payloads);
  const out = decodeFrame<H>(S, f, lengths);
  assert.equal(out.header, { lens: [3, 0, payloads[2].length], tag: "é" });
  assert.equal(out.payloads.map((p) => [...p]), payloads.map((p) => [...p]));
  const none = decodeFrame<H>(S, encodeFrame({ lens: [] }, []), lengths);
  assert.equal(none.payloads, []);
});

test("a frame inside a larger buffer (non-zero byteOffset) decodes", () => {
  const f = encodeFrame({ lens: [2] }, [bytes(9, 8)]);
  const big = new Uint8Array(f.length + 10);
  big.set(f, 7);
  const view = big.subarray(7, 7 + f.length);
  const out = decodeFrame<H>(S, view, lengths);
  assert.equal([...out.payloads[0]], [9, 8]);
});

test("a frame is not mistaken for a JSON reply, and a JSON reply is recognised", () => {
  assert.not.ok(isJsonReply(encodeFrame({ lens: [] }, [])));
  assert.ok(isJsonReply(encodeJson({ ok: false, error: { code: "FENCED", message: "x" } })));
  assert.not.ok(isJsonReply(bytes()));
});

test("truncated frames are malformed", () => {
  throwsMalformed(() => decodeFrame<H>(S, bytes(0, 0), lengths), "frame too short");
  const f = encodeFrame({ lens: [4] }, [bytes(1, 2, 3, 4)]);
  throwsMalformed(() => decodeFrame<H>(S, f.subarray(0, 6), lengths), "header overruns");
  throwsMalformed(() => decodeFrame<H>(S, f.subarray(0, f.length - 1), lengths), "payload overruns");
});

test("a header length beyond the message is malformed", () => {
  const f = encodeFrame({ lens: [] }, []);
  new DataView(f.buffer).setUint32(0, 0xffffffff);
  throwsMalformed(() => decodeFrame<H>(S, f, lengths), "header overruns");
});

test("payload lengths that are negative or not integers are malformed", () => {
  for (const lens of [[-1], [1.5], [Number.NaN]]) {
    const f = encodeFrame({ lens: [0] }, []);
    throwsMalformed(() => decodeFrame<H>(S, f, () => lens), "payload overruns");
  }
});

test("a frame header that is not JSON is malformed", () => {
  const h = enc.encode("{nope");
  const f = new Uint8Array(4 + h.length);
  new DataView(f.buffer).setUint32(0, h.length);
  f.set(h, 4);
  throwsMalformed(() => decodeFrame<H>(S, f, lengths), "frame header is not JSON");
});

test("decodeJson: valid bodies parse; non-JSON and wrong shapes are malformed and name the field", () => {
  const schema = z.object({ lsn: z.number().int(), node: z.string() });
  assert.equal(decodeJson(S, encodeJson({ lsn: 3, node: "s1" }), schema), { lsn: 3, node: "s1" });
  throwsMalformed(() => decodeJson(S, enc.encode("not json"), schema), "not JSON");
  throwsMalformed(() => decodeJson(S, bytes(0xff, 0xfe), schema), "not JSON");
  throwsMalformed(() => decodeJson(S, encodeJson({ lsn: "3", node: "s1" }), schema), "lsn:");
  throwsMalformed(() => decodeJson(S, encodeJson([1]), schema), "body:");
});

test("unwrapReply: ok replies give the body", () => {
  assert.equal(unwrapReply<{ ok: true; lsn: number }>(S, encodeJson({ ok: true, lsn: 5 })), { ok: true, lsn: 5 });
});

test("unwrapReply rebuilds the peer's typed error with code, message, hint and details", () => {
  const cases: [string, typeof FerryError][] = [
    ["BACKLOG_EXCEEDED", ReplicationError],
    ["NEEDS_RESYNC", ReplicationError],
    ["SNAPSHOT_REQUIRED", ReplicationError],
    ["SCHEMA_MISMATCH", RepositoryError],
    ["REPO_UNAVAILABLE", RepositoryError],
    ["SQL_ERROR", RepositoryError],
    ["FENCED", ClusterError],
    ["NO_ACTIVE_MASTER", ClusterError],
    ["STALE_EPOCH", ClusterError],
    ["TIMEOUT", FerryError],
  ];
  for (const [code, Cls] of cases) {
    const wire = { code, message: `m-${code}`, hint: "h", details: { lsn: 4 } };
    try {
      unwrapReply(S, encodeJson({ ok: false, error: wire }));
      assert.unreachable("should throw");
    } catch (err) {
      assert.instance(err, Cls, code);
      assert.instance(err, FerryError);
      const e = err as FerryError;
      assert.is(e.code, code);
      assert.is(e.message, `m-${code}`);
      assert.is(e.hint, "h");
      assert.equal(e.details, { lsn: 4 });
    }
  }
});

test("unwrapReply refuses replies with neither ok nor error, and non-JSON replies", () => {
  for (const body of [{}, { ok: "yes" }, { ok: false }, { ok: false, error: {} }, { ok: false, error: { message: "no code" } }, null, 3, []]) {
    throwsMalformed(() => unwrapReply(S, encodeJson(body)), "reply has neither ok nor error");
  }
  throwsMalformed(() => unwrapReply(S, enc.encode("<html>")), "reply is not JSON");
});

test("errorReply/okReply answer only when a reply is expected, and errorReply keeps the code", () => {
  const sent: Uint8Array[] = [];
  const msg = (reply?: string) => ({ reply, respond: (d: Uint8Array) => (sent.push(d), true) }) as never;
  okReply(msg("_INBOX.1"), { lsn: 2 });
  errorReply(msg("_INBOX.2"), new ReplicationError("BACKLOG_EXCEEDED", "too far behind", { hint: "resync" }));
  errorReply(msg("_INBOX.3"), new Error("plain"));
  okReply(msg(undefined), { lsn: 3 });
  errorReply(msg(undefined), new Error("nobody listens"));
  assert.is(sent.length, 3);
  assert.equal(unwrapReply(S, sent[0]), { ok: true, lsn: 2 });
  try {
    unwrapReply(S, sent[1]);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, ReplicationError);
    assert.is((err as FerryError).hint, "resync");
  }
  try {
    unwrapReply(S, sent[2]);
    assert.unreachable();
  } catch (err) {
    assert.is((err as FerryError).code, "INTERNAL");
    assert.is((err as Error).message, "plain");
  }
});

test("fromWire keeps unknown codes as plain FerryErrors", () => {
  const e = fromWire({ code: "NOT_FOUND", message: "no such task" });
  assert.is(e.constructor, FerryError);
  assert.is(e.code, "NOT_FOUND");
});

test.run();
