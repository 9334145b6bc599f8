/**
 * The replication benchmark on PostgreSQL (`npm run bench -- replication --repo postgres [--quick]
 * [--only=throughput,lag] [--no-native]`), dispatched from replication.ts. Every server is a throwaway
 * one (initdb on a free port, src/local/postgres.ts) with the same settings; the writer is a
 * separate process (pg-writer.ts): one `pg` client inserting ~100-byte rows, 100 rows per
 * transaction (one multi-row INSERT each, synchronous_commit on). 200,000 rows and 20 s of lag
 * (--quick: 50,000 and 5 s). --profile runs ferry's m1 and s1 under `--cpu-prof` and prints where
 * their CPU went.
 *
 *  1. baseline    the writer alone against a fresh server: rows/s
 *  2. ferry       a nats-server, a ferry master m1 and slaves s1, s2 (TestCluster, real
 *                 processes), each node with its own server; the table is created through `ferry
 *                 sql`, then the writer writes straight into m1's database (an outside writer,
 *                 captured by ferry's logical decoding slot)
 *                   idle        3 s with nothing to replicate: CPU per process (polling, heartbeats)
 *                   throughput  N rows unpaced; from the writer's start until both replicas show
 *                               the last row: rows/s, ratio to (1)
 *                   lag         2,000 rows/s paced; per transaction, from its commit on the master
 *                               to the moment both replicas show it: p50/p99/max, split into
 *                               phases by watching the replication subjects (spy.ts), and one
 *                               synced LevelDB write measured alone beforehand
 *  3. native      PostgreSQL's own logical replication: a publisher (CREATE PUBLICATION p FOR
 *                 TABLE bench) and two subscriber servers (CREATE SUBSCRIPTION ... WITH
 *                 (copy_data = false), the defaults otherwise: the apply worker commits with
 *                 synchronous_commit = off); the same writer, the same measures
 *
 * Visibility: one connection per replica polls `SELECT max(id)` (every 50 ms while the throughput
 * writer runs, then 1 ms; 2 ms during lag); replicas apply whole transactions in commit order, so a
 * visible id means every earlier transaction is visible. CPU per replicated row and process, over
 * the throughput phase: ferry's node processes and nats-server from /proc/PID/stat, each
 * PostgreSQL server as its postmaster's process tree (live children by kind, plus what exited
 * children used, from the postmaster's cutime), the writer's own backend as the writer reports
 * it; the benchmark's own polling connections are shown but left out of the totals. The master's
 * logical slots are sampled every 250 ms for how much WAL lies behind restart_lsn (what a decoding
 * session reads again from its start: every peek of ferry's capture does) and behind
 * confirmed_flush_lsn.
 */
import { availableParallelism, loadavg, tmpdir } from "node:os";
import pg from "pg";
import { TestCluster } from "../../test/helpers/cluster.js";
import { join } from "node:path";
import { cleanup, postgresServer, tempDir } from "../../test/helpers/procs.js";
import type { PgServer } from "../../src/local/postgres.js";
import {
  PgVisibilitySampler,
  cpuSeconds,
  fmtInt,
  killPgWriters,
  log,
  percentiles,
  phaseLine,
  printGrid,
  printTable,
  round,
  runPgWriter,
  syncedWriteMs,
  treeCpu,
  treeCpuDiff,
  type TreeCpu,
} from "./common.js";
import { BENCH_TABLE_PG, type PgWriterResult } from "./pg-writer.js";
import { printProfiles, summariseProfiles } from "./profile.js";
import { ReplicationSpy } from "./spy.js";

const TXN = 100;
const PAYLOAD = 100;
const LAG_RATE = 2000;
const TARGET_RATIO_TO_NATIVE = 0.7;
const TARGET_LAG_P99_MS = 50;
const IDLE_MS = 3000;

