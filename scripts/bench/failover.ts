/**
 * The failover benchmark (`npm run bench -- failover [--quick] [--runs N] [--only=A,B,switchover]
 * [--keep-logs]`), with real processes:
 * a nats-server, a master m1, slaves s1 (designated standby) and s2, and a watchdog w1 (TestCluster),
 * in synchronous mode (`replication.syncReplicas = 1`), with a writer (test/helpers/workload.ts)
 * writing continuously through the SQL subject and recording every write's invoke and done times,
 * outcome, replying node and epoch.
 *
 *  1. unplanned  a fault of the master under load, a fresh cluster for each run, lease.ttlMs 2000,
 *                with one writer sending a write every ~50 ms (each a fresh attempt after a failure;
 *                runSql follows the master lease): the time from the fault to the writer's next
 *                write acknowledged by the new master, and from the lease moving to that write.
 *                  A  kill -9 of the master, failover.waitMs 0 (prerequisites 2 and 4 skipped)
 *                  S  SIGSTOP of the master, failover.waitMs 0
 *                  C  a blackhole cut of the master's NATS link (a fault proxy between it and
 *                     the server: both sides stall as on a dead link), failover.waitMs 0
 *                  B  kill -9, failover.waitMs 2000, the default prerequisites (7)
 *                A crashed master is failed over as soon as NATS shows its connection closed; a
 *                paused or cut-off one only after its lease expired (it may still be alive).
 *  2. planned    `ferry switchover --to NODE` (the CLI) under the same load, in one cluster, to
 *                each node in turn: the CLI's own `ms`, and the longest gap between two
 *                acknowledged writes around it (what a client sees).
 *  3. lost       after every run, every acknowledged write is looked up in the new master's and
 *                every surviving replica's tables (dumpFile): the count of missing ones (must be 0).
 *
 * LiteFS (~11 s) and Patroni's defaults (~30 s) are quoted for comparison, not measured.
 * --quick does 3 runs of each instead of 10. FERRY_KEEP_TEST_DIRS=1 keeps every cluster's directory;
 * the logs of a run that failed, lost a write or left a write of unknown outcome in a switchover are
 * copied to an evidence directory under the system temp dir in any case (--keep-logs: every run's).
 * A run that makes no progress for 2 minutes is abandoned and reported as failed, and a status
 * call (KV read) that does not answer within 5 s is given up, retried and reported.
 */
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import Table from "cli-table3";
import { TestCluster, type Member } from "../../test/helpers/cluster.js";
import { FaultProxy } from "../chaos/proxy.js";
import { cleanup } from "../../test/helpers/procs.js";
import { waitFor } from "../../test/helpers/wait.js";
import { idsIn, startWriter, type WriteRecord } from "../../test/helpers/workload.js";
import { log, round } from "./common.js";

const LEASE_TTL_MS = 2000;
const SWITCHOVER_TARGET_MS = 1000;
/** Quoted from their documentation and reports, not measured here. */
const COMPARISON = [
  ["LiteFS, unplanned failover (quoted, not measured)", 11_000],
  ["Patroni defaults, unplanned failover (quoted, not measured)", 30_000],
] as const;

type Fault = "kill" | "stop" | "cut";

interface Scenario {
  key: "A" | "S" | "C" | "B";
  fault: Fault;
  label: string;
  waitMs: number;
  targetMs: number;
  worstMs: number;
  targetText: string;
}

/** pg_auto_failover 2.0 with 100 ms health checks, measured on this kind of machine (issue 11): 1.52 s median. */
const SCENARIOS: Scenario[] = [
  { key: "A", fault: "kill", label: `kill -9: lease.ttlMs ${LEASE_TTL_MS}, failover.waitMs 0`, waitMs: 0, targetMs: 1000, worstMs: 1500, targetText: "median <= 1.0 s, worst <= 1.5 s" },
  { key: "S", fault: "stop", label: `SIGSTOP: lease.ttlMs ${LEASE_TTL_MS}, failover.waitMs 0`, waitMs: 0, targetMs: LEASE_TTL_MS + 500, worstMs: 3500, targetText: "median <= 2.5 s, worst <= 3.5 s" },
  { key: "C", fault: "cut", label: `blackhole cut: lease.ttlMs ${LEASE_TTL_MS}, failover.waitMs 0`, waitMs: 0, targetMs: LEASE_TTL_MS + 500, worstMs: 3500, targetText: "median <= 2.5 s, worst <= 3.5 s" },
  {
    key: "B",
    fault: "kill",
    label: `kill -9: lease.ttlMs ${LEASE_TTL_MS}, failover.waitMs 2000, prerequisites 7`,
    waitMs: 2000,
    targetMs: 2000 + 1000,
    worstMs: 2000 + 1500,
    targetText: "median <= 3.0 s (wait + 1 s)",
  },
];
/** The lease moving to the writer's next acknowledged write. */
const LEASE_TO_ACK_TARGET_MS = 300;

