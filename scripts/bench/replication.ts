/**
 * The replication benchmark (`npm run bench -- replication [--profile] [--quick]`), with real
 * processes: a nats-server, a master and two slaves (TestCluster), and a writer process that
 * writes straight into the master's SQLite file (an outside writer, captured by ferry's triggers).
 *
 *  1. baseline    the writer alone on a plain SQLite file (WAL, synchronous=FULL like ferry's
 *                 master connection): rows/s in transactions of 100 rows of ~100 bytes
 *  2. throughput  the same rows into the master's file; from the start of the first transaction
 *                 until both slaves show the last row: rows/s and the ratio to (1)
 *  3. lag         5,000 rows/s paced for 20 s; per transaction, from its commit on the master to
 *                 the moment it is visible in a slave's file: p50/p99/max
 *  4. memory      one slave stopped (SIGSTOP); write until the master's backlog for it reaches
 *                 200 MB; the master's RSS at start, max and end. Then the slave continues and
 *                 the catch-up rate is measured.
 *
 * Visibility is sampled by polling the slaves' files read-only (~1 ms). --profile runs the master
 * and slave s1 under `node --cpu-prof` and prints where their CPU time went. `--repo postgres` runs
 * replication-postgres.ts instead (PostgreSQL repositories, against native logical replication).
 */
