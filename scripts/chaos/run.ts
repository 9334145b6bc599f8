/**
 * One chaos run: start the cluster, record the history while a write workload runs and the
 * scenario's faults are injected, heal everything, wait for quiescence, read the final state,
 * stop everything, check the invariants, and write the report.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { decodeLease, LEASE_KEY, subscribeHeartbeats } from "../../src/nats/records.js";
import type { Repository, RepositoryKind } from "../../src/storage/repository/types.js";
import { tempDir } from "../../test/helpers/procs.js";
import { waitFor } from "../../test/helpers/wait.js";
import { startWriter, type WriteRecord } from "../../test/helpers/workload.js";
import { epochHolders, checkAll } from "./checker.js";
import { ChaosCluster } from "./cluster.js";
import { inject, type FaultContext } from "./faults.js";
import type { FaultRecord, FinalState, History, InvariantResult, WriteOp } from "./history.js";
import { NODES, PROCESSES, Rng, runsOn, type PlannedFault, type Scenario } from "./scenarios.js";
import { chaosSql } from "./sql.js";

export interface RunOptions {
  scenario: Scenario;
  seed: number;
  durationMs: number;
  /** The nodes' repositories: SQLite files (default) or a PostgreSQL server per node. */
  repo?: RepositoryKind;
  /** Where the report goes (chaos-results/). */
  outDir: string;
  log?: (line: string) => void;
}

export interface FaultFigure {
  n: number;
  kind: string;
  target: string;
  resolved?: string;
  atS: number;
  durationMs: number;
  /** Master faults: from injection until the observer saw another node take the lease. */
  failoverMs?: number | null;
  /**
   * From injection until the writers' next acknowledged write: one invoked after it, or, for a
   * fault of the master, one in flight at it that a new master acknowledged.
   */
  writesResumedMs?: number | null;
  skipped?: string;
  notes: string[];
}