/** A cluster's config: the defaults, except what the measure is about. */
function clusterConfig(waitMs: number): Record<string, unknown> {
  return {
    lease: { ttlMs: LEASE_TTL_MS, safetyMarginMs: 1000 },
    replication: { heartbeatMs: 1000, pollMs: 1000, syncReplicas: 1, syncTimeoutMs: 5000 },
    failover: { waitMs, prerequisites: 7, maxAutomatic: 1 },
    log: { level: "info" },
  };
}

interface Alert {
  kind: string;
  node: string;
  message: string;
  ts: string;
  receivedAt: number;
}

interface LossCheck {
  /** Acknowledged writes checked (every writer). */
  acked: number;
  /** Per node checked: acknowledged writes missing from its tables. */
  missing: Record<string, number>;
  missingIds: Record<string, string[]>;
  converged: boolean;
  /** Writes whose outcome the client could not know (no acknowledgement, no certain refusal). */
  unknown: number;
  unknownPresent: number;
}

interface UnplannedRun {
  scenario: string;
  run: number;
  ok: boolean;
  error?: string;
  newMaster?: string;
  epoch?: number;
  /** fault -> the writer's first write acknowledged by the new master. */
  failoverMs?: number;
  /** fault -> the master lease naming another node, as a client watching it saw it. */
  leaseMovedMs?: number;
  /** kill -> the watchdog's alerts, as received here. */
  leaseLostMs?: number;
  promotedMs?: number;
  /** The write in flight at the kill: when its client learned something, and what. */
  inFlight?: { doneAfterKillMs: number; outcome: string; code?: string };
  ackedBeforeKill?: number;
  /** The write that counted: its writer's table and when it was invoked. */
  firstAck?: { table: string; invokedAfterKillMs: number };
  /** Each writer's records from the kill to that write (relative times), to see what clients met. */
  afterKill?: Record<string, string[]>;
  loss?: LossCheck;
  setupMs?: number;
  evidence?: string;
}

interface SwitchoverRun {
  run: number;
  ok: boolean;
  error?: string;
  from?: string;
  to?: string;
  /** The CLI's own figure (the master's, from the switchover request to the new holder of the lease). */
  cliMs?: number;
  /** The CLI process from spawn to exit (node start and NATS connect included). */
  cliWallMs?: number;
  /** The longest gap between two consecutive acknowledged writes around the switchover. */
  clientGapMs?: number;
  /** The longest a single write took (invoke to acknowledgement) around the switchover. */
  maxWriteMs?: number;
  /** Writes around the switchover whose outcome the client could not know (ms relative to the CLI's start). */
  unknownWrites?: string[];
  epoch?: number;
}