/** A system under test: where the writer writes, the replicas to watch and the processes to meter. */
interface System {
  label: string;
  masterUrl: string;
  /** The master's server under its name in `servers`. */
  masterServer: string;
  /** Name -> postmaster pid. */
  servers: Record<string, number>;
  /** Name -> pid of other processes (ferry nodes, nats-server). */
  procs: Record<string, number>;
  sampler: PgVisibilitySampler;
  /** The master's logical slots: how far behind the WAL's end their restart and confirmed positions are. */
  slots: SlotWindow;
  /** ferry: watches the replication subjects during the lag phase, to split the lag into phases. */
  spy?: () => Promise<ReplicationSpy>;
}

type CpuBreakdown = { total: number; byKind: Record<string, number> };

export async function run(argv: string[] = []): Promise<object> {
  const quick = argv.includes("--quick");
  const ROWS = quick ? 50_000 : 200_000;
  const LAG_SECONDS = quick ? 5 : 20;
  const only = argv.find((a) => a.startsWith("--only="))?.slice(7).split(",");
  const want = (phase: "throughput" | "lag") => !only || only.includes(phase);
  const native = !argv.includes("--no-native");
  const cores = availableParallelism();

  const results: Record<string, any> = {
    repo: "postgres",
    settings: { rows: ROWS, txnRows: TXN, payloadBytes: PAYLOAD, lagRate: LAG_RATE, lagSeconds: LAG_SECONDS, cores },
    loadAverageAtStart: loadavg().map((x) => round(x, 2)),
  };
  try {
    // 1. Baseline ---------------------------------------------------------------------------------
    log(`baseline: ${fmtInt(ROWS)} rows into a fresh PostgreSQL server`);
    const bs = await postgresServer();
    results.serverVersion = await serverVersion(bs.url);
    const bUrl = await bs.createDb("bench");
    const b0 = treeCpu(bs.pid);
    const base = await runPgWriter({ url: bUrl, rows: ROWS, txn: TXN, payload: PAYLOAD, create: true }).done;
    const bCpu = withWriter(treeCpuDiff(b0, treeCpu(bs.pid)), base);
    await bs.stop();
    results.baseline = {
      rowsPerSec: round(base.rowsPerSec),
      elapsedMs: round(base.elapsedMs),
      cpuSeconds: { writer: round(base.cpuMs / 1000, 2), server: bCpu },
      cpuMicrosPerRow: { writer: perRow(base.cpuMs / 1000, base.rows), server: perRowKinds(bCpu, base.rows) },
    };

    // 2. ferry ------------------------------------------------------------------------------------
    const profDir = argv.includes("--profile") ? join(tmpdir(), `ferry-bench-prof-${Date.now()}`) : "";
    results.ferry = await ferryPhases(ROWS, LAG_SECONDS, want, base, profDir);
    if (profDir) results.profile = summariseProfiles(profDir);

    // 3. PostgreSQL's logical replication ------------------------------------------------------------
    if (native) results.native = await nativePhases(ROWS, LAG_SECONDS, want, base);

    if (results.ferry.throughput && results.native?.throughput) {
      results.ferryToNative = round(results.ferry.throughput.rowsPerSec / results.native.throughput.rowsPerSec, 3);
    }
  } finally {
    killPgWriters();
    await cleanup();
  }
  results.loadAverageAtEnd = loadavg().map((x) => round(x, 2));
  report(results);
  return results;
}

