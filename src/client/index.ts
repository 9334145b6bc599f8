/**
 * ferry's client library (`import { connect } from "ferry"`): SQL on the active master with the
 * same retries, keys and errors as `ferry sql --wait`, following the master lease across failovers.
 */
import { loadConfig } from "../config.js";
import { UsageError } from "../errors.js";
import { openClient } from "./client.js";
import type { MasterView } from "./master.js";
import { runSql, type SqlReply } from "./sql.js";

export { FerryError } from "../errors.js";
export type { ErrorCode } from "../errors.js";
export type { MasterView } from "./master.js";

export interface ConnectOptions {
  /** NATS server URL(s); credentials written in a URL (`nats://user:pass@host:4222`) are used. Default nats://127.0.0.1:4222. */
  servers?: string | string[];
  /** The cluster's name (default "ferry"). */
  cluster?: string;
  user?: string;
  pass?: string;
  token?: string;
  /** A NATS credentials file (NKey/JWT). */
  credsFile?: string;
  tls?: { ca?: string; cert?: string; key?: string };
  /** How long a statement is retried while no master answers or a failover runs (default 10000 ms). */
  waitMs?: number;
  /** How long one attempt waits for the master's answer (default: nats.requestTimeoutMs + replication.syncTimeoutMs). */
  timeoutMs?: number;
}

/** One statement's outcome: rows as objects keyed by column (a query), or the count of changed rows. */
export interface Result<Row = Record<string, unknown>> {
  rows: Row[];
  columns: string[];
  changes: number;
  /** Where the master sequenced the transaction, and who acknowledged it. */
  lsn: number;
  epoch: number;
  node: string;
}

export type Statement = string;

export type FailoverListener = (e: { from: MasterView | null; to: MasterView | null }) => void;

export interface Ferry {
  /** One statement (with `?` or `$1` parameters as the repository takes them), as one transaction. */
  sql<Row = Record<string, unknown>>(text: string, params?: unknown[] | Record<string, unknown>): Promise<Result<Row>>;
  /** Several statements as one transaction: every one commits, or none. */
  transaction(statements: Statement[]): Promise<Result[]>;
  /** The master lease moved: another node, or a new epoch (failover or switchover). */
  on(event: "failover", listener: FailoverListener): void;
  close(): Promise<void>;
}

export async function connect(opts: ConnectOptions = {}): Promise<Ferry> {
  const flags: Record<string, unknown> = {};
  if (opts.servers !== undefined) flags["nats.servers"] = Array.isArray(opts.servers) ? opts.servers : [opts.servers];
  if (opts.cluster !== undefined) flags.cluster = opts.cluster;
  if (opts.user !== undefined) flags["nats.user"] = opts.user;
  if (opts.pass !== undefined) flags["nats.pass"] = opts.pass;
  if (opts.token !== undefined) flags["nats.token"] = opts.token;
  if (opts.credsFile !== undefined) flags["nats.credsFile"] = opts.credsFile;
  for (const [k, v] of Object.entries(opts.tls ?? {})) flags[`nats.tls.${k}`] = v;
  // The application's options alone: no config file or FERRY_* variable of the process.
  const { config } = loadConfig({ env: {}, flags, file: null });
  const c = await openClient(config, "ferry-client");
  const waitMs = opts.waitMs ?? 10_000;
  const listeners: FailoverListener[] = [];
  const master = await c.master();
  master?.onChange((to, from) => {
    if (from) for (const l of listeners) l({ from, to });
  });
  const run = (text: string, params?: unknown) => runSql(c, text, params, waitMs, opts.timeoutMs);
  return {
    async sql<Row>(text: string, params?: unknown[] | Record<string, unknown>) {
      const reply = await run(text, params);
      return toResult<Row>(reply, reply.results.length - 1);
    },
    async transaction(statements: Statement[]) {
      if (statements.length === 0) throw new UsageError("a transaction needs at least one statement");
      const reply = await run(statements.map((s) => s.trim().replace(/;+$/, "")).join(";\n"));
      return reply.results.map((_, i) => toResult(reply, i));
    },
    on(event: "failover", listener: FailoverListener) {
      if (event !== "failover") throw new UsageError(`no event "${String(event)}": the client emits "failover"`);
      listeners.push(listener);
    },
    close: () => c.close(),
  };
}

function toResult<Row>(reply: SqlReply, i: number): Result<Row> {
  const r = reply.results[i];
  const columns = r?.columns ?? [];
  const rows = (r?.rows ?? []).map((values) => Object.fromEntries(columns.map((col, k) => [col, values[k]])) as Row);
  return { rows, columns, changes: r?.changes ?? 0, lsn: reply.lsn, epoch: reply.epoch, node: reply.node };
}