export async function run(argv: string[] = []): Promise<object> {
  const quick = argv.includes("--quick");
  const at = argv.indexOf("--runs");
  const RUNS = at >= 0 && Number(argv[at + 1]) > 0 ? Number(argv[at + 1]) : quick ? 3 : 10;
  // --only=A,B,switchover runs some parts (e.g. to look at one); the summary covers what ran.
  const only = argv.find((a) => a.startsWith("--only="))?.slice(7).split(",");
  const want = (part: string) => !only || only.includes(part);
  KEEP_LOGS = argv.includes("--keep-logs");
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const evidenceRoot = join(tmpdir(), `ferry-bench-failover-evidence-${stamp}`);
  const started = Date.now();
  const results: Record<string, any> = {
    settings: {
      runs: RUNS,
      leaseTtlMs: LEASE_TTL_MS,
      syncReplicas: 1,
      scenarios: SCENARIOS.map((s) => ({ key: s.key, label: s.label, waitMs: s.waitMs, targetMs: s.targetMs })),
      config: { A: clusterConfig(0), B: clusterConfig(2000) },
      switchoverTargetMs: SWITCHOVER_TARGET_MS,
    },
    loadAverageAtStart: loadavg().map((x) => round(x, 2)),
  };

  const unplanned: UnplannedRun[] = [];
  // Ctrl-C or a kill: exit, so test/helpers/procs.ts stops every process and removes the temp dirs.
  const onSignal = (sig: NodeJS.Signals) => {
    log(`${sig}: stopping the cluster`);
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    for (const sc of SCENARIOS.filter((x) => want(x.key))) {
      for (let i = 1; i <= RUNS; i++) {
        log(`unplanned ${sc.key} run ${i}/${RUNS}: ${sc.label}`);
        const r = await unplannedRun(sc, i, evidenceRoot);
        unplanned.push(r);
        log(
          r.ok
            ? `  ${r.newMaster} took over in ${r.failoverMs} ms (lease lost seen at ${r.leaseLostMs} ms, promoted at ${r.promotedMs} ms); missing writes ${fmtMissing(r.loss)}`
            : `  run failed: ${r.error}`,
        );
      }
    }
    results.unplanned = unplanned;
    if (want("switchover")) {
      log(`planned: ${RUNS} switchovers under load`);
      results.switchover = await switchoverRuns(RUNS, evidenceRoot);
    } else results.switchover = { runs: [] };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
  results.hungStatusCalls = hungStatusCalls;

  // Summary ----------------------------------------------------------------------------------------
  const summary: Record<string, any> = {};
  for (const sc of SCENARIOS) {
    const runs = unplanned.filter((r) => r.scenario === sc.key);
    const ms = runs.filter((r) => r.ok).map((r) => r.failoverMs!);
    const s = stats(ms, runs.length);
    summary[`unplanned${sc.key}`] = { ...s, targetMs: sc.targetMs, worstMs: sc.worstMs, met: s.failed === 0 && s.median !== null && s.median <= sc.targetMs && s.worst! <= sc.worstMs };
  }
  const leaseToAck = unplanned.filter((r) => r.ok && r.leaseMovedMs !== undefined).map((r) => r.failoverMs! - r.leaseMovedMs!);
  const lt = stats(leaseToAck, leaseToAck.length);
  summary.leaseToAckMs = { ...lt, targetMs: LEASE_TO_ACK_TARGET_MS, met: lt.median !== null && lt.median <= LEASE_TO_ACK_TARGET_MS };
  const swRuns = results.switchover.runs as SwitchoverRun[];
  const cli = stats(swRuns.filter((r) => r.ok).map((r) => r.cliMs!), swRuns.length);
  const gap = stats(swRuns.filter((r) => r.ok).map((r) => r.clientGapMs!), swRuns.length);
  summary.switchoverCliMs = { ...cli, targetMs: SWITCHOVER_TARGET_MS, met: cli.failed === 0 && cli.median !== null && cli.median <= SWITCHOVER_TARGET_MS };
  summary.switchoverClientGapMs = { ...gap, targetMs: SWITCHOVER_TARGET_MS, met: gap.failed === 0 && gap.median !== null && gap.median <= SWITCHOVER_TARGET_MS };
  summary.switchoverUnknownWrites = { total: swRuns.reduce((a, r) => a + (r.unknownWrites?.length ?? 0), 0), runsWithAny: swRuns.filter((r) => r.unknownWrites?.length).length };
  const losses = [...unplanned.map((r) => r.loss), results.switchover.loss as LossCheck | undefined].filter((x): x is LossCheck => !!x);
  const lostPerRun = losses.map((l) => Math.max(0, ...Object.values(l.missing)));
  summary.lostWrites = {
    runsChecked: losses.length,
    ackedChecked: losses.reduce((a, l) => a + l.acked, 0),
    total: lostPerRun.reduce((a, b) => a + b, 0),
    worstRun: lostPerRun.length ? Math.max(...lostPerRun) : null,
    unknownOutcome: losses.reduce((a, l) => a + l.unknown, 0),
    met: lostPerRun.every((x) => x === 0) && losses.length === unplanned.length + (want("switchover") ? 1 : 0),
  };
  results.summary = summary;
  results.loadAverageAtEnd = loadavg().map((x) => round(x, 2));
  results.benchSeconds = round((Date.now() - started) / 1000, 1);
  if (unplanned.some((r) => r.evidence) || results.switchover.evidence) results.evidenceDir = evidenceRoot;
  report(results);
  return results;
}

// Unplanned failover ---------------------------------------------------------------------------------

/**
 * What a run may be doing; a run that makes no progress for its deadline is abandoned (and every
 * later step of it refuses to start), so one hang cannot stall the whole benchmark.
 */
class RunCtx {
  phase = "starting";
  cancelled = false;
  cl: TestCluster | null = null;
  /** Between the master and NATS, for a cut. */
  proxy: FaultProxy | null = null;
  step(phase: string): void {
    if (this.cancelled) throw new Error(`abandoned (was ${this.phase})`);
    this.phase = phase;
  }
  async within<T>(ms: number, body: () => Promise<T>): Promise<T> {
    let t: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, rej) => (t = setTimeout(() => rej(new Error(`no result within ${ms / 1000} s, while ${this.phase}`)), ms)));
    try {
      return await Promise.race([body(), deadline]);
    } catch (err) {
      this.cancelled = true;
      throw err;
    } finally {
      clearTimeout(t);
    }
  }
}