async function ferryPhases(rows: number, lagSeconds: number, want: (p: "throughput" | "lag") => boolean, base: PgWriterResult, profDir: string) {
  const profArgs = (id: string): string[] => (profDir ? ["--cpu-prof", `--cpu-prof-dir=${join(profDir, id)}`] : []);
  log("ferry: nats-server, three PostgreSQL servers, master m1, slaves s1 and s2");
  const cl = await TestCluster.start({
    postgres: true,
    config: {
      lease: { ttlMs: 3000, safetyMarginMs: 1000 },
      replication: { heartbeatMs: 1000, pollMs: 1000 },
      log: { level: "info" },
    },
  });
  let sampler: PgVisibilitySampler | null = null;
  let slots: SlotWindow | null = null;
  try {
    await Promise.all(["m1", "s1", "s2"].map((id) => cl.pgServer(id)));
    const m1 = cl.startNode("m1", "master", [], {}, profArgs("m1"));
    await cl.waitMaster("m1", 30_000);
    const s1 = cl.startNode("s1", "slave", [], {}, profArgs("s1"));
    const s2 = cl.startNode("s2", "slave");
    await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming", 30_000);
    await cl.waitMember("s2", "streaming", (m) => m.replica === "streaming", 30_000);
    await cl.sql(BENCH_TABLE_PG);
    await cl.waitConverged("m1", ["s1", "s2"]);
    sampler = await PgVisibilitySampler.open({ s1: cl.repoUrl("s1"), s2: cl.repoUrl("s2") }, 5);
    sampler.start();
    slots = await SlotWindow.open(cl.repoUrl("m1"));
    const sys: System = {
      label: "ferry",
      masterUrl: cl.repoUrl("m1"),
      masterServer: "pg m1",
      servers: Object.fromEntries(["m1", "s1", "s2"].map((id) => [`pg ${id}`, cl.pg.get(id)!.server.pid])),
      procs: { "ferry m1": m1.pid, "ferry s1": s1.pid, "ferry s2": s2.pid, nats: cl.nats.pid },
      sampler,
      slots,
      spy: () => ReplicationSpy.start(cl.nats.url, cl.name, "m1"),
    };
    await warmUp(sys);
    const out = await phases(sys, rows, lagSeconds, want, base);
    if (process.env.FERRY_KEEP_TEST_DIRS) (out as Record<string, unknown>).clusterDir = cl.dir;
    return out;
  } finally {
    await sampler?.stop();
    await slots?.stop();
    await cl.close();
    // Free the cores for what comes next (cleanup() would stop them at the end anyway).
    await Promise.all([...cl.pg.values()].map((p) => p.server.stop("immediate").catch(() => p.server.kill())));
  }
}

async function nativePhases(rows: number, lagSeconds: number, want: (p: "throughput" | "lag") => boolean, base: PgWriterResult) {
  log("native: a publisher and two subscriber servers (CREATE PUBLICATION / CREATE SUBSCRIPTION)");
  const servers: PgServer[] = [];
  let sampler: PgVisibilitySampler | null = null;
  let slots: SlotWindow | null = null;
  try {
    servers.push(...(await Promise.all([postgresServer(), postgresServer(), postgresServer()])));
    const [pub, sub1, sub2] = servers;
    const urls = await Promise.all(servers.map((s) => s.createDb("bench")));
    await Promise.all(urls.map((u) => exec(u, BENCH_TABLE_PG)));
    await exec(urls[0], "CREATE PUBLICATION p FOR TABLE bench");
    for (const [i, u] of [urls[1], urls[2]].entries()) {
      // CREATE SUBSCRIPTION cannot run in a transaction block: one statement per query.
      await exec(u, `CREATE SUBSCRIPTION s${i + 1} CONNECTION 'host=127.0.0.1 port=${pub.port} user=postgres dbname=bench' PUBLICATION p WITH (copy_data = false)`);
    }
    sampler = await PgVisibilitySampler.open({ s1: urls[1], s2: urls[2] }, 5);
    sampler.start();
    slots = await SlotWindow.open(urls[0]);
    const sys: System = {
      label: "native",
      masterUrl: urls[0],
      masterServer: "pg publisher",
      servers: { "pg publisher": pub.pid, "pg s1": sub1.pid, "pg s2": sub2.pid },
      procs: {},
      sampler,
      slots,
    };
    await warmUp(sys);
    return await phases(sys, rows, lagSeconds, want, base);
  } finally {
    await sampler?.stop();
    await slots?.stop();
    await Promise.all(servers.map((s) => s.stop("immediate").catch(() => s.kill())));
  }
}

