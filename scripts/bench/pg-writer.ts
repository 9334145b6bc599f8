/**
 * The PostgreSQL writer process for the benchmarks (the counterpart of writer.ts): one `pg` client
 * inserts rows of about `--payload` bytes into table `bench` in transactions of `--txn` rows, each
 * one multi-row INSERT (a named prepared statement, autocommit: one round trip and one commit per
 * transaction), as fast as it can or paced at `--rate` rows/s, and prints one JSON line with what
 * it did. Row ids are consecutive from `--from`, so a reader knows that a row id being visible
 * means every earlier transaction is too (replicas apply whole transactions in commit order).
 *
 *   node --import tsx scripts/bench/pg-writer.ts --url URL --rows N [--txn 100] [--from 1]
 *        [--rate R] [--payload 100] [--create] [--times]
 *
 * --create   create the table first
 * --times    report each transaction's commit time (ms since the epoch, sub-ms precision: when
 *            the server's commit acknowledgement arrived)
 *
 * It also reports its server backend's pid and the CPU time that backend used while writing
 * (/proc, readable when the writer runs as root or as the server's user; NaN otherwise).
 */
import pg from "pg";
import { readFileSync } from "node:fs";
import { filler, wallMs, writeTxns, writerArgs, type WriterResult } from "./writer.js";

export const BENCH_TABLE_PG = "CREATE TABLE bench(id bigint PRIMARY KEY, txn integer NOT NULL, ts double precision NOT NULL, payload text NOT NULL)";

/** writer.ts's result (cpuMs: this process's), and the server backend that served this client with its CPU time over the writing loop. */
export interface PgWriterResult extends WriterResult {
  backendPid: number;
  backendCpuMs: number;
}

/** CPU ms (user + system) of any process, from /proc/<pid>/stat; NaN if unreadable. */
function procCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

function args(argv: string[]) {
  const { get, has, ...o } = writerArgs(argv);
  const url = get("url");
  if (!url) throw new Error("--url URL is required");
  return { url, ...o };
}

async function main() {
  const o = args(process.argv.slice(2));
  const c = new pg.Client({ connectionString: o.url, application_name: "ferry-bench-writer" });
  await c.connect();
  if (o.create) await c.query(BENCH_TABLE_PG);
  const backendPid = Number((await c.query("SELECT pg_backend_pid() AS p")).rows[0].p);
  const text = filler(o.payload);
  const statements = new Map<number, pg.QueryConfig>();
  const statement = (n: number): pg.QueryConfig => {
    let q = statements.get(n);
    if (!q) {
      const tuples: string[] = [];
      for (let i = 0; i < n; i++) tuples.push(`($${4 * i + 1},$${4 * i + 2},$${4 * i + 3},$${4 * i + 4})`);
      q = { name: `bench_insert_${n}`, text: `INSERT INTO bench(id, txn, ts, payload) VALUES ${tuples.join(",")}` };
      statements.set(n, q);
    }
    return q;
  };
  const backend0 = procCpuMs(backendPid);
  const result = await writeTxns(o, async (id, n, k) => {
    const ts = wallMs();
    const values: (number | string)[] = new Array(4 * n);
    for (let i = 0; i < n; i++) {
      values[4 * i] = id + i;
      values[4 * i + 1] = k;
      values[4 * i + 2] = ts;
      values[4 * i + 3] = text;
    }
    await c.query({ ...statement(n), values });
  });
  const backendCpuMs = procCpuMs(backendPid) - backend0;
  await c.end();
  const out: PgWriterResult = { ...result, backendPid, backendCpuMs };
  process.stdout.write(JSON.stringify(out) + "\n");
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    process.stderr.write(`pg-writer: ${err?.stack ?? err}\n`);
    process.exit(1);
  });
}