/** Status calls (KV reads) that did not answer within STATUS_CALL_MS, each with what was waited for. */
const hungStatusCalls: { at: string; what: string }[] = [];
const STATUS_CALL_MS = 5000;

/** Like TestCluster.waitMember, but one status call that does not answer is given up and retried. */
async function waitMember(cl: TestCluster, id: string, what: string, pred: (m: Member) => boolean, timeoutMs = 30_000): Promise<Member> {
  return waitFor(`${id}: ${what}`, async () => {
    let t: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, rej) => (t = setTimeout(() => {
      hungStatusCalls.push({ at: new Date().toISOString(), what: `${id}: ${what}` });
      rej(new Error(`a status call did not answer within ${STATUS_CALL_MS} ms`));
    }, STATUS_CALL_MS)));
    try {
      const m = await Promise.race([cl.member(id), late]);
      return m && m.up && pred(m) ? m : null;
    } finally {
      clearTimeout(t);
    }
  }, { timeoutMs });
}

async function healthyCluster(ctx: RunCtx, waitMs: number, alerts: Alert[], viaProxy = false): Promise<TestCluster> {
  ctx.step("starting nats-server");
  const cl = await TestCluster.start({ config: clusterConfig(waitMs) });
  ctx.cl = cl;
  if (viaProxy) ctx.proxy = await FaultProxy.start("m1", [cl.nats.port]);
  const c = await cl.client();
  c.nc.subscribe(c.subj.alert, {
    callback: (_e, m) => {
      try {
        alerts.push({ ...(m.json() as Omit<Alert, "receivedAt">), receivedAt: Date.now() });
      } catch {
        /* not ours */
      }
    },
  });
  ctx.step("starting the master");
  cl.startNode("m1", "master", ctx.proxy ? ["--nats", ctx.proxy.urls[0]] : []);
  await waitMember(cl, "m1", "active master", (m) => m.state === "active");
  ctx.step("starting the slaves and the watchdog");
  cl.startNode("s1", "slave", ["--designated", "standby"]);
  cl.startNode("s2", "slave");
  cl.startWatchdog("w1", "primary");
  await waitMember(cl, "s1", "streaming", (m) => m.replica === "streaming");
  await waitMember(cl, "s2", "streaming", (m) => m.replica === "streaming");
  await waitMember(cl, "w1", "active", (m) => m.state === "active");
  ctx.step("creating the tables");
  await cl.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
  await cl.waitConverged("m1", ["s1", "s2"]);
  return cl;
}

const RUN_DEADLINE_MS = 120_000;
/** --keep-logs: copy every run's logs to the evidence directory (not only those of runs that went wrong). */
let KEEP_LOGS = false;