/** One row (id 0) through the whole path before anything is timed: every replica is live. */
async function warmUp(sys: System): Promise<void> {
  await exec(sys.masterUrl, `INSERT INTO bench(id, txn, ts, payload) VALUES (0, -1, 0, 'warm-up')`);
  await sys.sampler.waitAll(0, 60_000);
}

async function phases(sys: System, rows: number, lagSeconds: number, want: (p: "throughput" | "lag") => boolean, base: PgWriterResult) {
  const out: Record<string, unknown> = {};
  let nextId = 1;
  // Idle: what each process costs with nothing to replicate (polling, heartbeats), % of a core.
  {
    const t = await metered(sys, () => new Promise((r) => setTimeout(r, IDLE_MS)));
    const pct = (sec: number) => round((sec * 100) / (IDLE_MS / 1000), 1);
    out.idlePctOfCore = {
      ...Object.fromEntries(Object.entries(t.cpu.servers).map(([n, c]) => [n, { total: pct(withoutSampler(c)), byKind: Object.fromEntries(Object.entries(c.byKind).map(([k, v]) => [k, pct(v)])) }])),
      ...Object.fromEntries(Object.entries(t.cpu.procs).map(([n, v]) => [n, pct(v)])),
    };
  }
  if (want("throughput")) {
    log(`${sys.label} throughput: ${fmtInt(rows)} rows, until both replicas have them`);
    const slots0 = sys.slots.mark();
    const t = await metered(sys, async () => {
      // Only the end matters here: slow polls while the writer runs, fast ones once it is done.
      sys.sampler.pace(50);
      const w = await runPgWriter({ url: sys.masterUrl, rows, txn: TXN, payload: PAYLOAD, from: nextId }).done;
      sys.sampler.pace(1);
      const applied = await sys.sampler.waitAll(w.lastId, Math.max(120_000, rows));
      return { w, applied };
    });
    const { w, applied } = t.result;
    const start = w.lastCommit - w.elapsedMs;
    const e2eMs = applied - start;
    const rate = w.rows / (e2eMs / 1000);
    const cpu = withMasterWriter(sys, t.cpu, w);
    const micros = perRowAll(cpu, w);
    const all = Object.values(micros.total).reduce((a, b) => a + b, 0);
    out.throughput = {
      rowsPerSec: round(rate),
      ratioToBaseline: round(rate / base.rowsPerSec, 3),
      elapsedMs: round(e2eMs),
      perReplicaRowsPerSec: Object.fromEntries(["s1", "s2"].map((n) => [n, round(w.rows / ((sys.sampler.firstAt(n, w.lastId)! - start) / 1000))])),
      writerRowsPerSec: round(w.rowsPerSec),
      writerRatioToBaseline: round(w.rowsPerSec / base.rowsPerSec, 3),
      tailAfterLastCommitMs: round(applied - w.lastCommit),
      samplerPolls: sys.sampler.polls,
      slotWindow: sys.slots.summary(slots0),
      cpuSeconds: cpu,
      /** µs of CPU per replicated row: `total` by process, `byKind` inside each PostgreSQL server. */
      cpuMicrosPerRow: micros,
      cpuCeiling: {
        cores: availableParallelism(),
        microsPerRow: round(all, 1),
        rowsPerSec: round((availableParallelism() * 1e6) / all),
      },
    };
    nextId = w.lastId + 1;
  }
  if (want("lag")) {
    log(`${sys.label} lag: ${fmtInt(LAG_RATE)} rows/s for ${lagSeconds} s`);
    const from = nextId;
    // What one synced LevelDB write of a transaction's batch costs on this disk, alone (ferry syncs
    // one on the master and one on each slave in every batch's path).
    const synced = sys.spy ? percentiles(await syncedWriteMs(join(tempDir("ferry-bench-"), "fsync-probe"), lagSeconds * 10, TXN * (PAYLOAD + 60), 1000 / (LAG_RATE / TXN))) : undefined;
    const spy = await sys.spy?.();
    const slots0 = sys.slots.mark();
    const t = await metered(sys, async () => {
      sys.sampler.pace(2);
      const polls0 = sys.sampler.polls;
      const w = await runPgWriter({ url: sys.masterUrl, rows: LAG_RATE * lagSeconds, txn: TXN, payload: PAYLOAD, from, rate: LAG_RATE, times: true }).done;
      await sys.sampler.waitAll(w.lastId, 60_000);
      return { w, polls: sys.sampler.polls - polls0 };
    });
    const { w } = t.result;
    const lastOf = (k: number) => Math.min(from + (k + 1) * TXN - 1, w.lastId);
    const lat = (name: string) => w.commits!.map((c, k) => sys.sampler.firstAt(name, lastOf(k))! - c);
    const l1 = lat("s1");
    const l2 = lat("s2");
    const both = l1.map((x, i) => Math.max(x, l2[i]));
    await spy?.stop();
    out.lag = {
      txns: w.txns,
      achievedRowsPerSec: round(w.rowsPerSec),
      writerLateMs: w.lateMs,
      bothReplicas: percentiles(both),
      s1: percentiles(l1),
      s2: percentiles(l2),
      over50ms: both.filter((x) => x > TARGET_LAG_P99_MS).length,
      worst: both
        .map((ms, k) => ({ txn: k, ms: round(ms, 1), atS: round((w.commits![k] - w.commits![0]) / 1000, 2) }))
        .sort((a, b) => b.ms - a.ms)
        .slice(0, 5),
      /** p99 of each quarter of the run, in order: does the lag drift? */
      p99ByQuarter: [0, 1, 2, 3].map((q) => percentiles(both.slice(Math.floor((q * both.length) / 4), Math.floor(((q + 1) * both.length) / 4))).p99),
      slotWindow: sys.slots.summary(slots0),
      samplerPolls: t.result.polls,
      phases: spy?.breakdown(w.commits!, (n, k) => sys.sampler.firstAt(n, lastOf(k)), ["s1", "s2"]),
      syncedWriteMs: synced,
      samplerMeanIntervalMs: round((w.lastCommit - w.firstCommit) / Math.max(1, t.result.polls), 2),
      cpuSeconds: withMasterWriter(sys, t.cpu, w),
    };
  }
  return out;
}

