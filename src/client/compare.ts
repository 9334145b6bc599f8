/**
 * Compare and repair of live replicas (ferry compare, ferry repair). Every replica compared is
 * held first (it applies nothing new), then the master opens a read at an LSN, then each replica
 * opens its read once it has applied exactly that LSN: all reads show the same point of the
 * history while writes go on. The master cuts each table into chunks by key range; a replica
 * sums the same ranges; only chunks whose sums differ are read row by row.
 */
import { randomUUID } from "node:crypto";
import { ClusterError, ReplicationError, UsageError, asFerryError } from "../errors.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import type { CompareRequest, WireChunk } from "../nats/messages.js";
import { clearDiverged } from "../nats/records.js";
import type { ChunkSum, KeyedRow, KeyRange, TableColumns } from "../storage/repository/types.js";
import type { Client } from "./client.js";
import { readStatus } from "./status.js";

export type DiffKind = "missing" | "extra" | "changed";

/** A row that differs: its key image, what differs, and the two row images (null where absent). */
export interface RowDiff {
  key: string;
  kind: DiffKind;
  master: string | null;
  replica: string | null;
}

export interface TableReport {
  table: string;
  node: string;
  chunks: number;
  rows: number;
  differingChunks: number;
  diffs: RowDiff[];
  ms: number;
}

export interface CompareReport {
  master: string;
  lsn: number;
  epoch: number;
  tables: TableReport[];
  /** Replicas that could not be compared, and why. */
  errors: { node: string; code: string; message: string }[];
  identical: boolean;
  ms: number;
}

interface Begun {
  session: string;
  lsn: number;
  epoch: number;
  tables: TableColumns[];
}

/** Chunks per page: the master cuts this many, a replica sums their ranges (key images stay well within a NATS message). */
const RANGES_PER_REQUEST = 200;
/** A differing range of at most this many rows is read row by row; a larger one is cut into NARROW_PARTS. */
const NARROW_ROWS = 16;
const NARROW_PARTS = 16;
/** Rows written per repair request (one transaction each, at the same LSN). */
const REPAIR_ROWS_PER_REQUEST = 500;

export interface CompareOpts {
  node?: string;
  table?: string;
  /** Keep the replica held and its session open for a repair (one node only). */
  repair?: boolean;
  /** Ends the compare between pages (the sessions and holds are let go as on any end). */
  signal?: AbortSignal;
}

/**
 * Runs a compare. With `repair`, the replica stays held at the master's LSN and `use` is called
 * with the report and its session before the sessions end, so the rows are written at that LSN;
 * any replica's failure then fails the whole (a compare reports it and goes on).
 */