async function unplannedRun(sc: Scenario, i: number, evidenceRoot: string): Promise<UnplannedRun> {
  const out: UnplannedRun = { scenario: sc.key, run: i, ok: false };
  const alerts: Alert[] = [];
  const ctx = new RunCtx();
  const writers: ReturnType<typeof startWriter>[] = [];
  try {
    await ctx.within(RUN_DEADLINE_MS, async () => {
      const t0 = Date.now();
      const cl = await healthyCluster(ctx, sc.waitMs, alerts, sc.fault === "cut");
      out.setupMs = Date.now() - t0;
      ctx.step("writing before the fault");
      const load = startWriter(cl, { table: "w", who: "load", pauseMs: 50, waitMs: 60_000 });
      writers.push(load);
      // Load for a while, so the watchdog has seen every member's heartbeat and the replicas are busy.
      const loadFrom = Date.now();
      await waitFor("writes before the fault", () => load.acked().length >= 30 && Date.now() - loadFrom >= 2500, { timeoutMs: 30_000 });
      out.ackedBeforeKill = load.acked().length;
      const follower = (await (await cl.client()).master())!;
      let movedAt = 0;
      follower.onChange((to) => void (to && to.node !== "m1" && !movedAt && (movedAt = Date.now())));

      ctx.step("waiting for a new master");
      const faultAt = Date.now();
      injectFault(ctx, sc.fault);
      const afterFault = () => load.acked().filter((r) => r.doneAt >= faultAt && r.node !== "m1");
      await waitFor("a write acknowledged by a new master", () => afterFault().length > 0, { timeoutMs: 40_000, intervalMs: 10 });
      const first = afterFault().sort((a, b) => a.doneAt - b.doneAt)[0];
      out.failoverMs = first.doneAt - faultAt;
      out.leaseMovedMs = movedAt ? movedAt - faultAt : undefined;
      out.firstAck = { table: "w", invokedAfterKillMs: first.invokedAt - faultAt };
      out.newMaster = first.node;
      out.epoch = first.epoch;
      const lost = alerts.find((a) => a.kind === "master-lease-lost");
      const promoted = alerts.find((a) => a.kind === "promoted");
      out.leaseLostMs = lost ? lost.receivedAt - faultAt : undefined;
      out.promotedMs = promoted ? promoted.receivedAt - faultAt : undefined;
      ctx.step("writing on the new master");
      await waitFor("more writes on the new master", () => afterFault().length >= 30, { timeoutMs: 20_000, intervalMs: 20 });
      await load.stop();
      out.afterKill = {
        w: load.records
          .filter((r) => r.doneAt >= faultAt && r.invokedAt <= first.doneAt)
          .slice(0, 8)
          .map((r) => `${r.invokedAt - faultAt}..${r.doneAt - faultAt} ms ${r.outcome}${r.code ? ` ${r.code}` : ""}${r.node ? ` ${r.node}` : ""}`),
      };
      const stuck = load.records.find((r) => r.invokedAt < faultAt && r.doneAt >= faultAt);
      if (stuck) out.inFlight = { doneAfterKillMs: stuck.doneAt - faultAt, outcome: stuck.outcome, code: stuck.code };
      // The old master, paused or cut off, is not part of the check: it holds at most what it never acknowledged.
      if (sc.fault === "stop") cl.nodes.get("m1")!.kill("SIGKILL");

      ctx.step("checking every acknowledged write");
      const replicas = ["s1", "s2"].filter((n) => n !== first.node);
      out.loss = await checkLoss(cl, first.node!, replicas, writers, ["w"]);
      out.ok = true;
      if (KEEP_LOGS || Object.values(out.loss.missing).some((n) => n > 0) || !out.loss.converged) out.evidence = keepLogs(cl, evidenceRoot, `unplanned-${sc.key}-${i}`);
    });
  } catch (err) {
    out.error = (err as Error).message;
    await Promise.race([Promise.all(writers.map((w) => w.stop())), new Promise((r) => setTimeout(r, 20_000))]);
    if (ctx.cl) out.evidence = keepLogs(ctx.cl, evidenceRoot, `unplanned-${sc.key}-${i}`);
  } finally {
    await closeCluster(ctx);
  }
  return out;
}

function injectFault(ctx: RunCtx, fault: Fault): void {
  const m1 = ctx.cl!.nodes.get("m1")!;
  if (fault === "kill") m1.kill("SIGKILL");
  else if (fault === "stop") m1.kill("SIGSTOP");
  else ctx.proxy!.set({ mode: "blackhole" });
}

/** Stops a cluster's processes and removes its directory (kept with FERRY_KEEP_TEST_DIRS=1). */
async function closeCluster(ctx: RunCtx): Promise<void> {
  ctx.cl?.nodes.get("m1")?.kill("SIGKILL");
  await ctx.proxy?.stop();
  await Promise.race([ctx.cl?.close(), new Promise((r) => setTimeout(r, 15_000))]);
  await cleanup();
}