/** CPU seconds every process and server of `sys` used while fn ran. */
async function metered<T>(sys: System, fn: () => Promise<T>) {
  const servers0: Record<string, TreeCpu> = Object.fromEntries(Object.entries(sys.servers).map(([n, p]) => [n, treeCpu(p)]));
  const procs0 = Object.fromEntries(Object.entries(sys.procs).map(([n, p]) => [n, cpuSeconds(p)]));
  const result = await fn();
  const samplerPids = new Map([...sys.sampler.backendPids.values(), sys.slots.backendPid].map((p) => [p, "sampler"]));
  const servers = Object.fromEntries(Object.entries(sys.servers).map(([n, p]) => [n, treeCpuDiff(servers0[n], treeCpu(p), samplerPids)]));
  const procs = Object.fromEntries(Object.entries(sys.procs).map(([n, p]) => [n, round(cpuSeconds(p) - procs0[n], 2)]));
  return { result, cpu: { servers, procs } };
}

/** The writer's backend has exited by the end: its CPU (the writer reports it) moves from "exited" to "writer backend". */
function withWriter(c: CpuBreakdown, w: PgWriterResult): CpuBreakdown {
  const wb = Number.isFinite(w.backendCpuMs) ? w.backendCpuMs / 1000 : 0;
  const byKind = { ...c.byKind, "writer backend": round(wb, 2), exited: round((c.byKind.exited ?? 0) - wb, 2) };
  return { total: c.total, byKind };
}

