/** `ferry sql "SQL"`: a statement or a ;-separated script, as one transaction on the active master. */
import { randomUUID } from "node:crypto";
import { Command } from "commander";
import Table from "cli-table3";
import type { Client } from "../client/client.js";
import { asFerryError, fromWire, TimeoutError, UsageError, type FerryError } from "../errors.js";
import type { SqlRequest } from "../nats/messages.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import type { SqlResult } from "../storage/repository/types.js";
import { addGlobalOptions, action, allOpts, printJson, withClient } from "./common.js";

export interface SqlReply {
  epoch: number;
  lsn: number;
  node: string;
  results: SqlResult[];
}

/** Errors after which the write may be retried under its key: it either did not run or is recorded. */
const RETRIED_CODES = new Set(["NO_ACTIVE_MASTER", "FENCED", "SYNC_REPLICAS_TIMEOUT", "TIMEOUT"]);

/** The answer leaves open whether the write committed (details.committed: it may have, e.g. a connection lost in COMMIT). */
const mayHaveCommitted = (e: FerryError) => e.code === "TIMEOUT" || e.code === "SYNC_REPLICAS_TIMEOUT" || e.details?.committed === true;

/**
 * Sends SQL to whichever node holds the master lease. While waitMs lasts it retries whatever did
 * not end in a definite answer: no master answered, a master refused or lost its lease, the answer
 * did not come in time. Every attempt carries the same key, and a master that holds the write
 * (it ran it, or received it replicated) answers from its record, so a retry never runs it twice.
 */
export async function runSql(c: Client, sql: string, params: unknown, waitMs = 0, timeoutMs?: number): Promise<SqlReply> {
  const deadline = Date.now() + waitMs;
  const id = randomUUID();
  // The first attempt that may have committed: a later "not committed" speaks only for itself.
  let unsure: FerryError | null = null;
  for (;;) {
    try {
      const timeout = timeoutMs ?? c.config.nats.requestTimeoutMs + c.config.replication.syncTimeoutMs;
      return await call<SqlReply>(c.nc, ENDPOINTS.sql, c.subj.sql, { sql, params: params as SqlRequest["params"], id }, { timeoutMs: timeout, peer: "the master" });
    } catch (err) {
      const e = failureOf(err);
      if (mayHaveCommitted(e)) unsure ??= e;
      if (!(RETRIED_CODES.has(e.code) || mayHaveCommitted(e)) || Date.now() >= deadline) {
        if (!unsure || mayHaveCommitted(e)) throw e;
        const w = unsure.toWire();
        throw fromWire({ ...w, message: `${w.message}; retried until: ${e.message}` });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** A write whose answer did not come in time may have committed: say so. */
function failureOf(err: unknown): FerryError {
  const e = asFerryError(err);
  return e.code === "TIMEOUT" ? new TimeoutError(`${e.message}; the outcome is unknown`, { cause: err }) : e;
}

export function sqlCommand(): Command {
  const cmd = new Command("sql")
    .description("run SQL on the active master (a ;-separated script runs as one transaction)")
    .argument("<sql>", "the statement or script")
    .option("--params <json>", "parameters for a single statement: a JSON array or object")
    .option("--wait <ms>", "retry while no master answers, up to this long", "0")
    .option("--timeout <ms>", "how long to wait for the master's answer (a long transaction needs more)", "60000")
    .option("--json", "print the reply as JSON");
  addGlobalOptions(cmd);
  return cmd.action(
    action(async (sql: string) => {
      const opts = allOpts(cmd);
      let params: unknown;
      if (opts.params !== undefined) {
        try {
          params = JSON.parse(String(opts.params));
        } catch {
          throw new UsageError("--params is not JSON", `give a JSON array or object, e.g. --params '[1, "a"]'`);
        }
        if (typeof params !== "object" || params === null) throw new UsageError("--params must be a JSON array or object");
      }
      const wait = Number(opts.wait);
      if (!Number.isFinite(wait) || wait < 0) throw new UsageError("--wait must be a number of milliseconds");
      const timeout = Number(opts.timeout);
      if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError("--timeout must be a number of milliseconds");
      const reply = await withClient(opts, (c) => runSql(c, sql, params, wait, timeout));
      if (opts.json) return printJson(reply);
      for (const r of reply.results) {
        if (r.columns) {
          const t = new Table({ head: r.columns, style: { head: [], border: [] } });
          for (const row of r.rows ?? []) t.push(row.map(show));
          process.stdout.write(`${t.toString()}\n(${r.rows?.length ?? 0} rows)\n`);
        } else process.stdout.write(`${r.changes} row${r.changes === 1 ? "" : "s"} changed\n`);
      }
      process.stderr.write(`committed on ${reply.node} at LSN ${reply.lsn}, epoch ${reply.epoch}\n`);
    }),
  );
}

function show(v: unknown): string {
  if (v === null) return "NULL";
  if (typeof v === "object" && v && "$blob" in v) return `x'${(v as { $blob: string }).$blob}'`;
  return String(v);
}