export interface RunReport {
  scenario: string;
  seed: number;
  /** The nodes' repository kind (missing in reports written before PostgreSQL: sqlite). */
  repo?: RepositoryKind;
  durationMs: number;
  ok: boolean;
  knownFailing?: string;
  error?: string;
  startedAt: string;
  wallMs: number;
  config: Record<string, unknown>;
  schedule: PlannedFault[];
  invariants: InvariantResult[];
  figures: {
    writes: { ok: number; failed: number; unknown: number };
    ackedLost: number;
    failovers: number;
    leaseEpochs: number;
    worstFailoverMs: number | null;
    /** Master faults that failed over: the worst writes-resumed, and the worst writes-resumed minus failover. */
    worstWritesResumedMs?: number | null;
    worstResumeAfterFailoverMs?: number | null;
    longestWriteGapMs: number;
    resyncs: number;
    syncTasks: { created: number; completed: number };
    /** Processes that did not come up at the start and were started again (see history.setup). */
    setupRestarts: number;
  };
  faults: FaultFigure[];
  /** ms: how long `ferry resync` took (it is killed after 120 s). */
  resyncs: { node: string; at: number; ms?: number; ok: boolean; reason: string; output: string }[];
  history: History;
  final: Omit<FinalState, "dumps" | "keys"> & { dumpLines: Record<string, number> };
  logs?: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export async function runChaos(o: RunOptions): Promise<RunReport> {
  const say = o.log ?? (() => {});
  const started = Date.now();
  const repo = o.repo ?? "sqlite";
  if (!runsOn(o.scenario, repo)) throw new Error(`scenario ${o.scenario.name} runs only on ${o.scenario.repos!.join(", ")}, not ${repo}`);
  const sql = chaosSql(repo);
  const rng = new Rng(o.seed);
  const setup = o.scenario.setup(rng);
  const schedule = o.scenario.plan(rng, o.durationMs);
  const dir = tempDir("ferry-chaos-");
  const cl = new ChaosCluster(dir, setup.config, repo);
  const history: History = {
    scenario: o.scenario.name,
    seed: o.seed,
    repo,
    startedAt: started,
    workload: { from: 0, to: 0 },
    writes: [],
    leases: [],
    epochs: [],
    faults: [],
    exits: cl.exits,
    syncTasks: [],
    alerts: [],
    setup: [],
  };
  const resyncs: RunReport["resyncs"] = [];
  const stoppers: (() => void)[] = [];
  let final: FinalState = { quiescent: { ok: false, detail: "not reached", ms: 0 }, dumps: {}, keys: {}, sync: [], crashLines: {}, running: [] };
  let error: string | undefined;
  let writers: ReturnType<typeof startWriter>[] = [];
  // DB of DB.TABLE for sync tasks: the repository's own name for it (read once the tables exist).
  let db = sql.defaultDb;

  try {
    say(`chaos ${o.scenario.name} seed ${o.seed} on ${repo}: ${schedule.filter((f) => f.kind !== "sync-task").length} faults over ${o.durationMs / 1000} s; cluster in ${dir}`);
    await Promise.all([cl.startNats(), cl.startRepositories()]);
    const c = await cl.client();
    const b = await c.buckets();

    // Observers: the master lease (watch, and a poll in case the watch lags across a reconnect),
    // every node's heartbeat epoch, and every alert.
    const seenRev = new Set<number>();
    const recordLease = (e: { revision: number; operation: string; value: Uint8Array } | null) => {
      if (!e || seenRev.has(e.revision)) return;
      seenRev.add(e.revision);
      const v = e.operation === "PUT" ? decodeLease(e.value) : null;
      history.leases.push({ at: Date.now(), revision: e.revision, op: e.operation as "PUT", node: v?.node ?? null, epoch: v?.epoch ?? null, instance: v ? String(v.instance) : undefined });
    };
    let observing = true;
    stoppers.push(() => (observing = false));
    void (async () => {
      while (observing) {
        try {
          const w = await b.leases.watch({ key: "master" });
          stoppers.push(() => w.stop());
          for await (const e of w) {
            if (!observing) break;
            recordLease(e);
          }
        } catch {
          /* reconnecting */
        }
        await sleep(200);
      }
    })();
    const poll = setInterval(() => void b.leases.get(LEASE_KEY.master).then(recordLease, () => {}), 100);
    stoppers.push(() => clearInterval(poll));
    const hb = subscribeHeartbeats(c.nc, c.subj, (h) => {
      if ((h.role === "master" || h.role === "slave") && typeof h.epoch === "number") {
        history.epochs.push({ at: Number(h.ts) || Date.now(), node: h.node, instance: String(h.instance), pid: Number(h.pid), epoch: h.epoch, state: String(h.state) });
      }
    });
    stoppers.push(() => hb.unsubscribe());
    const al = c.nc.subscribe(c.subj.alert, {
      callback: (_e, m) => {
        try {
          const a = m.json<{ ts: string; kind: string; node: string; message: string; data?: Record<string, unknown> }>();
          const at = Date.now();
          history.alerts.push({ at, kind: a.kind, node: a.node, message: a.message, data: a.data });
          if (a.kind === "sync-task-complete") {
            const t = history.syncTasks.find((x) => !x.completedAt && `${x.db ?? "main"}.${x.table}` === a.data?.task);
            if (t) t.completedAt = at;
          }
          if (a.kind === "sync-subtask-failed") {
            const t = history.syncTasks.find((x) => !x.completedAt && `${x.db ?? "main"}.${x.table}` === a.data?.task);
            if (t) t.error = a.message;
          }
        } catch {
          /* not ferry's */
        }
      },
    });
    stoppers.push(() => al.unsubscribe());

    const member = async (id: string) => (await cl.status()).members.find((m) => m.node === id) as Record<string, any> | undefined;
    const waitMember = (id: string, what: string, pred: (m: Record<string, any>) => boolean, timeoutMs = 60_000) =>
      waitFor(`${id} ${what}`, async () => {
        const m = await member(id);
        return m && m.up && pred(m);
      }, { timeoutMs, intervalMs: 250 });

    say(`  NATS cluster${repo === "postgres" ? " and PostgreSQL servers" : ""} up (${Date.now() - started} ms)`);
    // A process that does not come up in time is recorded (with a Node diagnostic report of what it
    // was waiting on), killed and started once more: the run goes on, the report says so.
    const comeUp = async (id: string, what: string, pred: (m: Record<string, any>) => boolean) => {
      try {
        await waitMember(id, what, pred, 30_000);
      } catch {
        const log = join(dir, `${id}.log`);
        const empty = !existsSync(log) || readFileSync(log, "utf8").trim() === "";
        cl.signal(id, "SIGUSR2", "diagnostic report");
        await sleep(1500);
        const note = `${id} was not ${what} 30 s after its start (${empty ? "its log is empty" : "see its log"}); a diagnostic report (report.*.json) was taken, and it was killed and started again`;
        history.setup.push(note);
        say(`  setup: ${note}`);
        cl.signal(id, "SIGKILL", "setup restart");
        await cl.slots.get(id)!.proc?.exited;
        cl.start(id);
        await waitMember(id, what, pred, 60_000);
      }
    };
    cl.define();
    cl.start("m1");
    await comeUp("m1", "active", (m) => m.state === "active");
    cl.start("s1");
    cl.start("s2");
    await comeUp("s1", "streaming", (m) => m.replica === "streaming");
    await comeUp("s2", "streaming", (m) => m.replica === "streaming");
    say(`  master and slaves up (${Date.now() - started} ms)`);
    // The secondary watchdog after the primary holds the lease: on a loaded machine a secondary
    // started with it can take the lease first (its grace for the primary runs out while the
    // primary's process is still starting), and the primary then rightly stays standby.
    for (const p of ["w1", "c1", "c2", "st1"]) cl.start(p);
    // Idempotent, and retried: on a busy machine the master may lose its lease during the setup too.
    const setupSql = (sql: string) =>
      waitFor(`setup: ${sql.slice(0, 60)}`, async () => {
        await cl.sql(sql, undefined, 15_000);
        return true;
      }, { timeoutMs: 90_000, intervalMs: 500 });
    await setupSql(sql.tables);
    for (const [t, n] of Object.entries(setup.syncTables)) await setupSql(sql.syncTable(t, n));
    await comeUp("w1", "active", (m) => m.state === "active");
    cl.start("w2");
    await comeUp("w2", "up", () => true);
    await comeUp("st1", "active", (m) => m.state === "active");
    await comeUp("c1", "active", (m) => m.state === "active");
    await comeUp("c2", "active", (m) => m.state === "active");
    await waitFor("replicas identical before the workload", () => same(cl), { timeoutMs: 60_000, intervalMs: 250 });
    const firstTable = Object.keys(setup.syncTables)[0];
    if (firstTable) db = (await cl.readRepo("m1", (r) => r.tableColumns(firstTable)).catch(() => null))?.db ?? db;

    say(`  all processes up, tables created (${Date.now() - started} ms)`);
    // The operator: a node that reports it needs a resync gets `ferry resync --node` (backup and restore).
    let operating = true;
    const operator = (async () => {
      while (operating) {
        try {
          const s = await cl.status();
          const holder = s.leases.master?.node;
          const m = s.members.find((x) => x.node === holder && x.up && x.state === "active");
          for (const x of s.members as Record<string, any>[]) {
            if (!operating || !m || !(NODES as readonly string[]).includes(x.node) || x.node === holder || !x.up || !x.needsResync) continue;
            if (!cl.running(x.node) || cl.paused(x.node)) continue;
            const at = Date.now();
            say(`  operator: ${x.node} needs a resync (${String(x.resyncReason ?? x.error?.message ?? "").slice(0, 120)}); running ferry resync --node ${x.node}`);
            const r = await cl.cli(["resync", "--node", x.node], 120_000);
            resyncs.push({ node: x.node, at, ms: Date.now() - at, ok: r.code === 0, reason: String(x.resyncReason ?? x.error?.message ?? ""), output: (r.stdout + r.stderr).trim().slice(0, 500) });
          }
        } catch {
          /* NATS may be faulty right now */
        }
        await sleep(1000);
      }
    })();
    stoppers.push(() => (operating = false));

    // The workload: two writers, one shared sequence of k.
    let k = 0;
    const statement = (id: number, who: string) => ({ sql: sql.insert, params: [id, who] });
    history.workload.from = Date.now();
    writers = ["wa", "wb"].map((who) => startWriter(cl, { who, nextId: () => k++, statement, pauseMs: 5, waitMs: 15_000 }));

    const ctx: FaultContext = {
      cl,
      history,
      sql,
      db,
      master: () => {
        const last = [...history.leases].filter((l) => l.op === "PUT").sort((a, b) => b.revision - a.revision)[0];
        return last?.node && !String(last.instance).startsWith("handover-") ? last.node : null;
      },
      log: say,
    };
    const t0 = history.workload.from;
    const pendingHeals: Promise<void>[] = [];
    for (const [n, f] of schedule.entries()) {
      await sleep(t0 + f.offsetMs - Date.now());
      const rec: FaultRecord = { n, kind: f.kind, target: f.target, offsetMs: f.offsetMs, durationMs: f.durationMs, params: f.params, notes: [] };
      history.faults.push(rec);
      rec.injectedAt = Date.now();
      let heal: () => Promise<void>;
      try {
        heal = await inject(ctx, f, rec);
      } catch (err) {
        rec.skipped = `injection failed: ${(err as Error).message}`;
        heal = async () => {};
      }
      const label = `${f.kind} ${f.target}${rec.resolved && rec.resolved !== f.target ? ` (${rec.resolved})` : ""}${f.params ? ` ${JSON.stringify(f.params)}` : ""}`;
      say(`  +${((rec.injectedAt - t0) / 1000).toFixed(1)}s ${rec.skipped ? `skipped ${label}: ${rec.skipped}` : label}${f.durationMs && f.kind !== "sync-task" ? ` for ${f.durationMs} ms` : ""}`);
      if (rec.skipped || f.kind === "sync-task") continue;
      const healLater = async () => {
        if (f.kind !== "backlog") await sleep(rec.injectedAt! + f.durationMs - Date.now());
        try {
          await heal();
        } catch (err) {
          rec.notes.push(`heal failed: ${(err as Error).message}`);
        }
        rec.healedAt = Date.now();
      };
      // A concurrent fault heals in the background: the next fault comes while it lasts.
      if (f.concurrent) pendingHeals.push(healLater());
      else await healLater();
    }
    await Promise.all(pendingHeals);
    await sleep(t0 + o.durationMs - Date.now());
    say(`  workload stops after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await Promise.all(writers.map((w) => w.stop()));
    history.workload.to = Date.now();

    // Heal everything, restart what is down, and wait until the cluster is quiet and identical.
    cl.healAll();
    for (const { server } of cl.pg.values()) if (!server.pid) await server.start();
    for (let i = 0; i < cl.nats.length; i++) if (!cl.natsRunning(i)) await cl.startNatsServer(i);
    for (const p of PROCESSES) if (!cl.running(p)) cl.start(p);
    const q0 = Date.now();
    let detail = "";
    try {
      await waitFor("quiescence", async () => {
        detail = await notQuiet(cl);
        return detail === "";
      }, { timeoutMs: 120_000, intervalMs: 1000 });
      final.quiescent = { ok: true, detail: "settled", ms: Date.now() - q0 };
    } catch {
      final.quiescent = { ok: false, detail: detail || "timed out", ms: Date.now() - q0 };
    }
    say(`  ${final.quiescent.ok ? `quiet after ${final.quiescent.ms} ms` : `NOT quiet: ${final.quiescent.detail}`}`);
    const pending = history.syncTasks.filter((t) => !t.error);
    if (pending.length) {
      await waitFor("sync tasks complete", () => pending.every((t) => t.completedAt || t.error), { timeoutMs: 90_000, intervalMs: 500 }).catch(() => {});
    }
    operating = false;
    await operator;
    final = { ...final, ...(await readFinal(cl, history)) };
  } catch (err) {
    error = (err as Error).stack ?? String(err);
    say(`  run error: ${(err as Error).message}`);
    await Promise.all(writers.map((w) => w.stop())).catch(() => {});
    if (!history.workload.to) history.workload.to = Date.now();
    try {
      final = { ...final, ...(await readFinal(cl, history)) };
    } catch {
      /* as much as could be read */
    }
  } finally {
    for (const s of stoppers) s();
    history.writes = writers.flatMap((w, i) => w.records.map(({ id, ...r }: WriteRecord): WriteOp => ({ writer: i === 0 ? "wa" : "wb", k: id, ...r })));
    history.writes.sort((a, b) => a.invokedAt - b.invokedAt);
    await cl.stop().catch((err) => say(`  stop failed: ${(err as Error).message}`));
  }

  const invariants = checkAll(history, final);
  const ok = !error && invariants.every((i) => i.ok);
  const report = buildReport(o, repo, started, setup.config, schedule, invariants, history, final, resyncs, ok, error);
  writeReport(o.outDir, report, ok && history.setup.length === 0 ? null : cl);
  if (!process.env.FERRY_KEEP_TEST_DIRS) rmSync(dir, { recursive: true, force: true });
  return report;
}

/**
 * A node's dump as the run compares it. PostgreSQL: the schema objects' lines sorted (the dump
 * lists serial columns' "sequence owner" lines in catalog order, which differs between a node
 * that created the tables and one restored from a snapshot); every object's definition and every
 * row is still compared as dumped.
 */
async function dumpOf(cl: ChaosCluster, node: string): Promise<string> {
  const d = await cl.readRepo(node, (r) => r.dump());
  if (cl.repoKind !== "postgres") return d;
  const lines = d.split("\n");
  const isRow = (l: string) => /^[^ |]+\|/.test(l);
  const n = lines.findIndex(isRow);
  const end = n < 0 ? lines.length - 1 : n;
  return [...lines.slice(0, end).sort(), ...lines.slice(end)].join("\n");
}

/** Replicas' user tables identical now (false while a repository cannot be read). */
async function same(cl: ChaosCluster): Promise<boolean> {
  try {
    const d = await Promise.all(NODES.map((n) => dumpOf(cl, n)));
    return d.every((x) => x === d[0]);
  } catch {
    return false;
  }
}

/** Why the cluster is not quiet yet ("" when it is). */
async function notQuiet(cl: ChaosCluster): Promise<string> {
  for (const p of PROCESSES) if (!cl.running(p)) return `${p} is not running`;
  const s = await cl.status();
  const holder = s.leases.master?.node;
  const m = s.members.find((x) => x.node === holder) as Record<string, any> | undefined;
  if (!holder || !m?.up || m.state !== "active") return `no live master (lease: ${holder ?? "free"}, its state ${m?.state ?? "?"})`;
  for (const n of NODES) {
    if (n === holder) continue;
    const x = s.members.find((y) => y.node === n) as Record<string, any> | undefined;
    if (!x?.up) return `${n} is not up`;
    if (x.needsResync) return `${n} needs a resync: ${String(x.resyncReason ?? x.error?.message ?? "")}`;
    if (x.state !== "standby" || x.replica !== "streaming") return `${n} is ${x.state}/${x.replica}`;
  }
  for (const p of ["w1", "w2", "c1", "c2", "st1"]) {
    const x = s.members.find((y) => y.node === p) as Record<string, any> | undefined;
    if (!x?.up) return `${p} is not up`;
  }
  if (!(await same(cl))) return "replicas differ";
  return "";
}

/**
 * Every row of a table as the repository's table reader gives it: JSON objects, as in a sync
 * task's files (blobs as {"$blob": HEX}).
 */
async function readTable(r: Repository, table: string): Promise<{ columns: string[]; rows: Record<string, unknown>[] }> {
  const reader = await r.openTableReader({ table });
  try {
    const rows: Record<string, unknown>[] = [];
    for (let c = await reader.next(1 << 20); c; c = await reader.next(1 << 20)) for (const l of c.text.split("\n")) if (l) rows.push(JSON.parse(l));
    return { columns: reader.header.table.columns, rows };
  } finally {
    await reader.close();
  }
}

/** Every k in table w, one entry per row. */
async function readKeys(r: Repository): Promise<number[]> {
  return (await readTable(r, "w")).rows.map((x) => Number(x.k));
}

async function tableRows(r: Repository, table: string): Promise<{ columns: string[]; rows: string[] }> {
  const { columns, rows } = await readTable(r, table);
  return { columns, rows: rows.map((x) => canon(columns, x)) };
}

const canon = (columns: string[], r: Record<string, unknown>) => JSON.stringify(columns.map((c) => r[c] ?? null));

/** Every row in a task's files (snapshot and stream files of every partition). */
function fileRows(dest: string, table: string, columns: string[]): string[] {
  const root = join(dest, table);
  if (!existsSync(root)) return [];
  const out: string[] = [];
  for (const d of readdirSync(root).sort()) {
    for (const f of readdirSync(join(root, d)).sort()) {
      if (!f.endsWith(".jsonl")) continue;
      for (const line of readFileSync(join(root, d, f), "utf8").split("\n")) {
        if (!line) continue;
        const r = JSON.parse(line) as Record<string, unknown>;
        out.push(canon(columns, (r.row as Record<string, unknown>) ?? r));
      }
    }
  }
  return out;
}

async function readFinal(cl: ChaosCluster, h: History): Promise<Omit<FinalState, "quiescent">> {
  const dumps: Record<string, string> = {};
  const keys: Record<string, number[]> = {};
  for (const n of NODES) {
    try {
      dumps[n] = await dumpOf(cl, n);
      keys[n] = await cl.readRepo(n, readKeys);
    } catch (err) {
      dumps[n] = `unreadable: ${(err as Error).message}`;
      keys[n] = [];
    }
  }
  const master = (() => {
    const e = [...epochHolders(h.leases)].sort((a, b) => b[0] - a[0])[0];
    return e?.[1].node ?? "m1";
  })();
  const sync: FinalState["sync"] = [];
  for (const t of h.syncTasks) {
    if (!t.completedAt) continue;
    const { columns, rows } = await cl.readRepo(master, (r) => tableRows(r, t.table));
    sync.push({ table: t.table, dest: t.dest, want: rows, got: fileRows(t.dest, t.table, columns) });
  }
  const crashLines: Record<string, string[]> = {};
  for (const p of PROCESSES) {
    const file = join(cl.dir, `${p}.log`);
    if (!existsSync(file)) continue;
    const bad: string[] = [];
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (!line.trim()) continue;
      if (line.startsWith("{")) {
        try {
          if (Number(JSON.parse(line).level) >= 60) bad.push(line);
        } catch {
          bad.push(`unparsable log line: ${line}`);
        }
      } else if (/error|uncaught|unhandled|fatal|^ferry: /i.test(line)) bad.push(line);
    }
    if (bad.length) crashLines[p] = bad;
  }
  return { dumps, keys, sync, crashLines, running: PROCESSES.filter((p) => cl.running(p)) };
}

function buildReport(
  o: RunOptions,
  repo: RepositoryKind,
  started: number,
  config: Record<string, unknown>,
  schedule: PlannedFault[],
  invariants: InvariantResult[],
  h: History,
  f: FinalState,
  resyncs: RunReport["resyncs"],
  ok: boolean,
  error: string | undefined,
): RunReport {
  const acked = h.writes.filter((w) => w.outcome === "ok");
  const t0 = h.workload.from || started;
  const holders = [...epochHolders(h.leases)].sort((a, b) => a[0] - b[0]);
  const faults = faultFigures(h, t0);
  const done = acked.map((w) => w.doneAt).sort((a, b) => a - b);
  let gap = done.length ? done[0] - t0 : 0;
  for (let i = 1; i < done.length; i++) gap = Math.max(gap, done[i] - done[i - 1]);
  const lost = new Set<number>();
  for (const keys of Object.values(f.keys)) {
    const have = new Set(keys);
    for (const w of acked) if (!have.has(w.k)) lost.add(w.k);
  }
  const dumpLines = Object.fromEntries(Object.entries(f.dumps).map(([n, d]) => [n, d.split("\n").length]));
  return {
    scenario: o.scenario.name,
    seed: o.seed,
    repo,
    durationMs: o.durationMs,
    ok,
    knownFailing: o.scenario.knownFailing,
    error,
    startedAt: new Date(started).toISOString(),
    wallMs: Date.now() - started,
    config,
    schedule,
    invariants,
    figures: {
      writes: { ok: acked.length, failed: h.writes.filter((w) => w.outcome === "failed").length, unknown: h.writes.filter((w) => w.outcome === "unknown").length },
      ackedLost: lost.size,
      failovers: h.alerts.filter((a) => a.kind === "promoted").length,
      leaseEpochs: holders.length,
      worstFailoverMs: worstFailover(faults),
      worstWritesResumedMs: worstWritesResumed(faults),
      worstResumeAfterFailoverMs: worstResumeAfterFailover(faults),
      longestWriteGapMs: gap,
      resyncs: resyncs.length,
      syncTasks: { created: h.syncTasks.length, completed: h.syncTasks.filter((t) => t.completedAt).length },
      setupRestarts: h.setup.length,
    },
    faults,
    resyncs,
    history: h,
    final: { quiescent: f.quiescent, sync: f.sync.map((s) => ({ ...s, want: [], got: [], wantRows: s.want.length, gotRows: s.got.length })) as FinalState["sync"], crashLines: f.crashLines, running: f.running, dumpLines },
  };
}

/**
 * Per fault: when it was injected, and for a fault of the master how long until another node held
 * the lease. Only a new lease epoch before the next fault of the master counts: when the master
 * came back first (restarted, or the cut healed) there was no failover, and the next fault's
 * failover is that fault's. Exported: `--summary` recomputes old reports with it.
 */
export function faultFigures(h: History, t0: number): FaultFigure[] {
  const acked = h.writes.filter((w) => w.outcome === "ok");
  const holders = [...epochHolders(h.leases)].sort((a, b) => a[0] - b[0]);
  const ofMaster = (r: History["faults"][number]) =>
    !r.skipped &&
    !!r.injectedAt &&
    ((["kill", "pause", "cut", "pg-kill"].includes(r.kind) &&
      (r.target === "master" || (!!r.resolved && latestHolderAt(holders, r.injectedAt) === r.resolved))) ||
      (r.kind === "nats-kill" && r.target === "nats-master"));
  const masterFaults = h.faults.filter(ofMaster).map((r) => r.injectedAt!);
  return h.faults.map((r) => {
    const fig: FaultFigure = { n: r.n, kind: r.kind, target: r.target, resolved: r.resolved, atS: Number((((r.injectedAt ?? t0) - t0) / 1000).toFixed(1)), durationMs: r.durationMs, skipped: r.skipped, notes: r.notes };
    if (r.skipped || !r.injectedAt || r.kind === "sync-task") return fig;
    const at = r.injectedAt;
    const before = ofMaster(r) ? latestHolderAt(holders, at) : null;
    if (ofMaster(r)) {
      const nextFault = masterFaults.find((t) => t > at) ?? Infinity;
      const until = r.kind === "nats-kill" ? Math.min(nextFault, (r.healedAt ?? at) + 5000) : nextFault;
      const next = holders.find(([, v]) => v.firstSeen > at && v.firstSeen < until);
      const moved = next && next[1].node !== before ? next[1].firstSeen - at : null;
      // Killing the master's NATS server may or may not cost it the lease: shown when it did.
      if (r.kind !== "nats-kill" || moved !== null) fig.failoverMs = moved;
      if (next && next[1].node === before) fig.notes = [...fig.notes, `${before} took the lease back after ${next[1].firstSeen - at} ms`];
    }
    let resumed: number | null = null;
    for (const w of acked) {
      if (w.doneAt >= at && (w.invokedAt >= at || (before !== null && w.node !== before)) && (resumed === null || w.doneAt < resumed)) resumed = w.doneAt;
    }
    fig.writesResumedMs = resumed === null ? null : resumed - at;
    return fig;
  });
}

export function worstFailover(faults: FaultFigure[]): number | null {
  const times = faults.map((x) => x.failoverMs).filter((x): x is number => typeof x === "number");
  return times.length ? Math.max(...times) : null;
}

/** The longest the writers waited after a fault of the master that failed over. */
export function worstWritesResumed(faults: FaultFigure[]): number | null {
  const times = faults.filter((x) => typeof x.failoverMs === "number").map((x) => x.writesResumedMs).filter((x): x is number => typeof x === "number");
  return times.length ? Math.max(...times) : null;
}

/** The most the writers' resumption lagged behind the failover itself (target: 1 s). */
export function worstResumeAfterFailover(faults: FaultFigure[]): number | null {
  const lags = faults.filter((x) => typeof x.failoverMs === "number" && typeof x.writesResumedMs === "number").map((x) => x.writesResumedMs! - x.failoverMs!);
  return lags.length ? Math.max(...lags) : null;
}

function latestHolderAt(holders: [number, { node: string; firstSeen: number }][], t: number): string | null {
  let h: string | null = null;
  for (const [, v] of holders) if (v.firstSeen <= t) h = v.node;
  return h;
}

export function summarize(r: RunReport): string {
  const lines: string[] = [];
  const f = r.figures;
  lines.push(`chaos ${r.scenario} seed ${r.seed} on ${r.repo ?? "sqlite"}: ${r.ok ? "PASS" : r.knownFailing ? "FAIL (known: " + r.knownFailing + ")" : "FAIL"} (${(r.durationMs / 1000).toFixed(0)} s workload, ${(r.wallMs / 1000).toFixed(0)} s in all)`);
  if (r.error) lines.push(`  run error: ${r.error.split("\n")[0]}`);
  for (const n of r.history.setup ?? []) lines.push(`  setup: ${n}`);
  lines.push(`  writes: ${f.writes.ok} acknowledged, ${f.writes.failed} failed, ${f.writes.unknown} unknown; acknowledged writes lost: ${f.ackedLost}`);
  lines.push(`  failovers: ${f.failovers} (lease epochs ${f.leaseEpochs}); worst failover ${f.worstFailoverMs ?? "-"} ms; worst writes resumed ${f.worstWritesResumedMs ?? "-"} ms (at most ${f.worstResumeAfterFailoverMs ?? "-"} ms after the failover); longest gap between acknowledgements ${f.longestWriteGapMs} ms; resyncs ${f.resyncs}; sync tasks ${f.syncTasks.completed}/${f.syncTasks.created} complete`);
  lines.push("  faults:");
  for (const x of r.faults) {
    const what = `${x.kind} ${x.target}${x.resolved && x.resolved !== x.target ? ` (${x.resolved})` : ""}`;
    const figs = [x.failoverMs !== undefined ? `failover ${x.failoverMs ?? "none"} ms` : "", x.writesResumedMs !== undefined ? `writes resumed ${x.writesResumedMs ?? "never"} ms` : ""].filter(Boolean).join(", ");
    lines.push(`    +${x.atS.toFixed(1)}s ${what}${x.durationMs && x.kind !== "sync-task" ? ` for ${x.durationMs} ms` : ""}${x.skipped ? ` SKIPPED: ${x.skipped}` : ""}${figs ? `: ${figs}` : ""}${x.notes.length ? ` [${x.notes.join("; ")}]` : ""}`);
  }
  if (r.resyncs.length) for (const s of r.resyncs) lines.push(`  resync ${s.node} at +${((s.at - r.history.workload.from) / 1000).toFixed(1)}s: ${s.ok ? "ok" : "FAILED"}${s.ms !== undefined ? ` after ${(s.ms / 1000).toFixed(1)} s` : ""} (${s.reason.slice(0, 100)})`);
  lines.push("  invariants:");
  for (const i of r.invariants) {
    lines.push(`    ${i.ok ? "PASS" : "FAIL"} ${i.title}: ${i.summary}`);
    for (const e of i.evidence) lines.push(`         ${e}`);
  }
  if (r.logs) lines.push(`  logs kept in ${r.logs}`);
  return lines.join("\n");
}

/** chaos-results/<scenario>-<seed> on SQLite, pg-<scenario>-<seed> on PostgreSQL (then .json, .txt, -logs/). */
export function reportName(r: { scenario: string; seed: number; repo?: RepositoryKind }): string {
  return `${r.repo === "postgres" ? "pg-" : ""}${r.scenario}-${r.seed}`;
}

function writeReport(outDir: string, r: RunReport, failed: ChaosCluster | null): void {
  mkdirSync(outDir, { recursive: true });
  const base = join(outDir, reportName(r));
  if (failed) {
    // Evidence: every process's log and the NATS servers' logs.
    const logs = `${base}-logs`;
    mkdirSync(logs, { recursive: true });
    for (const f of readdirSync(failed.dir)) if (f.endsWith(".log") || f.endsWith(".json")) copyFileSync(join(failed.dir, f), join(logs, f));
    for (let i = 0; i < 3; i++) {
      const f = join(failed.dir, `nats-${i}`, "nats-server.log");
      if (existsSync(f)) copyFileSync(f, join(logs, `nats-${i}.log`));
    }
    for (const [n, { server }] of failed.pg) if (existsSync(server.log)) copyFileSync(server.log, join(logs, `${n}-postgres.log`));
    r.logs = logs;
  }
  writeFileSync(`${base}.json`, JSON.stringify(r, null, 1));
  writeFileSync(`${base}.txt`, summarize(r) + "\n");
}
