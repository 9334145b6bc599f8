/**
 * Message encoding. Control messages are JSON; the replication stream is a binary frame
 * (a JSON header followed by raw part bytes) so spooled batches are shipped without re-encoding.
 */
import type { Msg } from "@nats-io/transport-node";
import type { z } from "zod";
import { MalformedMessageError, asFerryError, fromWire, type WireError } from "../errors.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeJson(value: unknown): Uint8Array {
  return enc.encode(JSON.stringify(value));
}

/** Parses and validates a message body (an empty one is `{}`, as `nats req SUBJECT ''` sends it); anything else is a MalformedMessageError. */
export function decodeJson<T>(subject: string, data: Uint8Array, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = data.length === 0 ? {} : JSON.parse(dec.decode(data));
  } catch (err) {
    throw new MalformedMessageError(subject, "not JSON", err);
  }
  return parseAs(subject, value, schema);
}

/** A decoded body as `schema` parses it; MALFORMED_MESSAGE naming the first field that does not parse. */
export function parseAs<T>(subject: string, value: unknown, schema: z.ZodType<T>): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new MalformedMessageError(subject, `${i.path.join(".") || "body"}: ${i.message}`);
  }
  return parsed.data;
}

export type Reply<T> = ({ ok: true } & T) | { ok: false; error: WireError };

export function okReply<T extends object>(msg: Msg, body: T): void {
  if (msg.reply) msg.respond(encodeJson({ ok: true, ...body }));
}

export function errorReply(msg: Msg, err: unknown): void {
  if (msg.reply) msg.respond(encodeJson({ ok: false, error: asFerryError(err).toWire() }));
}

/** Unwraps a JSON reply: the body on success, the peer's typed error otherwise. */
export function unwrapReply<T>(subject: string, data: Uint8Array): T {
  let value: Reply<T>;
  try {
    value = JSON.parse(dec.decode(data));
  } catch (err) {
    throw new MalformedMessageError(subject, "reply is not JSON", err);
  }
  if (value && value.ok === true) return value as T;
  if (value && value.ok === false && value.error?.code) throw fromWire(value.error);
  throw new MalformedMessageError(subject, "reply has neither ok nor error");
}

/** Frame: u32 header length, header JSON, then the raw payloads whose lengths the header lists. */
export function encodeFrame(header: object, payloads: Uint8Array[]): Uint8Array {
  const h = enc.encode(JSON.stringify(header));
  const total = 4 + h.length + payloads.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  new DataView(out.buffer).setUint32(0, h.length);
  out.set(h, 4);
  let off = 4 + h.length;
  for (const p of payloads) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function decodeFrame<H>(subject: string, data: Uint8Array, lengths: (h: H) => number[]): { header: H; payloads: Uint8Array[] } {
  if (data.length < 4) throw new MalformedMessageError(subject, "frame too short");
  const hlen = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(0);
  if (4 + hlen > data.length) throw new MalformedMessageError(subject, "frame header overruns the message");
  let header: H;
  try {
    header = JSON.parse(dec.decode(data.subarray(4, 4 + hlen)));
  } catch (err) {
    throw new MalformedMessageError(subject, "frame header is not JSON", err);
  }
  const payloads: Uint8Array[] = [];
  let off = 4 + hlen;
  for (const len of lengths(header)) {
    if (!Number.isInteger(len) || len < 0 || off + len > data.length) {
      throw new MalformedMessageError(subject, "frame payload overruns the message");
    }
    payloads.push(data.subarray(off, off + len));
    off += len;
  }
  return { header, payloads };
}

/** A frame reply starts with its header length; a JSON (error) reply starts with "{". */
export function isJsonReply(data: Uint8Array): boolean {
  return data.length > 0 && data[0] === 0x7b;
}
