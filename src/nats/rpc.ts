/**
 * Requests and answers on the protocol's endpoints (protocol.ts): call() asks and turns what
 * nats.js throws into ferry's errors, serve() validates what it is asked and answers every failure
 * with the typed error. Nothing else in ferry calls `nc.request` or answers a request itself.
 */
import { errors, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { TimeoutError, asFerryError, errorOf, type FerryError } from "../errors.js";
import { decodeJson, encodeJson, errorReply, isJsonReply, okReply, parseAs, unwrapReply } from "./codec.js";
import type { Absent, Endpoint, ReplyKind } from "./protocol.js";

type RequestOf<E> = E extends Endpoint<infer R, ReplyKind> ? R : never;

export interface CallOptions {
  timeoutMs: number;
  /** Who is asked, for messages ("master m1", "collector c1"); the subject when not given. */
  peer?: string;
  /** What "nobody answers" means when the caller's role gives it another meaning than the endpoint's `absent`. */
  absent?: Absent;
}

/**
 * Sends a request to a JSON endpoint and returns the answer's body (typed by the caller). No
 * responders (nobody subscribes: the peer is not running, or not in the role that answers) becomes
 * the endpoint's `absent` code; no answer in time a TimeoutError; a permission the NATS user lacks
 * PERMISSION_DENIED; an error reply the peer's own typed error; a reply that does not parse with
 * the endpoint's reply schema (where it has one) MALFORMED_MESSAGE. The nats.js error is the `cause`.
 */
export async function call<T = Record<string, unknown>, Req = unknown>(
  nc: NatsConnection,
  endpoint: Endpoint<Req, "json" | "json+frame">,
  subject: string,
  body: Req,
  opts: CallOptions,
): Promise<T> {
  const reply = unwrapReply<T>(subject, await request(nc, endpoint, subject, body as object, opts));
  return endpoint.replySchema ? (parseAs(subject, reply, endpoint.replySchema) as T) : reply;
}

/** The same for an answer that is a frame (codec.ts): its bytes; an error reply is thrown as call() does. */
export async function callFrame<Req>(
  nc: NatsConnection,
  endpoint: Endpoint<Req, "frame" | "json+frame">,
  subject: string,
  body: Req,
  opts: CallOptions,
): Promise<Uint8Array> {
  const data = await request(nc, endpoint, subject, body as object, opts);
  if (isJsonReply(data)) unwrapReply(subject, data);
  return data;
}

/**
 * The answer's bytes as they came (a JSON body, an error reply or a frame), for a caller that
 * reads each itself; the body is checked by the server against the endpoint's schema.
 */
export async function request(nc: NatsConnection, endpoint: Endpoint, subject: string, body: object, opts: CallOptions): Promise<Uint8Array> {
  try {
    return (await nc.request(subject, encodeJson(body), { timeout: opts.timeoutMs })).data;
  } catch (err) {
    throw requestFailure(endpoint, subject, err, opts);
  }
}

function requestFailure(endpoint: Endpoint, subject: string, err: unknown, opts: CallOptions): FerryError {
  const peer = opts.peer ?? subject;
  const absent = opts.absent ?? endpoint.absent;
  const cause = (err as { cause?: unknown }).cause;
  if ((err instanceof errors.RequestError && err.isNoResponders()) || err instanceof errors.NoRespondersError) {
    return errorOf(absent.code, opts.peer ? `${opts.peer} does not answer (${absent.says})` : absent.says, { cause: err, hint: absent.hint });
  }
  if (err instanceof errors.TimeoutError || cause instanceof errors.TimeoutError) {
    return new TimeoutError(`${peer} did not answer within ${opts.timeoutMs} ms`, { cause: err });
  }
  if (err instanceof errors.PermissionViolationError || cause instanceof errors.PermissionViolationError) {
    return errorOf("PERMISSION_DENIED", `the NATS user may not ask ${subject}: ${(err as Error).message}`, {
      cause: err,
      hint: "grant the user publish permission on ferry's subjects and subscribe permission on _INBOX.> (README: NATS security)",
    });
  }
  return errorOf(absent.code, `${absent.says}: cannot reach ${peer}: ${(err as Error).message}`, { cause: err, hint: absent.hint });
}

/** What a handler answers: a JSON body (sent as `{ ok: true, ...body }`), or a frame's bytes. */
type Answer<E> = E extends Endpoint<unknown, "frame"> ? Uint8Array : E extends Endpoint<unknown, "json"> ? object : object | Uint8Array;

/**
 * Answers requests on `subject` with `handler`: the request is validated against the endpoint's
 * schema first (MALFORMED_MESSAGE otherwise), and anything the handler throws is answered as the
 * typed error and logged (INTERNAL as an error with its stack, a malformed request as a warning,
 * an expected refusal such as FENCED at debug).
 */
export function serve<E extends Endpoint>(
  nc: NatsConnection,
  log: Logger,
  endpoint: E,
  subject: string,
  handler: (req: RequestOf<E>, msg: Msg) => Promise<Answer<E>> | Answer<E>,
): Subscription {
  return nc.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return log.warn({ err: String(err), subject }, "subscription error");
      Promise.resolve()
        .then(() => handler(decodeJson(msg.subject, msg.data, endpoint.request) as RequestOf<E>, msg))
        .then((answer) => {
          if (answer instanceof Uint8Array) {
            if (msg.reply) msg.respond(answer);
          } else okReply(msg, answer);
        })
        .catch((e) => {
          const fe = asFerryError(e);
          if (fe.code === "INTERNAL") log.error({ subject, err: e }, `${endpoint.name} request failed`);
          else if (fe.code === "MALFORMED_MESSAGE") log.warn({ subject, err: fe.message }, "malformed request refused");
          else log.debug({ subject, code: fe.code, err: fe.message }, `${endpoint.name} request refused`);
          errorReply(msg, fe);
        });
    },
  });
}