/** Every acknowledged write, looked up in the master's and the replicas' tables. */
async function checkLoss(cl: TestCluster, master: string, replicas: string[], writers: ReturnType<typeof startWriter>[], tables: string[]): Promise<LossCheck> {
  let converged = true;
  await cl.waitConverged(master, replicas, 30_000).catch(() => (converged = false));
  const check: LossCheck = { acked: 0, missing: {}, missingIds: {}, converged, unknown: 0, unknownPresent: 0 };
  const dumps = Object.fromEntries([master, ...replicas].map((n) => [n, cl.dump(n)]));
  for (const n of Object.keys(dumps)) {
    check.missing[n] = 0;
    check.missingIds[n] = [];
  }
  writers.forEach((w, k) => {
    const table = tables[k];
    const acked = w.acked();
    check.acked += acked.length;
    for (const [n, dump] of Object.entries(dumps)) {
      const ids = new Set(idsIn(dump, table));
      for (const r of acked) {
        if (!ids.has(r.id)) {
          check.missing[n]++;
          if (check.missingIds[n].length < 20) check.missingIds[n].push(`${table}:${r.id} (acked by ${r.node} epoch ${r.epoch})`);
        }
      }
    }
    const unknown = w.records.filter((r) => r.outcome === "unknown");
    check.unknown += unknown.length;
    const onMaster = new Set(idsIn(dumps[master], table));
    check.unknownPresent += unknown.filter((r) => onMaster.has(r.id)).length;
  });
  return check;
}

// Planned switchover ---------------------------------------------------------------------------------

type SwitchoverResult = { runs: SwitchoverRun[]; loss?: LossCheck; error?: string; evidence?: string; unexpectedAlerts?: string[] };

async function switchoverRuns(runs: number, evidenceRoot: string): Promise<SwitchoverResult> {
  const alerts: Alert[] = [];
  const out: SwitchoverRun[] = [];
  const ctx = new RunCtx();
  const held: { w?: ReturnType<typeof startWriter> } = {};
  const result: SwitchoverResult = { runs: out };
  try {
    await ctx.within(RUN_DEADLINE_MS + runs * 30_000, async () => {
      const cl = await healthyCluster(ctx, 2000, alerts);
      const load = (held.w = startWriter(cl, { table: "w", who: "load" }));
      const nodes = ["m1", "s1", "s2"];
      let master = "m1";
      for (let i = 1; i <= runs; i++) {
        const to = nodes[(nodes.indexOf(master) + 1) % nodes.length];
        const r: SwitchoverRun = { run: i, ok: false, from: master, to };
        out.push(r);
        try {
          // From a healthy cluster: both replicas streaming from the current master, writes flowing.
          ctx.step(`switchover ${i}: waiting for both replicas of ${master} to stream`);
          for (const n of nodes.filter((x) => x !== master)) {
            await waitMember(cl, n, `streaming from ${master}`, (m) => m.state === "standby" && m.replica === "streaming");
          }
          const n0 = load.acked().length;
          const from = Date.now();
          await waitFor("writes before the switchover", () => load.acked().length >= n0 + 30 && Date.now() - from >= 1500, { timeoutMs: 30_000 });
          ctx.step(`switchover ${i}: ferry switchover --to ${to}`);
          const t0 = Date.now();
          const res = await cl.cli(["switchover", "--to", to, "--json"]);
          const t1 = Date.now();
          if (res.code !== 0) throw new Error(`ferry switchover exited ${res.code}: ${res.stderr.trim()}`);
          const body = JSON.parse(res.stdout) as { from: string; to: string; ms: number; epoch: number };
          r.cliMs = body.ms;
          r.cliWallMs = t1 - t0;
          r.epoch = body.epoch;
          ctx.step(`switchover ${i}: writes on ${to}`);
          await waitFor(`writes acknowledged by ${to}`, () => load.acked().filter((x) => x.node === to && x.invokedAt >= t0).length >= 30, { timeoutMs: 20_000, intervalMs: 20 });
          const firstOnTarget = load.acked().find((x) => x.node === to && x.invokedAt >= t0)!;
          r.clientGapMs = longestGap(load.acked(), t0, firstOnTarget.doneAt);
          r.unknownWrites = load.records
            .filter((x) => x.outcome === "unknown" && x.doneAt >= t0 && x.invokedAt <= firstOnTarget.doneAt)
            .map((x) => `w:${x.id} ${x.invokedAt - t0}..${x.doneAt - t0} ms ${x.code ?? ""}`.trim());
          r.maxWriteMs = Math.max(...load.records.filter((x) => x.doneAt >= t0 && x.invokedAt <= firstOnTarget.doneAt).map((x) => x.doneAt - x.invokedAt));
          r.ok = true;
          master = to;
          log(`  switchover ${i}/${runs} ${r.from} -> ${to}: ${r.cliMs} ms (CLI), longest pause between acknowledged writes ${r.clientGapMs} ms`);
        } catch (err) {
          if (ctx.cancelled) throw err;
          r.error = (err as Error).message;
          log(`  switchover ${i}/${runs} failed: ${r.error}`);
          const holder = load.acked().at(-1)?.node;
          if (holder) master = holder;
        }
      }
      ctx.step("checking every acknowledged write");
      await load.stop();
      result.loss = await checkLoss(cl, master, nodes.filter((n) => n !== master), [load], ["w"]);
      const unexpected = alerts.filter((a) => ["master-lease-lost", "promoted", "failover-aborted", "switchover-failed", "fenced"].includes(a.kind));
      if (unexpected.length) result.unexpectedAlerts = unexpected.map((a) => `${a.kind} (${a.node}): ${a.message}`);
      if (KEEP_LOGS || Object.values(result.loss.missing).some((n) => n > 0) || !result.loss.converged || out.some((r) => !r.ok || r.unknownWrites?.length)) {
        result.evidence = keepLogs(cl, evidenceRoot, "switchover");
      }
    });
  } catch (err) {
    result.error = (err as Error).message;
    log(`  switchovers abandoned: ${result.error}`);
    await Promise.race([held.w?.stop(), new Promise((r) => setTimeout(r, 20_000))]);
    if (ctx.cl) result.evidence = keepLogs(ctx.cl, evidenceRoot, "switchover");
  } finally {
    await closeCluster(ctx);
  }
  return result;
}

