/**
 * A write workload through ferry's SQL service that records every request: when it was invoked,
 * its outcome (ok, failed, unknown), and the epoch and node of an acknowledgement. Used by the
 * integration tests and the chaos suite (scripts/chaos).
 */
import type { SqlReply } from "../../src/client/sql.js";

/** Anything that runs SQL on the active master (TestCluster, the chaos cluster). */
export interface SqlTarget {
  sql(sql: string, params?: unknown, waitMs?: number, timeoutMs?: number): Promise<SqlReply>;
  /** When the target closes, the writer stops (a failed test must not leave it running). */
  readonly isClosed?: boolean;
  closing?(fn: () => Promise<void>): void;
}

export type Outcome = "ok" | "failed" | "unknown";

export interface WriteRecord {
  id: number;
  invokedAt: number;
  doneAt: number;
  outcome: Outcome;
  /** For an acknowledged write: the epoch, node and LSN it was committed at. */
  epoch?: number;
  node?: string;
  lsn?: number;
  code?: string;
}

/** Codes after which the write certainly did not commit. */
const NOT_COMMITTED = new Set(["SQL_ERROR", "NO_ACTIVE_MASTER", "REPO_UNAVAILABLE", "USAGE", "MALFORMED_MESSAGE"]);

export function classify(err: unknown): { outcome: Outcome; code?: string } {
  const e = err as { code?: string; details?: { committed?: boolean } };
  // committed: the master may have committed it (lease lost after the commit, connection lost in COMMIT).
  if (e.details?.committed) return { outcome: "unknown", code: e.code };
  if (e.code === "FENCED") return { outcome: "failed", code: e.code };
  if (e.code && NOT_COMMITTED.has(e.code)) return { outcome: "failed", code: e.code };
  return { outcome: "unknown", code: e.code ?? (err as Error)?.name };
}

export interface WriterOpts {
  table?: string;
  who?: string;
  waitMs?: number;
  /** Each attempt's own timeout (default: the config's request + sync timeouts). */
  timeoutMs?: number;
  pauseMs?: number;
  /** The next id (default: 0, 1, 2, ... per writer); several writers can share one counter. */
  nextId?: () => number;
  /** The statement for an id (default: INSERT INTO <table>(id, who) VALUES (id, who)). */
  statement?: (id: number, who: string) => { sql: string; params?: unknown };
}

export function startWriter(cl: SqlTarget, opts: WriterOpts = {}) {
  const table = opts.table ?? "w";
  const who = opts.who ?? "w";
  const records: WriteRecord[] = [];
  let running = true;
  let next = 0;
  const nextId = opts.nextId ?? (() => next++);
  const statement = opts.statement ?? ((id: number): { sql: string; params?: unknown } => ({ sql: `INSERT INTO ${table}(id, who) VALUES (${id}, '${who}')` }));
  const done = (async () => {
    while (running && !cl.isClosed) {
      const id = nextId();
      const st = statement(id, who);
      const invokedAt = Date.now();
      try {
        const r = await cl.sql(st.sql, st.params, opts.waitMs ?? 15_000, opts.timeoutMs);
        records.push({ id, invokedAt, doneAt: Date.now(), outcome: "ok", epoch: r.epoch, node: r.node, lsn: r.lsn });
      } catch (err) {
        records.push({ id, invokedAt, doneAt: Date.now(), ...classify(err) });
      }
      if (opts.pauseMs) await new Promise((r) => setTimeout(r, opts.pauseMs));
    }
  })();
  const stop = async () => {
    running = false;
    await done;
  };
  cl.closing?.(stop);
  return { records, acked: () => records.filter((r) => r.outcome === "ok"), stop };
}

/** Ids of the rows of a table in a dump made by dumpFile. */
export function idsIn(dump: string, table = "w"): number[] {
  return dump
    .split("\n")
    .filter((l) => l.startsWith(`${table}|`))
    .map((l) => Number(l.split("|")[1].replace(/'/g, "")));
}