async function compareCluster(c: Client, opts: CompareOpts, use?: (report: CompareReport, replica: { node: string; session: string }) => Promise<void>): Promise<CompareReport> {
  const started = Date.now();
  const ask = (node: string, body: CompareRequest) =>
    call<Record<string, unknown>>(c.nc, ENDPOINTS.compare, c.subj.node(node).compare, body, { timeoutMs: c.config.compare.timeoutMs, peer: `node ${node}` });
  const status = await readStatus(c);
  const master = status.members.find((m) => m.state === "active" && m.up && (m.role === "master" || m.role === "slave"));
  if (!master) throw new ClusterError("NO_ACTIVE_MASTER", "no active master to compare with", { hint: "start a master, or wait for failover" });
  const masterNode = String(master.node);
  const nodes = status.members.filter((m) => m.up && m.node !== masterNode && (m.role === "master" || m.role === "slave")).map((m) => String(m.node));
  if (opts.node !== undefined) {
    if (opts.node === masterNode) throw new UsageError(`${opts.node} is the master; compare a replica with it`, "give --node a replica (ferry status lists them)");
    if (!nodes.includes(opts.node)) throw new ReplicationError("NOT_FOUND", `${opts.node} is not a running replica`, { hint: "ferry status lists the replicas" });
  }
  const targets = opts.node !== undefined ? [opts.node] : nodes;
  const holder = randomUUID();
  const errors: CompareReport["errors"] = [];
  const failed = (node: string, err: unknown) => {
    const e = asFerryError(err);
    if (opts.repair) throw e;
    errors.push({ node, code: e.code, message: e.message });
  };

  const held: string[] = [];
  for (const n of targets) {
    try {
      await ask(n, { op: "hold", holder });
      held.push(n);
    } catch (err) {
      failed(n, err);
    }
  }
  const sessions: { node: string; session: string }[] = [];
  let masterSession: string | null = null;
  try {
    const m = (await ask(masterNode, { op: "begin", holder, repair: false })) as unknown as Begun;
    masterSession = m.session;
    const begun = await Promise.all(
      held.map((n) =>
        ask(n, { op: "begin", holder, lsn: m.lsn, repair: opts.repair === true }).then(
          (r) => ({ node: n, session: String(r.session) }),
          (err) => (failed(n, err), null),
        ),
      ),
    );
    for (const b of begun) if (b) sessions.push(b);
    const tables = opts.table === undefined ? m.tables : m.tables.filter((t) => t.name === opts.table);
    if (opts.table !== undefined && tables.length === 0) throw new ReplicationError("NOT_FOUND", `the master has no table ${opts.table}`, { hint: "ferry sql 'SELECT name FROM ...' lists the tables" });
    const report: CompareReport = { master: masterNode, lsn: m.lsn, epoch: m.epoch, tables: [], errors, identical: true, ms: 0 };
    for (const t of tables) {
      const tStart = Date.now();
      const acc = new Map(sessions.map((s) => [s.node, { table: t.name, node: s.node, chunks: 0, rows: 0, differingChunks: 0, diffs: [] as RowDiff[], ms: 0 }]));
      let after: string | null = null;
      let read = 0;
      // Throttled, a page is a hundredth of a second's rows (one chunk at least): the reads come in
      // steps short beside a write's latency, and the workload never meets a burst of all nodes at once.
      const rate = c.config.compare.rowsPerSecond;
      const perPage = rate > 0 ? Math.max(1, Math.min(RANGES_PER_REQUEST, Math.floor(rate / 100 / c.config.compare.chunkRows))) : RANGES_PER_REQUEST;
      // The master cuts the next page while the replicas sum this one.
      let next = masterChunks(t.name, { after: null, upto: null }, c.config.compare.chunkRows, perPage);
      for (let done = false; !done; ) {
        const page = await next;
        // Here, where no read of the master's is under way that an end of its session would fail.
        opts.signal?.throwIfAborted();
        done = page.done;
        after = page.chunks[page.chunks.length - 1].upto;
        if (!done) {
          next = masterChunks(t.name, { after, upto: null }, c.config.compare.chunkRows, perPage);
          next.catch(() => {}); // awaited on the next turn; a compare that fails before then must not crash on it
        }
        await Promise.all(
          sessions.map(async (s) => {
            const into = acc.get(s.node);
            if (!into) return;
            try {
              await comparePage(s, t.name, page.chunks, into);
            } catch (err) {
              acc.delete(s.node);
              failed(s.node, err);
            }
          }),
        );
        read += page.chunks.reduce((n, ch) => n + ch.rows, 0);
        await pace(read, tStart);
      }
      for (const r of acc.values()) report.tables.push({ ...r, ms: Date.now() - tStart });
    }
    report.tables.sort((a, b) => a.table.localeCompare(b.table) || a.node.localeCompare(b.node));
    report.identical = errors.length === 0 && report.tables.every((r) => r.diffs.length === 0);
    for (const s of sessions) await use?.(report, s);
    report.ms = Date.now() - started;
    return report;

    /** The master's chunks of a range, rebuilt from their wire form. */
    async function masterChunks(table: string, range: KeyRange, chunkRows: number, maxChunks: number): Promise<{ chunks: ChunkSum[]; done: boolean }> {
      const r = (await ask(masterNode, { op: "chunks", session: m.session, table, chunkRows, maxChunks, ...range })) as unknown as { chunks: WireChunk[]; done: boolean };
      let from = range.after;
      const chunks = r.chunks.map(([upto, rows, sum]) => {
        const chunk = { after: from, upto, rows, sum };
        from = upto;
        return chunk;
      });
      return { chunks, done: r.done };
    }

    /** Which of the master's chunks differ on a replica, and how many rows each holds at most on either side. */
    async function differing(s: { node: string; session: string }, table: string, chunks: ChunkSum[]): Promise<{ chunk: ChunkSum; rows: number }[]> {
      const r = await ask(s.node, { op: "sums", session: s.session, table, after: chunks[0].after, bounds: chunks.map((ch) => ch.upto) });
      const theirs = r.sums as [number, string][];
      return chunks.flatMap((chunk, i) => (chunk.rows === theirs[i][0] && chunk.sum === theirs[i][1] ? [] : [{ chunk, rows: Math.max(chunk.rows, theirs[i][0]) }]));
    }

    /** One page of the master's chunks against a replica: sums first, rows only where they differ. */
    async function comparePage(s: { node: string; session: string }, table: string, chunks: ChunkSum[], into: Omit<TableReport, "ms">): Promise<void> {
      into.chunks += chunks.length;
      into.rows += chunks.reduce((n, ch) => n + ch.rows, 0);
      const diff = await differing(s, table, chunks);
      into.differingChunks += diff.length;
      for (const d of diff) into.diffs.push(...(await narrow(s, table, d.chunk, d.rows)));
    }

    /**
     * The rows that differ in a range: a range of a few rows is read on both sides; a larger one is
     * cut into NARROW_PARTS smaller chunks first, and only those that differ are looked into, so a
     * few stray rows in a large table cost a few small messages rather than whole chunks of rows.
     */
    async function narrow(s: { node: string; session: string }, table: string, range: KeyRange, rows: number): Promise<RowDiff[]> {
      const parts = rows > NARROW_ROWS ? (await masterChunks(table, range, Math.ceil(rows / NARROW_PARTS), 10_000)).chunks : [];
      if (parts.length < 2) {
        const r = { after: range.after, upto: range.upto };
        const [mine, other] = await Promise.all([ask(masterNode, { op: "rows", session: m.session, table, range: r }), ask(s.node, { op: "rows", session: s.session, table, range: r })]);
        return diffRows(mine.rows as KeyedRow[], other.rows as KeyedRow[]);
      }
      const out: RowDiff[] = [];
      for (const d of await differing(s, table, parts)) out.push(...(await narrow(s, table, d.chunk, d.rows)));
      return out;
    }

    /** compare.rowsPerSecond: the reads wait so that a table is read no faster than that. */
    async function pace(rows: number, since: number): Promise<void> {
      const rate = c.config.compare.rowsPerSecond;
      const wait = rate > 0 ? since + (rows * 1000) / rate - Date.now() : 0;
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    // Each replica lets go as soon as its own session ends: a master that stopped answering keeps
    // its end waiting for compare.timeoutMs, and the replicas must not stay held that long.
    const end = (node: string, session: string | null | undefined) => (session == null ? Promise.resolve() : ask(node, { op: "end", session }).catch(() => {}));
    const release = (node: string) => ask(node, { op: "release", holder }).catch(() => {});
    await Promise.all([
      end(masterNode, masterSession),
      ...held.map((n) => end(n, sessions.find((s) => s.node === n)?.session).then(() => release(n))),
    ]);
  }
}

/**
 * The rows of one range on the master and a replica, matched by key. A table without a primary
 * key (PostgreSQL) has every column as its key and may hold equal rows: they match one for one.
 */
export function diffRows(master: KeyedRow[], replica: KeyedRow[]): RowDiff[] {
  const theirs = new Map<string, string[]>();
  for (const r of replica) theirs.set(r.key, [...(theirs.get(r.key) ?? []), r.row]);
  const out: RowDiff[] = [];
  const mine = new Map<string, string[]>();
  for (const r of master) mine.set(r.key, [...(mine.get(r.key) ?? []), r.row]);
  for (const [key, rows] of mine) {
    const other = [...(theirs.get(key) ?? [])];
    theirs.delete(key);
    const left = rows.filter((row) => {
      const i = other.indexOf(row);
      if (i < 0) return true;
      other.splice(i, 1);
      return false;
    });
    for (let i = 0; i < Math.max(left.length, other.length); i++) {
      const a = left[i] ?? null;
      const b = other[i] ?? null;
      out.push({ key, kind: a === null ? "extra" : b === null ? "missing" : "changed", master: a, replica: b });
    }
  }
  for (const [key, rows] of theirs) for (const row of rows) out.push({ key, kind: "extra", master: null, replica: row });
  return out;
}

export async function compare(c: Client, opts: Omit<CompareOpts, "repair">): Promise<CompareReport> {
  return compareCluster(c, opts);
}

export interface RepairReport extends CompareReport {
  node: string;
  changed: number;
}

/**
 * Repairs one replica: compares it (held at the LSN of the master's read), then writes the
 * master's rows for what is missing or changed and deletes what is extra, in transactions at that
 * LSN. Past compare.maxRepairRows differing rows it writes nothing and says to resync.
 */
export async function repair(c: Client, opts: { node: string; table?: string }): Promise<RepairReport> {
  let changed = 0;
  const ask = (node: string, body: CompareRequest) =>
    call<{ changed: number }>(c.nc, ENDPOINTS.compare, c.subj.node(node).compare, body, { timeoutMs: c.config.compare.timeoutMs, peer: `node ${node}` });
  const report = await compareCluster(c, { ...opts, repair: true }, async (r, s) => {
    const total = r.tables.reduce((n, t) => n + t.diffs.length, 0);
    const max = c.config.compare.maxRepairRows;
    if (total > max) {
      throw new ReplicationError("REPAIR_TOO_LARGE", `${opts.node} differs from the master in ${total} rows, more than compare.maxRepairRows (${max})`, {
        hint: `run: ferry resync --node ${opts.node} (or raise compare.maxRepairRows)`,
      });
    }
    for (const t of r.tables) {
      for (let i = 0; i < t.diffs.length; i += REPAIR_ROWS_PER_REQUEST) {
        const part = t.diffs.slice(i, i + REPAIR_ROWS_PER_REQUEST);
        const put = part.filter((d) => d.master !== null).map((d) => d.master!);
        const del = part.filter((d) => d.kind === "extra").map((d) => d.key);
        changed += (await ask(s.node, { op: "repair", session: s.session, table: t.table, put, del })).changed;
      }
    }
  });
  // The replica now holds the master's rows: it is no longer diverged. A user who may not write the
  // leases bucket leaves the mark to the watchdog's next compare, which finds the replica clean.
  await c
    .buckets()
    .then((b) => clearDiverged(b.leases, opts.node, opts.table))
    .catch(() => {});
  return { ...report, node: opts.node, changed };
}