/** The longest time between consecutive acknowledgements, over the pairs that end at or after `from` and start at or before `to`. */
function longestGap(acked: WriteRecord[], from: number, to: number): number {
  const done = acked.map((r) => r.doneAt).sort((a, b) => a - b);
  let gap = 0;
  for (let k = 1; k < done.length; k++) if (done[k] >= from && done[k - 1] <= to) gap = Math.max(gap, done[k] - done[k - 1]);
  return gap;
}

// Helpers ----------------------------------------------------------------------------------------------

function stats(values: number[], runs: number) {
  const s = [...values].sort((a, b) => a - b);
  const median = s.length === 0 ? null : s.length % 2 ? s[(s.length - 1) / 2] : round((s[s.length / 2 - 1] + s[s.length / 2]) / 2);
  return { runs, ok: s.length, failed: runs - s.length, median, worst: s.length ? s[s.length - 1] : null, best: s.length ? s[0] : null, values };
}

/** Copies a cluster's logs (and its config) to the evidence directory; returns where. */
function keepLogs(cl: TestCluster, root: string, label: string): string {
  const dest = join(root, label);
  try {
    mkdirSync(dest, { recursive: true });
    for (const f of readdirSync(cl.dir)) if (f.endsWith(".log") || f === "ferry.json") copyFileSync(join(cl.dir, f), join(dest, f));
  } catch (err) {
    log(`logs not kept: ${(err as Error).message}`);
  }
  return dest;
}

function fmtMissing(l?: LossCheck): string {
  if (!l) return "not checked";
  return Object.entries(l.missing).map(([n, k]) => `${n} ${k}`).join(", ") + ` of ${l.acked}`;
}

const sec = (ms: number | null | undefined) => (ms === null || ms === undefined ? "-" : `${(ms / 1000).toFixed(2)} s`);

