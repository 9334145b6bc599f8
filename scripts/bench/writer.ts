/**
 * A writer process for the benchmarks: inserts rows of about `--payload` bytes into a SQLite file in
 * transactions of `--txn` rows, as fast as it can or paced at `--rate` rows/s, and prints one JSON
 * line with what it did. Row ids are consecutive from `--from`, so a reader knows that a row id
 * being visible means every earlier transaction is too.
 *
 *   node --import tsx scripts/bench/writer.ts --db FILE --rows N [--txn 100] [--from 1] [--rate R]
 *        [--payload 100] [--create] [--times] [--until-file F]
 *
 * --create   make the file (WAL, synchronous=FULL, like ferry's master connection) and the table
 * --times    report each transaction's commit time (ms since the epoch, sub-ms precision)
 * --until-file  stop early, at a transaction boundary, once this file exists
 */
import { existsSync } from "node:fs";
import { performance } from "node:perf_hooks";
import Database from "better-sqlite3";

export const BENCH_TABLE = "CREATE TABLE bench(id INTEGER PRIMARY KEY, txn INTEGER NOT NULL, ts REAL NOT NULL, payload TEXT NOT NULL)";

/** Wall-clock milliseconds with sub-ms precision, comparable between processes on one machine. */
export const wallMs = () => performance.timeOrigin + performance.now();

export interface WriterResult {
  rows: number;
  txns: number;
  firstId: number;
  lastId: number;
  /** Commit time of the first and last transaction (wallMs). */
  firstCommit: number;
  lastCommit: number;
  /** From just before the first transaction began to the last commit. */
  elapsedMs: number;
  rowsPerSec: number;
  /** CPU time (user + system) the writing loop took. */
  cpuMs: number;
  /** Commit time of each transaction, when --times. */
  commits?: number[];
  /** How late paced transactions started (ms), when --rate. */
  lateMs?: { p50: number; max: number };
}

/** The options both writers (this one and pg-writer.ts) take, and `get`/`has` for their own. */
export function writerArgs(argv: string[]) {
  const get = (name: string, def?: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : def;
  };
  const has = (name: string) => argv.includes(`--${name}`);
  return {
    get,
    has,
    rows: Number(get("rows", "100000")),
    txn: Number(get("txn", "100")),
    from: Number(get("from", "1")),
    rate: get("rate") ? Number(get("rate")) : 0,
    payload: Number(get("payload", "100")),
    create: has("create"),
    times: has("times"),
  };
}

export type WriterArgs = Omit<ReturnType<typeof writerArgs>, "get" | "has">;

function args(argv: string[]) {
  const { get, has, ...o } = writerArgs(argv);
  const db = get("db");
  if (!db) throw new Error("--db FILE is required");
  return { db, ...o, untilFile: get("until-file") };
}

/** The text column's value: id, txn and ts take about 20 bytes of a row; the text makes up the rest. */
export const filler = (payload: number) => "x".repeat(Math.max(1, payload - 20));

/**
 * Writes `o.rows` rows from `o.from` in transactions of `o.txn` (`write(firstId, n, k)` writes and
 * commits transaction k), paced at `o.rate` rows/s if set, stopping early at a transaction whose
 * `stop(k)` is true, and measures it all.
 */
export async function writeTxns(
  o: WriterArgs,
  write: (first: number, n: number, k: number) => void | Promise<void>,
  stop?: (k: number) => boolean,
): Promise<WriterResult> {
  const txns = Math.ceil(o.rows / o.txn);
  const commits: number[] = [];
  const late: number[] = [];
  const interval = o.rate > 0 ? (o.txn / o.rate) * 1000 : 0;
  const started = wallMs();
  const cpu0 = process.cpuUsage();
  let id = o.from;
  let done = 0;
  for (let k = 0; k < txns; k++) {
    if (interval > 0) {
      const due = started + k * interval;
      let now = wallMs();
      if (due - now > 1) await new Promise((r) => setTimeout(r, due - now - 0.5));
      while ((now = wallMs()) < due); // the last fraction of a millisecond
      late.push(now - due);
    }
    if (stop?.(k)) break;
    const n = Math.min(o.txn, o.from + o.rows - id);
    const w = write(id, n, k);
    if (w) await w;
    commits.push(wallMs());
    id += n;
    done += n;
  }
  const cpu = process.cpuUsage(cpu0);
  const last = commits[commits.length - 1] ?? started;
  const sorted = [...late].sort((a, b) => a - b);
  return {
    rows: done,
    txns: commits.length,
    firstId: o.from,
    lastId: id - 1,
    firstCommit: commits[0] ?? started,
    lastCommit: last,
    elapsedMs: last - started,
    rowsPerSec: done / ((last - started) / 1000),
    cpuMs: (cpu.user + cpu.system) / 1000,
    commits: o.times ? commits : undefined,
    lateMs: interval > 0 && sorted.length ? { p50: sorted[Math.floor(sorted.length / 2)], max: sorted[sorted.length - 1] } : undefined,
  };
}

async function main() {
  const o = args(process.argv.slice(2));
  const db = new Database(o.db, { timeout: 30_000 });
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  if (o.create) db.exec(BENCH_TABLE);
  const ins = db.prepare("INSERT INTO bench(id, txn, ts, payload) VALUES (?, ?, ?, ?)");
  const text = filler(o.payload);
  const txn = db.transaction((first: number, n: number, k: number) => {
    const ts = wallMs();
    for (let i = 0; i < n; i++) ins.run(first + i, k, ts, text);
  });
  const untilFile = o.untilFile;
  const result = await writeTxns(o, txn, untilFile ? (k) => k % 10 === 0 && existsSync(untilFile) : undefined);
  db.close();
  process.stdout.write(JSON.stringify(result) + "\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`writer: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