function withMasterWriter(sys: System, cpu: { servers: Record<string, CpuBreakdown>; procs: Record<string, number> }, w: PgWriterResult) {
  const servers = { ...cpu.servers, [sys.masterServer]: withWriter(cpu.servers[sys.masterServer], w) };
  return { writer: round(w.cpuMs / 1000, 2), servers, procs: cpu.procs };
}

const perRow = (seconds: number, rows: number) => round((seconds * 1e6) / rows, 2);

/** A server's CPU without the benchmark's own polling connections. */
const withoutSampler = (c: CpuBreakdown) => c.total - (c.byKind.sampler ?? 0);

function perRowKinds(c: CpuBreakdown, rows: number) {
  return { total: perRow(c.total, rows), byKind: Object.fromEntries(Object.entries(c.byKind).map(([k, v]) => [k, perRow(v, rows)])) };
}

function perRowAll(cpu: ReturnType<typeof withMasterWriter>, w: PgWriterResult) {
  const total: Record<string, number> = { writer: perRow(cpu.writer, w.rows) };
  const byKind: Record<string, Record<string, number>> = {};
  for (const [n, c] of Object.entries(cpu.servers)) {
    const r = perRowKinds(c, w.rows);
    total[n] = perRow(withoutSampler(c), w.rows);
    byKind[n] = r.byKind;
  }
  for (const [n, s] of Object.entries(cpu.procs)) total[n] = perRow(s, w.rows);
  return { total, byKind };
}

async function exec(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end().catch(() => {});
  }
}

async function serverVersion(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return String((await c.query("SHOW server_version")).rows[0].server_version);
  } finally {
    await c.end().catch(() => {});
  }
}

/**
 * Samples (every 250 ms, one connection) how many bytes of WAL lie between the end of the WAL and
 * the master's logical slots' restart_lsn (what a decoding session must read again from the
 * start) and confirmed_flush_lsn (what is not yet confirmed as consumed); the largest over the slots.
 */
class SlotWindow {
  readonly samples: { restart: number; confirmed: number }[] = [];
  backendPid = 0;
  private timer: NodeJS.Timeout | null = null;
  private busy = false;

  private constructor(private readonly c: pg.Client) {}

  static async open(url: string, everyMs = 250): Promise<SlotWindow> {
    const c = new pg.Client({ connectionString: url, application_name: "ferry-bench-slots" });
    await c.connect();
    const s = new SlotWindow(c);
    s.backendPid = Number((await c.query("SELECT pg_backend_pid() AS p")).rows[0].p);
    s.timer = setInterval(() => void s.sample(), everyMs);
    return s;
  }

  private async sample(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const r = await this.c.query(
        `SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_flush_lsn(), restart_lsn)), 0)::float8 AS restart,
                coalesce(max(pg_wal_lsn_diff(pg_current_wal_flush_lsn(), confirmed_flush_lsn)), 0)::float8 AS confirmed
         FROM pg_replication_slots WHERE slot_type = 'logical'`,
      );
      this.samples.push({ restart: Number(r.rows[0].restart), confirmed: Number(r.rows[0].confirmed) });
    } catch {
      // the server is going away
    } finally {
      this.busy = false;
    }
  }

  mark(): number {
    return this.samples.length;
  }

  /** Since mark `from`: p50 and max of both distances, in bytes. */
  summary(from: number) {
    const s = this.samples.slice(from);
    if (s.length === 0) return null;
    const pick = (f: (x: { restart: number; confirmed: number }) => number) => {
      const p = percentiles(s.map(f));
      return { p50: Math.round(p.p50), max: Math.round(p.max) };
    };
    return { samples: s.length, restartBehindBytes: pick((x) => x.restart), confirmedBehindBytes: pick((x) => x.confirmed) };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    while (this.busy) await new Promise((r) => setTimeout(r, 5));
    await this.c.end().catch(() => {});
  }
}