import { statSync, writeFileSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { TestCluster } from "../../test/helpers/cluster.js";
import { cleanup, tempDir } from "../../test/helpers/procs.js";
import {
  MB,
  RssSampler,
  VisibilitySampler,
  cpuDuring,
  fmtInt,
  fmtMB,
  log,
  percentiles,
  phaseLine,
  printTable,
  round,
  runWriter,
  syncedWriteMs,
  wallMs,
} from "./common.js";
import { printProfiles, summariseProfiles } from "./profile.js";
import { ReplicationSpy } from "./spy.js";
import { SqliteRepository } from "../../src/storage/repository/sqlite/repository.js";
import { BENCH_TABLE, type WriterResult } from "./writer.js";

const TXN = 100;
const PAYLOAD = 100;
const BACKLOG_TARGET = 200 * MB;

export async function run(argv: string[] = []): Promise<object> {
  // --repo postgres: the same questions on PostgreSQL, against its own logical replication.
  const repo = argv.find((a) => a.startsWith("--repo="))?.slice(7) ?? (argv.includes("--repo") ? argv[argv.indexOf("--repo") + 1] : "sqlite");
  if (repo === "postgres") return (await import("./replication-postgres.js")).run(argv);
  if (repo !== "sqlite") throw new Error(`--repo ${repo}: the replication benchmark knows sqlite and postgres`);
  const quick = argv.includes("--quick");
  const profile = argv.includes("--profile");
  // --rows N: a longer throughput phase averages out a noisy machine.
  const rowsAt = argv.indexOf("--rows");
  const ROWS = rowsAt >= 0 ? Number(argv[rowsAt + 1]) : quick ? 50_000 : 200_000;
  const LAG_RATE = 5000;
  const LAG_SECONDS = quick ? 5 : 20;
  const backlogTarget = quick ? 20 * MB : BACKLOG_TARGET;
  // --only=lag,memory runs some phases (e.g. to profile one); the baseline always runs.
  const only = argv.find((a) => a.startsWith("--only="))?.slice(7).split(",");
  const want = (phase: "throughput" | "lag" | "memory" | "bigtxn") => !only || only.includes(phase);
  // One transaction of each size (--big-rows=1000000,5000000): memory must not grow with it.
  const bigRows = (argv.find((a) => a.startsWith("--big-rows="))?.slice(11).split(",").map(Number) ?? (quick ? [200_000] : [1_000_000, 5_000_000])).filter(
    (n) => Number.isInteger(n) && n > 0,
  );

  const dir = tempDir("ferry-bench-");
  const results: Record<string, unknown> = { settings: { rows: ROWS, txnRows: TXN, payloadBytes: PAYLOAD, lagRate: LAG_RATE, lagSeconds: LAG_SECONDS, backlogTarget } };

  // 1. Baseline -------------------------------------------------------------------------------
  log(`baseline: ${fmtInt(ROWS)} rows into a plain SQLite file`);
  const base = await runWriter({ db: join(dir, "baseline.db"), rows: ROWS, txn: TXN, payload: PAYLOAD, create: true }).done;
  // The same with ferry's capture triggers on the table and no ferry process: what capture alone costs.
  const capFile = join(dir, "captured.db");
  const capRepo = new SqliteRepository(`sqlite:${capFile}`);
  await capRepo.init();
  capRepo.executeScript(BENCH_TABLE, undefined, () => {});
  await capRepo.close();
  const cap = await runWriter({ db: capFile, rows: ROWS, txn: TXN, payload: PAYLOAD }).done;
  results.baseline = {
    rowsPerSec: round(base.rowsPerSec),
    elapsedMs: round(base.elapsedMs),
    withCaptureTriggersRowsPerSec: round(cap.rowsPerSec),
    captureTriggersRatio: round(cap.rowsPerSec / base.rowsPerSec, 3),
  };
  results.loadAverageAtStart = loadavg().map((x) => round(x, 2));

  // The cluster ---------------------------------------------------------------------------------
  const profDir = profile ? join(tmpdir(), `ferry-bench-prof-${Date.now()}`) : "";
  const profArgs = (id: string): string[] => (profile ? ["--cpu-prof", `--cpu-prof-dir=${join(profDir, id)}`] : []);
  const cl = await TestCluster.start({
    config: {
      lease: { ttlMs: 3000, safetyMarginMs: 1000 },
      // The cap also bounds one transaction: the largest one of (5) must fit (~140 B a row spooled).
      replication: { heartbeatMs: 1000, pollMs: 1000, maxBacklogBytes: Math.max(2 * backlogTarget + 64 * MB, want("bigtxn") ? 300 * Math.max(0, ...bigRows) : 0) },
      log: { level: "info" },
    },
  });
  let sampler: VisibilitySampler | null = null;
  try {
    log("starting nats-server, master m1, slaves s1 and s2");
    const m1 = cl.startNode("m1", "master", [], {}, profArgs("m1"));
    await cl.waitMaster("m1", 30_000);
    const s1 = cl.startNode("s1", "slave", [], {}, profArgs("s1"));
    const s2 = cl.startNode("s2", "slave");
    await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming", 30_000);
    await cl.waitMember("s2", "streaming", (m) => m.replica === "streaming", 30_000);
    await cl.sql(BENCH_TABLE);
    await cl.waitConverged("m1", ["s1", "s2"]);
    if (process.env.FERRY_KEEP_TEST_DIRS) results.clusterDir = cl.dir;
    sampler = new VisibilitySampler({ s1: cl.repo("s1"), s2: cl.repo("s2") }).start();
    const pids = { m1: m1.pid, s1: s1.pid, s2: s2.pid, nats: cl.nats.pid };
    const logBytes = () => Object.fromEntries(["m1", "s1", "s2"].map((n) => [n, sizeOf(join(cl.dir, `${n}.log`))]));

    let nextId = 1;
    // The rate the master captured an unpaced writer at; measured in (2), guessed otherwise.
    let capturedRate = cap.rowsPerSec / 2;

    // 2. End-to-end throughput --------------------------------------------------------------------
    if (want("throughput")) {
      log(`throughput: ${fmtInt(ROWS)} rows into the master's file, until both slaves have them`);
      const logs2 = logBytes();
      const t2 = await cpuDuring(pids, async () => {
        const w = await runWriter({ db: cl.repo("m1"), rows: ROWS, txn: TXN, payload: PAYLOAD, from: 1 }).done;
        const applied = await sampler!.waitAll(w.lastId, 180_000);
        return { w, applied };
      });
      const w2 = t2.result.w;
      const start2 = w2.lastCommit - w2.elapsedMs;
      const e2eMs = t2.result.applied - start2;
      const e2eRate = w2.rows / (e2eMs / 1000);
      const cpuPerRow = Object.fromEntries(Object.entries(t2.cpu).map(([n, c]) => [n, round((c * 1e6) / w2.rows, 1)]));
      // On a small machine the writer, the master, both slaves and nats-server share the cores: the
      // rate their CPU per row allows is the ceiling any replication run can reach here.
      const cores = availableParallelism();
      const writerMicros = (w2.cpuMs * 1000) / w2.rows;
      const allMicros = writerMicros + Object.values(cpuPerRow).reduce((a, b) => a + b, 0);
      const perSlave2 = Object.fromEntries(["s1", "s2"].map((n) => [n, round(w2.rows / ((sampler!.firstAt(n, w2.lastId)! - start2) / 1000))]));
      results.throughput = {
        rowsPerSec: round(e2eRate),
        ratioToBaseline: round(e2eRate / base.rowsPerSec, 3),
        elapsedMs: round(e2eMs),
        perSlaveRowsPerSec: perSlave2,
        writerRowsPerSec: round(w2.rowsPerSec),
        writerRatioToBaseline: round(w2.rowsPerSec / base.rowsPerSec, 3),
        tailAfterLastCommitMs: round(t2.result.applied - w2.lastCommit),
        cpuSeconds: t2.cpu,
        /** CPU time per replicated row, by process (µs). */
        cpuMicrosPerRow: cpuPerRow,
        writerMicrosPerRow: {
          plain: round((base.cpuMs * 1000) / base.rows, 1),
          withCaptureTriggers: round((cap.cpuMs * 1000) / cap.rows, 1),
          onMasterFile: round(writerMicros, 1),
        },
        cpuCeiling: {
          cores,
          microsPerRow: round(allMicros, 1),
          rowsPerSec: round((cores * 1e6) / allMicros),
          ratioToBaseline: round((cores * 1e6) / allMicros / base.rowsPerSec, 3),
          /** CPU per row all ferry processes and nats-server may take together for 0.5 x baseline here. */
          ferryMicrosPerRowForHalf: round((cores * 1e6) / (0.5 * base.rowsPerSec) - writerMicros, 1),
          /** The processes form a pipeline: with a core each, the busiest one bounds the rate. */
          corePerProcess: pipelineBound(writerMicros, cpuPerRow, base.rowsPerSec),
        },
        logBytes: diff(logBytes(), logs2),
      };
      nextId = w2.lastId + 1;
      capturedRate = w2.rowsPerSec;
    }

    // 3. Lag at a steady rate ---------------------------------------------------------------------
    if (want("lag")) {
      log(`lag: ${fmtInt(LAG_RATE)} rows/s for ${LAG_SECONDS} s`);
      const from3 = nextId;
      const rows3 = LAG_RATE * LAG_SECONDS;
      const logs3 = logBytes();
      const syncedWrite = percentiles(await syncedWriteMs(join(dir, "fsync-probe"), 200, TXN * (PAYLOAD + 60), 1000 / (LAG_RATE / TXN)));
      const spy = await ReplicationSpy.start(cl.nats.url, cl.name, "m1");
      const t3 = await cpuDuring(pids, async () => {
        const w = await runWriter({ db: cl.repo("m1"), rows: rows3, txn: TXN, payload: PAYLOAD, from: from3, rate: LAG_RATE, times: true }).done;
        await sampler!.waitAll(w.lastId, 60_000);
        return w;
      });
      const w3 = t3.result;
      const lat = (name: string) =>
        w3.commits!.map((c, k) => sampler!.firstAt(name, Math.min(from3 + (k + 1) * TXN - 1, w3.lastId))! - c);
      const l1 = lat("s1");
      const l2 = lat("s2");
      const both = l1.map((x, i) => Math.max(x, l2[i]));
      await spy.stop();
      const heartbeats = await Promise.all(["s1", "s2"].map((n) => cl.member(n)));
      const phases = spy.breakdown(
        w3.commits!,
        (n, k) => sampler!.firstAt(n, Math.min(from3 + (k + 1) * TXN - 1, w3.lastId)),
        ["s1", "s2"],
      );
      results.lag = {
        txns: w3.txns,
        achievedRowsPerSec: round(w3.rowsPerSec),
        writerLateMs: w3.lateMs,
        s1: percentiles(l1),
        s2: percentiles(l2),
        bothSlaves: percentiles(both),
        over20ms: both.filter((x) => x > 20).length,
        over100ms: both.filter((x) => x > 100).length,
        worst: worst(both, w3.commits!, 5),
        samplerPolls: sampler.polls,
        phases,
        syncedWriteMs: syncedWrite,
        heartbeatApplyLatencyMs: Object.fromEntries(heartbeats.map((m, i) => [`s${i + 1}`, m?.applyLatencyMs ?? null])),
        cpuSeconds: t3.cpu,
        logBytes: diff(logBytes(), logs3),
      };
      nextId = w3.lastId + 1;
    }

    // 4. Memory while a slave is away ----------------------------------------------------------------
    if (want("memory")) {
      log(`memory: s2 stopped, writing until its backlog on the master reaches ${fmtMB(backlogTarget)}`);
      const from4 = nextId;
      // Rows big enough that the backlog builds in about a minute at the rate the master captured in (2).
      const payload4 = Math.max(PAYLOAD, Math.ceil(backlogTarget / (capturedRate * (quick ? 10 : 60))) - 60);
      process.kill(s2.pid, "SIGSTOP");
      const stopFile = join(dir, "stop-writer");
      const rss = new RssSampler(m1.pid, 200).start();
      const backlogSeen: [number, number][] = [];
      const t4 = await cpuDuring(pids, async () => {
        const writer = runWriter({ db: cl.repo("m1"), rows: 100_000_000, txn: TXN, payload: payload4, from: from4, untilFile: stopFile });
        let wDone: WriterResult | null = null;
        writer.done.then((w) => (wDone = w), () => {});
        const t0 = Date.now();
        let reached = false;
        while (!wDone) {
          const b = Number((await cl.member("s2").catch(() => undefined))?.backlogBytes ?? 0);
          backlogSeen.push([Date.now() - t0, b]);
          if (b >= backlogTarget || Date.now() - t0 > (quick ? 60_000 : 150_000)) {
            reached = b >= backlogTarget;
            writeFileSync(stopFile, "");
            break;
          }
          await new Promise((r) => setTimeout(r, 500));
        }
        const w = await writer.done;
        // The live slave catches up; the master's spool still holds everything for s2.
        await sampler!.waitAll(w.lastId, 120_000, ["s1"]).catch(() => {});
        return { w, reached, seconds: (Date.now() - t0) / 1000 };
      });
      const mem = rss.stop();
      nextId = t4.result.w.lastId + 1;
      const backlogEnd = Number((await cl.member("s2").catch(() => undefined))?.backlogBytes ?? 0);
      results.memory = {
        backlogTargetBytes: backlogTarget,
        backlogReached: t4.result.reached,
        backlogBytesAtEnd: backlogEnd,
        rowsWritten: t4.result.w.rows,
        payloadBytes: payload4,
        seconds: round(t4.result.seconds, 1),
        rss: mem,
        withinTarget: mem.maxGrowthPct <= 20,
        cpuSeconds: t4.cpu,
        backlogSamples: backlogSeen.filter((_, i) => i % 10 === 0),
      };

      // Catch-up of the stopped slave ------------------------------------------------------------------
      log("catch-up: s2 continues");
      process.kill(s2.pid, "SIGCONT");
      const c0 = wallMs();
      let caughtUp = true;
      await sampler.waitAll(t4.result.w.lastId, quick ? 60_000 : 120_000).catch(() => (caughtUp = false));
      const cMs = wallMs() - c0;
      const s2At = sampler.latest("s2");
      const rowsCaught = s2At - (from4 - 1);
      results.catchUp = {
        caughtUp,
        rows: rowsCaught,
        ms: round(cMs),
        rowsPerSec: round(rowsCaught / (cMs / 1000)),
        ratioToBaseline: round(rowsCaught / (cMs / 1000) / base.rowsPerSec, 3),
        bytesPerSec: round((backlogEnd * (rowsCaught / t4.result.w.rows)) / (cMs / 1000)),
      };
    }

    // 5. One large transaction -------------------------------------------------------------------------
    if (want("bigtxn")) {
      const big: object[] = (results.bigTransaction = []);
      for (const rows of bigRows) {
        log(`big transaction: ${fmtInt(rows)} rows of ~${PAYLOAD} B in one transaction`);
        await sampler.waitAll(nextId - 1, 120_000).catch(() => {});
        const idle = { m1: new RssSampler(m1.pid).sample(), s1: new RssSampler(s1.pid).sample(), s2: new RssSampler(s2.pid).sample() };
        const rss = { m1: new RssSampler(m1.pid, 100).start(), s1: new RssSampler(s1.pid, 100).start(), s2: new RssSampler(s2.pid, 100).start() };
        const t0 = wallMs();
        const w = await runWriter({ db: cl.repo("m1"), rows, txn: rows, payload: PAYLOAD, from: nextId }).done;
        let replicated = true;
        const visible = await sampler.waitAll(w.lastId, 900_000).catch(() => ((replicated = false), wallMs()));
        const peak = Object.fromEntries(Object.entries(rss).map(([n, r]) => [n, r.stop().maxBytes]));
        big.push({
          rows,
          replicated,
          seconds: round((visible - t0) / 1000, 1),
          commitToBothSlavesMs: round(visible - w.lastCommit),
          idleRssBytes: idle,
          peakRssBytes: peak,
          peakAboveIdleBytes: Object.fromEntries(Object.keys(peak).map((n) => [n, peak[n] - idle[n as keyof typeof idle]])),
        });
        nextId = w.lastId + 1;
      }
    }
  } finally {
    await sampler?.stop();
    await cl.close();
    await cleanup();
  }

  results.loadAverageAtEnd = loadavg().map((x) => round(x, 2));
  if (profile) results.profile = summariseProfiles(profDir);
  report(results);
  return results;
}

function worst(lat: number[], commits: number[], n: number) {
  return lat
    .map((l, k) => ({ txn: k, ms: round(l, 1), atS: round((commits[k] - commits[0]) / 1000, 2) }))
    .sort((a, b) => b.ms - a.ms)
    .slice(0, n);
}

function diff(a: Record<string, number>, b: Record<string, number>) {
  return Object.fromEntries(Object.keys(a).map((k) => [k, a[k] - (b[k] ?? 0)]));
}

function sizeOf(f: string): number {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
}

/** The rate the busiest process's CPU per row allows when no process waits for a core. */
function pipelineBound(writerMicros: number, cpuPerRow: Record<string, number>, baseline: number) {
  const [busiest, micros] = Object.entries({ writer: writerMicros, ...cpuPerRow }).reduce((a, b) => (b[1] > a[1] ? b : a));
  return { busiest, microsPerRow: round(micros, 1), rowsPerSec: round(1e6 / micros), ratioToBaseline: round(1e6 / micros / baseline, 3) };
}

function report(r: Record<string, any>) {
  const base = r.baseline.rowsPerSec as number;
  const rows: [string, string, string?, boolean?][] = [
    ["1. baseline: plain SQLite, 100-row txns, ~100 B rows", `${fmtInt(base)} rows/s`],
    ["   the same with ferry's capture triggers, no ferry process", `${fmtInt(r.baseline.withCaptureTriggersRowsPerSec)} rows/s (${r.baseline.captureTriggersRatio} x baseline)`],
  ];
  if (r.throughput) rows.push(
    ["2. end to end: master + 2 slaves, last row on both", `${fmtInt(r.throughput.rowsPerSec)} rows/s`],
    ["   ratio to baseline", `${r.throughput.ratioToBaseline}`, ">= 0.5", r.throughput.ratioToBaseline >= 0.5],
    ["   writer alone on the captured master file", `${fmtInt(r.throughput.writerRowsPerSec)} rows/s (${r.throughput.writerRatioToBaseline} x baseline)`],
    ["   tail: last commit -> last row on both slaves", `${fmtInt(r.throughput.tailAfterLastCommitMs)} ms`],
    ["   CPU per row: writer / master / slave / nats", `${r.throughput.writerMicrosPerRow.onMasterFile} / ${r.throughput.cpuMicrosPerRow.m1} / ${r.throughput.cpuMicrosPerRow.s1} / ${r.throughput.cpuMicrosPerRow.nats} µs`],
    [
      `   CPU ceiling, ${r.throughput.cpuCeiling.cores} cores / ${r.throughput.cpuCeiling.microsPerRow} µs per row`,
      `${fmtInt(r.throughput.cpuCeiling.rowsPerSec)} rows/s (${r.throughput.cpuCeiling.ratioToBaseline} x baseline); 0.5 x needs ferry <= ${r.throughput.cpuCeiling.ferryMicrosPerRowForHalf} µs/row`,
    ],
    [
      `   CPU bound with a core per process (busiest: ${r.throughput.cpuCeiling.corePerProcess.busiest})`,
      `${fmtInt(r.throughput.cpuCeiling.corePerProcess.rowsPerSec)} rows/s (${r.throughput.cpuCeiling.corePerProcess.ratioToBaseline} x baseline)`,
    ],
  );
  if (r.lag) rows.push(
    [`3. lag at ${fmtInt(r.settings.lagRate)} rows/s: p50 / p99 / max (both slaves)`, `${r.lag.bothSlaves.p50} / ${r.lag.bothSlaves.p99} / ${r.lag.bothSlaves.max} ms`, "p99 <= 20 ms", r.lag.bothSlaves.p99 <= 20],
    ["   s1 p50 / p99 / max", `${r.lag.s1.p50} / ${r.lag.s1.p99} / ${r.lag.s1.max} ms`],
    ["   s2 p50 / p99 / max", `${r.lag.s2.p50} / ${r.lag.s2.p99} / ${r.lag.s2.max} ms`],
    ["   transactions over 20 ms / over 100 ms", `${r.lag.over20ms} / ${r.lag.over100ms} of ${r.lag.txns}`],
    ["   phases p50: capture / react / serve / spool+apply (s1)", phaseLine(r.lag.phases)],
    ["   one synced LevelDB write of a batch, alone: p50 / p99 / max", `${r.lag.syncedWriteMs.p50} / ${r.lag.syncedWriteMs.p99} / ${r.lag.syncedWriteMs.max} ms (two are in every batch's path)`],
    ["   CPU per transaction: master / slave", `${round((r.lag.cpuSeconds.m1 * 1000) / r.lag.txns, 2)} / ${round((r.lag.cpuSeconds.s1 * 1000) / r.lag.txns, 2)} ms`],
  );
  if (r.memory) rows.push(
    [`4. master RSS, backlog ${fmtMB(r.memory.backlogBytesAtEnd)}${r.memory.backlogReached ? "" : " (target not reached)"}`, `start ${fmtMB(r.memory.rss.startBytes)}, max ${fmtMB(r.memory.rss.maxBytes)}, end ${fmtMB(r.memory.rss.endBytes)}`],
    ["   growth end / max", `${round(r.memory.rss.growthPct, 1)}% / ${round(r.memory.rss.maxGrowthPct, 1)}%`, "within 20%", r.memory.withinTarget],
    ["   catch-up of the stopped slave", `${fmtInt(r.catchUp.rowsPerSec)} rows/s (${r.catchUp.ratioToBaseline} x baseline), ${fmtMB(r.catchUp.bytesPerSec)}/s${r.catchUp.caughtUp ? "" : " (not done in time)"}`],
  );
  for (const b of r.bigTransaction ?? []) {
    const above = b.peakAboveIdleBytes as Record<string, number>;
    const worst = Math.max(...Object.values(above));
    rows.push([
      `5. one ${fmtInt(b.rows)}-row transaction: peak RSS above idle m1 / s1 / s2`,
      `${fmtMB(above.m1)} / ${fmtMB(above.s1)} / ${fmtMB(above.s2)} (replicated in ${b.seconds} s${b.replicated ? "" : ", NOT within 15 min"})`,
      "<= 150 MB",
      b.replicated && worst <= 150 * MB,
    ]);
  }
  printTable("replication benchmark", rows);
  const cpu = (c: Record<string, number>) => Object.entries(c).map(([k, v]) => `${k} ${v}`).join(", ");
  for (const phase of ["throughput", "lag", "memory"]) if (r[phase]) process.stdout.write(`CPU seconds, ${phase}: ${cpu(r[phase].cpuSeconds)}\n`);
  if (r.profile) printProfiles(r.profile);
}
