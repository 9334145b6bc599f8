/**
 * Sending SQL to the active master, as `ferry sql`, the library, the chaos workload, the demo and
 * the benches do. A write follows the `master` lease: it is addressed to the holder of an epoch,
 * and when the lease moves while it is in flight it is sent again at once, under the same key, to
 * the new holder. A key's write runs at most once on any master (a master that holds the key, run
 * or replicated, answers from its record), so a retry never doubles it.
 */
import { randomUUID } from "node:crypto";
import { ClusterError, asFerryError, fromWire, TimeoutError, type FerryError } from "../errors.js";
import type { SqlRequest } from "../nats/messages.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import type { SqlResult } from "../storage/repository/types.js";
import type { Client } from "./client.js";
import type { MasterFollower, MasterView } from "./master.js";

export interface SqlReply {
  epoch: number;
  lsn: number;
  node: string;
  results: SqlResult[];
}

/** Errors after which the write may be retried under its key: it either did not run or is recorded. */
const RETRIED_CODES = new Set(["NO_ACTIVE_MASTER", "NOT_MASTER", "FENCED", "SYNC_REPLICAS_TIMEOUT", "TIMEOUT"]);

/** The answer leaves open whether the write committed (details.committed: it may have, e.g. a connection lost in COMMIT). */
const mayHaveCommitted = (e: FerryError) => e.code === "TIMEOUT" || e.code === "SYNC_REPLICAS_TIMEOUT" || e.details?.committed === true;

/** How long to wait before asking again when nobody serves SQL yet (a node promoting itself). */
const RETRY_MS = 50;

const abandoned: unique symbol = Symbol("abandoned");

/**
 * Sends SQL to whichever node holds the master lease. While waitMs lasts it retries whatever did
 * not end in a definite answer: no master answered, a master refused or lost its lease, the answer
 * did not come in time, the lease moved while the attempt was in flight. When every attempt that
 * may have committed was followed only by failures, the error says the outcome is unknown.
 */
export async function runSql(c: Client, sql: string, params: unknown, waitMs = 0, timeoutMs?: number): Promise<SqlReply> {
  const deadline = Date.now() + waitMs;
  const id = randomUUID();
  const timeout = timeoutMs ?? c.config.nats.requestTimeoutMs + c.config.replication.syncTimeoutMs;
  const master = await c.master();
  // The first attempt that may have committed: a later "not committed" speaks only for itself.
  let unsure: FerryError | null = null;
  for (;;) {
    const holder = master?.current ?? null;
    const body = { sql, params: params as SqlRequest["params"], id };
    let e: FerryError;
    try {
      return master ? await followed(c, master, holder, body, timeout) : await call<SqlReply>(c.nc, ENDPOINTS.sql, c.subj.sql, body, { timeoutMs: timeout, peer: "the master" });
    } catch (err) {
      e = failureOf(err);
    }
    if (mayHaveCommitted(e)) unsure ??= e;
    if (!(RETRIED_CODES.has(e.code) || mayHaveCommitted(e)) || Date.now() >= deadline) {
      if (!unsure || mayHaveCommitted(e)) throw e;
      const w = unsure.toWire();
      throw fromWire({ ...w, message: `${w.message}; retried until: ${e.message}` });
    }
    if (e.details?.abandoned) continue;
    // Until the lease moves, or a little while: a new master serves SQL once it has promoted itself.
    const moved = master?.changed(holder);
    await Promise.race([new Promise((r) => setTimeout(r, RETRY_MS)), moved?.promise]);
    moved?.cancel();
  }
}

/** One attempt at the lease holder: abandoned (TIMEOUT, details.abandoned) as soon as the lease moves. */
async function followed(c: Client, master: MasterFollower, holder: MasterView | null, body: SqlRequest, timeoutMs: number): Promise<SqlReply> {
  if (!holder) throw new ClusterError("NO_ACTIVE_MASTER", "no node holds the master lease", { hint: "start a master (ferry start --role master ...) or wait for failover" });
  const moved = master.changed(holder);
  try {
    const attempt = call<SqlReply>(c.nc, ENDPOINTS.nodeSql, c.subj.node(holder.node).sql, { ...body, epoch: holder.epoch }, { timeoutMs, peer: `master ${holder.node}` });
    const first = await Promise.race([attempt, moved.promise.then(() => abandoned)]);
    if (first !== abandoned) return first as SqlReply;
    attempt.catch(() => {});
    const now = master.current;
    throw new TimeoutError(
      `the master lease moved from ${holder.node} (epoch ${holder.epoch}) to ${now ? `${now.node} (epoch ${now.epoch})` : "nobody"} while the write was in flight; the outcome of that attempt is unknown`,
      { details: { abandoned: true } },
    );
  } finally {
    moved.cancel();
  }
}

/** A write whose answer did not come in time may have committed: say so. */
function failureOf(err: unknown): FerryError {
  const e = asFerryError(err);
  return e.code === "TIMEOUT" && !e.details?.abandoned ? new TimeoutError(`${e.message}; the outcome is unknown`, { cause: err }) : e;
}