// The report ----------------------------------------------------------------------------------------

const MB_ = 1024 * 1024;
const fmtMiB = (b: number) => `${(b / MB_).toFixed(1)} MB`;

const KIND_LABEL: Record<string, string> = {
  backend: "client backends (ferry's pool)",
  walsender: "walsenders (one per subscriber)",
  "apply worker": "apply worker",
  "writer backend": "the writer's backend",
  background: "background (walwriter, checkpointer, ...)",
  exited: "other exited backends",
  postmaster: "postmaster",
  "replication launcher": "replication launcher",
  sampler: "the benchmark's polling (not in totals)",
};

function report(r: Record<string, any>) {
  const base = r.baseline.rowsPerSec as number;
  const rows: [string, string, string?, boolean?][] = [
    [`1. baseline: one pg client, ${TXN}-row INSERTs, ~${PAYLOAD} B rows (PostgreSQL ${r.serverVersion})`, `${fmtInt(base)} rows/s`],
  ];
  const slot = (w: any) =>
    w ? `${fmtMiB(w.restartBehindBytes.p50)} / ${fmtMiB(w.restartBehindBytes.max)} (unconfirmed ${fmtMiB(w.confirmedBehindBytes.p50)} / ${fmtMiB(w.confirmedBehindBytes.max)})` : "-";
  const tp = (label: string, t: any) => {
    rows.push(
      [label, `${fmtInt(t.rowsPerSec)} rows/s (${t.ratioToBaseline} x baseline)`],
      ["   per replica s1 / s2", `${fmtInt(t.perReplicaRowsPerSec.s1)} / ${fmtInt(t.perReplicaRowsPerSec.s2)} rows/s`],
      ["   the writer meanwhile", `${fmtInt(t.writerRowsPerSec)} rows/s (${t.writerRatioToBaseline} x baseline)`],
      ["   tail: last commit -> last row on both replicas", `${fmtInt(t.tailAfterLastCommitMs)} ms`],
      [`   CPU, all processes / ceiling of ${t.cpuCeiling.cores} cores`, `${t.cpuCeiling.microsPerRow} µs/row / ${fmtInt(t.cpuCeiling.rowsPerSec)} rows/s`],
      ["   WAL from slot restart_lsn to the end, p50 / max", slot(t.slotWindow)],
    );
  };
  if (r.ferry?.throughput) tp("2. ferry end to end: master + 2 PostgreSQL replicas", r.ferry.throughput);
  if (r.native?.throughput) tp("3. native logical replication: publisher + 2 subscribers", r.native.throughput);
  if (r.ferryToNative !== undefined) {
    rows.push(["   ferry / native, end to end", `${r.ferryToNative}`, `>= ${TARGET_RATIO_TO_NATIVE}`, r.ferryToNative >= TARGET_RATIO_TO_NATIVE]);
  }
  const lag = (label: string, l: any, target: boolean) => {
    rows.push([label, `${l.bothReplicas.p50} / ${l.bothReplicas.p99} / ${l.bothReplicas.max} ms`, target ? `p99 <= ${TARGET_LAG_P99_MS} ms` : undefined, target ? l.bothReplicas.p99 <= TARGET_LAG_P99_MS : undefined]);
    rows.push([`   over ${TARGET_LAG_P99_MS} ms; p99 by quarter of the run`, `${l.over50ms} of ${l.txns} txns; ${l.p99ByQuarter.join(" / ")} ms`]);
    rows.push(["   writer achieved; started late p50 / max", `${fmtInt(l.achievedRowsPerSec)} rows/s; ${round(l.writerLateMs?.p50 ?? 0, 1)} / ${round(l.writerLateMs?.max ?? 0, 1)} ms`]);
    rows.push(["   WAL from slot restart_lsn to the end, p50 / max", slot(l.slotWindow)]);
    if (l.phases) rows.push(["   phases p50: capture / react / serve / spool+apply (s1)", phaseLine(l.phases)]);
    if (l.syncedWriteMs) {
      rows.push(["   one synced LevelDB write of a batch, alone: p50 / p99 / max", `${l.syncedWriteMs.p50} / ${l.syncedWriteMs.p99} / ${l.syncedWriteMs.max} ms (two are in every batch's path)`]);
    }
  };
  if (r.ferry?.lag) lag(`4. ferry lag at ${fmtInt(LAG_RATE)} rows/s, commit -> both replicas: p50 / p99 / max`, r.ferry.lag, true);
  if (r.native?.lag) lag(`   native lag at ${fmtInt(LAG_RATE)} rows/s: p50 / p99 / max`, r.native.lag, false);
  const idle = (i: any) =>
    Object.entries(i ?? {})
      .map(([n, v]: [string, any]) => `${n} ${typeof v === "number" ? v : v.total}%`)
      .join(", ");
  if (r.ferry?.idlePctOfCore) rows.push([`5. idle ${IDLE_MS / 1000} s, % of a core: ferry`, idle(r.ferry.idlePctOfCore)]);
  if (r.native?.idlePctOfCore) rows.push(["   native", idle(r.native.idlePctOfCore)]);
  printTable("replication benchmark, PostgreSQL", rows);

  // CPU per replicated row, per process, over the throughput phases.
  const f = r.ferry?.throughput?.cpuMicrosPerRow;
  const n = r.native?.throughput?.cpuMicrosPerRow;
  const b = r.baseline.cpuMicrosPerRow;
  const fmt = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "" : x.toFixed(1));
  const kinds = (m: any, server: string) => (m?.byKind?.[server] ?? {}) as Record<string, number>;
  const order = Object.keys(KIND_LABEL);
  const sorted = (ks: Set<string>) => [...ks].filter((k) => k !== "replication launcher" && k !== "postmaster").sort((x, y) => order.indexOf(x) - order.indexOf(y));
  const grid: string[][] = [];
  grid.push(["writer process (pg client)", fmt(b.writer), fmt(f?.total.writer), fmt(n?.total.writer)]);
  grid.push(["master's server, total", fmt(b.server.total), fmt(f?.total["pg m1"]), fmt(n?.total["pg publisher"])]);
  const mk = new Set([...Object.keys(b.server.byKind), ...Object.keys(kinds(f, "pg m1")), ...Object.keys(kinds(n, "pg publisher"))]);
  for (const k of sorted(mk)) grid.push([`  ${KIND_LABEL[k] ?? k}`, fmt(b.server.byKind[k]), fmt(kinds(f, "pg m1")[k]), fmt(kinds(n, "pg publisher")[k])]);
  if (f) for (const p of ["ferry m1", "nats", "ferry s1", "ferry s2"]) grid.push([p === "nats" ? "nats-server" : `${p} (node process)`, "", fmt(f.total[p]), ""]);
  for (const sv of ["pg s1", "pg s2"]) {
    grid.push([`replica ${sv.slice(3)}'s server, total`, "", fmt(f?.total[sv]), fmt(n?.total[sv])]);
    const ks = new Set([...Object.keys(kinds(f, sv)), ...Object.keys(kinds(n, sv))]);
    for (const k of sorted(ks)) grid.push([`  ${KIND_LABEL[k] ?? k}`, "", fmt(kinds(f, sv)[k]), fmt(kinds(n, sv)[k])]);
  }
  grid.push(["all processes", fmt(b.writer + b.server.total), fmt(r.ferry?.throughput?.cpuCeiling.microsPerRow), fmt(r.native?.throughput?.cpuCeiling.microsPerRow)]);
  printGrid("CPU per replicated row (µs), throughput phase", ["process", "baseline", "ferry", "native"], grid);
  if (r.profile) printProfiles(r.profile);
}