function report(r: Record<string, any>) {
  const s = r.summary;
  const t = new Table({ head: ["measure", "runs", "median", "worst", "target", ""], style: { head: [], border: [] } });
  const verdict = (met: boolean) => (met ? "ok" : "MISSED");
  const runs = (x: { runs: number; failed: number }) => (x.failed ? `${x.runs} (${x.failed} failed)` : String(x.runs));
  for (const sc of SCENARIOS) {
    const x = s[`unplanned${sc.key}`];
    t.push([`unplanned failover, ${sc.label}\n(fault -> the writer's next write acknowledged by the new master)`, runs(x), sec(x.median), sec(x.worst), sc.targetText, verdict(x.met)]);
  }
  const lt = s.leaseToAckMs;
  t.push([`   the lease moving -> the writer's next acknowledged write (every unplanned run)`, runs(lt), sec(lt.median), sec(lt.worst), `median <= ${LEASE_TO_ACK_TARGET_MS / 1000} s`, verdict(lt.met)]);
  t.push([`planned switchover under load: ferry switchover's own ms`, runs(s.switchoverCliMs), sec(s.switchoverCliMs.median), sec(s.switchoverCliMs.worst), `median <= ${SWITCHOVER_TARGET_MS / 1000} s`, verdict(s.switchoverCliMs.met)]);
  t.push([`   what a client sees: longest pause between acknowledged writes`, runs(s.switchoverClientGapMs), sec(s.switchoverClientGapMs.median), sec(s.switchoverClientGapMs.worst), `median <= ${SWITCHOVER_TARGET_MS / 1000} s`, verdict(s.switchoverClientGapMs.met)]);
  t.push([
    `   writes of unknown outcome during the switchovers (no answer in time)`,
    runs(s.switchoverCliMs),
    `${s.switchoverUnknownWrites.total} in all`,
    `${s.switchoverUnknownWrites.runsWithAny} run(s) with any`,
    "0",
    verdict(s.switchoverUnknownWrites.total === 0),
  ]);
  t.push([
    `acknowledged writes lost, synchronous mode (syncReplicas 1)\n(${s.lostWrites.ackedChecked} acknowledged writes over ${s.lostWrites.runsChecked} runs, master and replicas)`,
    String(s.lostWrites.runsChecked),
    `${s.lostWrites.total} in all`,
    s.lostWrites.worstRun === null ? "-" : String(s.lostWrites.worstRun),
    "0",
    verdict(s.lostWrites.met),
  ]);
  for (const [label, ms] of COMPARISON) t.push([label, "", sec(ms), "", "", ""]);
  process.stdout.write(`\nfailover benchmark (load average at start ${r.loadAverageAtStart.join(" ")}, at end ${r.loadAverageAtEnd.join(" ")})\n${t.toString()}\n`);

  const d = new Table({ head: ["run", "new master", "failover", "lease lost seen", "promoted", "lease moved", "in-flight write", "missing"], style: { head: [], border: [] } });
  for (const u of r.unplanned as UnplannedRun[]) {
    d.push([
      `${u.scenario}${u.run}`,
      u.ok ? `${u.newMaster} (epoch ${u.epoch})` : `FAILED: ${u.error}`.slice(0, 60),
      sec(u.failoverMs),
      sec(u.leaseLostMs),
      sec(u.promotedMs),
      sec(u.leaseMovedMs),
      u.inFlight ? `${u.inFlight.outcome}${u.inFlight.code ? ` ${u.inFlight.code}` : ""} after ${sec(u.inFlight.doneAfterKillMs)}` : "-",
      fmtMissing(u.loss),
    ]);
  }
  for (const w of r.switchover.runs as SwitchoverRun[]) {
    d.push([`switchover ${w.run}`, w.ok ? `${w.from} -> ${w.to} (epoch ${w.epoch})` : `FAILED: ${w.error}`.slice(0, 60), sec(w.cliMs), `CLI wall ${sec(w.cliWallMs)}`, `gap ${sec(w.clientGapMs)}`, "", `slowest write ${sec(w.maxWriteMs)}`, w.unknownWrites?.length ? `unknown outcome: ${w.unknownWrites.join(", ")}` : ""]);
  }
  if (r.switchover.loss) d.push(["switchover", "all runs", "", "", "", "", "", fmtMissing(r.switchover.loss)]);
  process.stdout.write(`\nper run\n${d.toString()}\n`);
  if (r.switchover.error) process.stdout.write(`switchovers abandoned: ${r.switchover.error}\n`);
  if (r.hungStatusCalls.length) {
    process.stdout.write(`status calls (KV reads) that did not answer within ${STATUS_CALL_MS / 1000} s and were retried: ${r.hungStatusCalls.map((h: { at: string; what: string }) => `${h.at} (${h.what})`).join("; ")}\n`);
  }
  if (r.switchover.unexpectedAlerts) process.stdout.write(`alerts during the switchovers: ${r.switchover.unexpectedAlerts.join("; ")}\n`);
  if (r.evidenceDir) process.stdout.write(`logs of failed runs or runs that lost writes: ${r.evidenceDir}\n`);
}
