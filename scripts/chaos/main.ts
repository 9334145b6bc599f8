/**
 * The chaos suite's command line:
 *
 *   npm run chaos -- --scenario NAME --seed S [--duration SECONDS] [--repo sqlite|postgres]
 *   npm run chaos -- --all [--seed S] [--seeds N] [--duration SECONDS] [--repo sqlite|postgres]
 *   npm run chaos -- --profile short|long [--seeds N] [--repo sqlite|postgres]
 *   npm run chaos -- --check chaos-results/NAME-S.json      (re-runs the checker on a report)
 *   npm run chaos -- --list
 *   npm run chaos -- --summary [DIR]       (figures over every report in DIR, default chaos-results/)
 *
 * --repo (default sqlite) gives every node a repository of that kind: a SQLite file, or a
 * PostgreSQL server of its own (initdb in the run's directory). --all runs the scenarios of that
 * kind (pg-server-kill only on postgres); --profile short without --repo runs what npm test runs.
 *
 * Each run writes chaos-results/<scenario>-<seed>.json and .txt (pg-<scenario>-<seed>.* on
 * PostgreSQL; and, when it fails, the logs).
 * Exits 0 when every run passed (runs of scenarios marked known-failing are reported, not counted).
 */
import { readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkAll } from "./checker.js";
import type { FinalState } from "./history.js";
import type { RepositoryKind } from "../../src/storage/repository/types.js";
import { faultFigures, runChaos, summarize, worstFailover, worstResumeAfterFailover, worstWritesResumed, type RunReport } from "./run.js";
import { SCENARIOS, SHORT_PROFILE, SHORT_PROFILE_POSTGRES, runsOn, scenario } from "./scenarios.js";

const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));


interface Args {
  scenarios: string[];
  seed: number;
  seeds: number;
  durationS: number | null;
  all: boolean;
  profile: "short" | "long" | null;
  check: string | null;
  summary: string | null;
  out: string;
  list: boolean;
  /** null: not given (sqlite, or both kinds for --profile short). */
  repo: RepositoryKind | null;
}

function parse(argv: string[]): Args {
  const a: Args = { scenarios: [], seed: 1, seeds: 1, durationS: null, all: false, profile: null, check: null, summary: null, out: join(ROOT, "chaos-results"), list: false, repo: null };
  for (let i = 0; i < argv.length; i++) {
    const v = () => {
      const x = argv[++i];
      if (x === undefined) usage(`${argv[i - 1]} needs a value`);
      return x;
    };
    const num = (name: string, x: string) => {
      const n = Number(x);
      if (!Number.isInteger(n) || n < 0) usage(`${name} must be a whole number, not "${x}"`);
      return n;
    };
    switch (argv[i]) {
      case "--scenario":
        a.scenarios.push(...v().split(","));
        break;
      case "--seed":
        a.seed = num("--seed", v());
        break;
      case "--seeds":
        a.seeds = num("--seeds", v());
        break;
      case "--duration":
        a.durationS = num("--duration", v());
        break;
      case "--all":
        a.all = true;
        break;
      case "--profile": {
        const p = v();
        if (p !== "short" && p !== "long") usage("--profile is short or long");
        a.profile = p as "short" | "long";
        break;
      }
      case "--check":
        a.check = v();
        break;
      case "--summary":
        a.summary = argv[i + 1] && !argv[i + 1].startsWith("--") ? resolve(argv[++i]) : join(ROOT, "chaos-results");
        break;
      case "--out":
        a.out = resolve(v());
        break;
      case "--list":
        a.list = true;
        break;
      case "--repo": {
        const r = v();
        if (r !== "sqlite" && r !== "postgres") usage("--repo is sqlite or postgres");
        a.repo = r as RepositoryKind;
        break;
      }
      case "--help":
      case "-h":
        usage();
        break;
      default:
        usage(`unknown argument ${argv[i]}`);
    }
  }
  return a;
}

function usage(err?: string): never {
  if (err) process.stderr.write(`chaos: ${err}\n`);
  process.stderr.write(
    [
      "usage: npm run chaos -- --scenario NAME[,NAME] --seed S [--seeds N] [--duration SECONDS] [--repo sqlite|postgres]",
      "       npm run chaos -- --all [--seed S] [--seeds N] [--duration SECONDS] [--repo sqlite|postgres]   (long profile: --all --duration 600)",
      "       npm run chaos -- --profile short|long [--seeds N] [--repo sqlite|postgres]",
      "       npm run chaos -- --check chaos-results/NAME-SEED.json",
      "       npm run chaos -- --list",
      "       npm run chaos -- --summary [DIR]",
      `scenarios: ${SCENARIOS.map((s) => s.name).join(", ")}`,
    ].join("\n") + "\n",
  );
  process.exit(err ? 2 : 0);
}

async function main(): Promise<number> {
  const a = parse(process.argv.slice(2));
  if (a.list) {
    for (const s of SCENARIOS) process.stdout.write(`${s.name.padEnd(18)} ${s.description}${s.repos ? ` [only --repo ${s.repos.join(", ")}]` : ""}${s.knownFailing ? ` [known failing: ${s.knownFailing}]` : ""}\n`);
    return 0;
  }
  if (a.summary) {
    const reports = readdirSync(a.summary)
      .filter((f) => f.endsWith(".json"))
      .map((f) => JSON.parse(readFileSync(join(a.summary!, f), "utf8")) as RunReport);
    // Fault figures are recomputed from each report's history: reports written by older code agree.
    for (const r of reports) {
      r.faults = faultFigures(r.history, r.history.workload.from || Date.parse(r.startedAt));
      r.figures.worstFailoverMs = worstFailover(r.faults);
      r.figures.worstWritesResumedMs = worstWritesResumed(r.faults);
      r.figures.worstResumeAfterFailoverMs = worstResumeAfterFailover(r.faults);
    }
    process.stdout.write(aggregate(reports));
    return reports.some((r) => !r.ok && !r.knownFailing) ? 1 : 0;
  }
  if (a.check) {
    const r = JSON.parse(readFileSync(a.check, "utf8")) as RunReport & { final: FinalState };
    // Reports keep counts, not rows; re-checking uses what the report holds.
    const invariants = checkAll(r.history, { ...r.final, dumps: {}, keys: {} } as FinalState).filter((i) => ["single-master", "epochs-monotonic", "no-crash"].includes(i.id));
    for (const i of invariants) process.stdout.write(`${i.ok ? "PASS" : "FAIL"} ${i.title}: ${i.summary}\n${i.evidence.map((e) => `     ${e}\n`).join("")}`);
    return invariants.every((i) => i.ok) ? 0 : 1;
  }
  const runs: { scenario: string; seed: number; durationS: number; repo: RepositoryKind }[] = [];
  const repo = a.repo ?? "sqlite";
  if (a.profile === "short") {
    // What npm test runs: the SQLite entries and the PostgreSQL one (only one kind's with --repo).
    if (a.repo !== "postgres") runs.push(...SHORT_PROFILE.map((r) => ({ ...r, repo: "sqlite" as const })));
    if (a.repo !== "sqlite") runs.push(...SHORT_PROFILE_POSTGRES.map((r) => ({ ...r, repo: "postgres" as const })));
  } else if (a.profile === "long" || a.all) {
    // Seed by seed, so every scenario has as many seeds done whenever the runs are stopped.
    for (let i = 0; i < a.seeds; i++) {
      for (const s of SCENARIOS) if (runsOn(s, repo)) runs.push({ scenario: s.name, seed: a.seed + i, durationS: a.durationS ?? (a.profile === "long" ? 600 : 60), repo });
    }
  } else {
    if (a.scenarios.length === 0) usage("give --scenario NAME, --all or --profile");
    for (const n of a.scenarios) for (let i = 0; i < a.seeds; i++) runs.push({ scenario: n, seed: a.seed + i, durationS: a.durationS ?? 60, repo });
  }
  // Unknown names, and scenarios of another repository kind, fail before anything starts.
  for (const r of runs) {
    const s = SCENARIOS.find((x) => x.name === r.scenario);
    if (!s) usage(`unknown scenario ${r.scenario}`);
    if (!runsOn(s, r.repo)) usage(`scenario ${r.scenario} runs only with --repo ${s.repos!.join(" or ")}`);
  }

  const results: RunReport[] = [];
  for (const r of runs) {
    const report = await runChaos({ scenario: scenario(r.scenario), seed: r.seed, durationMs: r.durationS * 1000, repo: r.repo, outDir: a.out, log: (l) => process.stdout.write(l + "\n") });
    process.stdout.write(summarize(report) + "\n\n");
    results.push(report);
  }
  if (results.length > 1) process.stdout.write(table(results));
  const failed = results.filter((r) => !r.ok && !r.knownFailing);
  return failed.length ? 1 : 0;
}

/** Per scenario and repository kind: runs, seeds, faults injected by kind, failovers, worst failover, writes; then totals. */
export function aggregate(rs: RunReport[]): string {
  const by = new Map<string, RunReport[]>();
  for (const r of rs) {
    const key = `${r.scenario}${r.repo === "postgres" ? " (pg)" : ""}`;
    by.set(key, [...(by.get(key) ?? []), r]);
  }
  const lines: string[] = [];
  const total = { runs: 0, pass: 0, faults: 0, failovers: 0, worst: 0, resumed: 0, lag: 0, ok: 0, unknown: 0, failed: 0, lost: 0, resyncs: 0, sync: 0, setup: 0 };
  lines.push("scenario                runs  pass  seeds        faults injected (by kind)                    failovers  worst-failover-ms  worst-writes-resumed-ms  acked    unknown  failed  lost-acked  resyncs  sync-tasks-ok");
  for (const [name, list] of [...by].sort()) {
    const seeds = list.map((r) => r.seed).sort((a, b) => a - b);
    const kinds = new Map<string, number>();
    for (const r of list) for (const f of r.faults) if (f.kind !== "sync-task" && !f.skipped) kinds.set(f.kind, (kinds.get(f.kind) ?? 0) + 1);
    const faults = [...kinds.values()].reduce((a, b) => a + b, 0);
    const sum = (f: (r: RunReport) => number) => list.reduce((n, r) => n + f(r), 0);
    const worst = Math.max(0, ...list.map((r) => r.figures.worstFailoverMs ?? 0));
    const resumed = Math.max(0, ...list.map((r) => r.figures.worstWritesResumedMs ?? 0));
    const lag = Math.max(0, ...list.map((r) => r.figures.worstResumeAfterFailoverMs ?? 0));
    const row = {
      pass: list.filter((r) => r.ok).length,
      failovers: sum((r) => r.figures.failovers),
      ok: sum((r) => r.figures.writes.ok),
      unknown: sum((r) => r.figures.writes.unknown),
      failed: sum((r) => r.figures.writes.failed),
      lost: sum((r) => r.figures.ackedLost),
      resyncs: sum((r) => r.figures.resyncs),
      sync: sum((r) => r.figures.syncTasks.completed),
      syncAll: sum((r) => r.figures.syncTasks.created),
    };
    const seedText = seeds.length > 1 && seeds[seeds.length - 1] - seeds[0] === seeds.length - 1 ? `${seeds[0]}..${seeds[seeds.length - 1]}` : seeds.join(",");
    const kindText = `${faults} (${[...kinds].sort().map(([k, n]) => `${k} ${n}`).join(", ")})`;
    lines.push(
      `${name.padEnd(23)} ${String(list.length).padStart(4)}  ${String(row.pass).padStart(4)}  ${seedText.padEnd(11)}  ${kindText.padEnd(44)} ${String(row.failovers).padStart(9)}  ${String(worst || "-").padStart(17)}  ${String(resumed || "-").padStart(23)}  ${String(row.ok).padStart(7)}  ${String(row.unknown).padStart(7)}  ${String(row.failed).padStart(6)}  ${String(row.lost).padStart(10)}  ${String(row.resyncs).padStart(7)}  ${`${row.sync}/${row.syncAll}`.padStart(13)}`,
    );
    total.runs += list.length;
    total.pass += row.pass;
    total.faults += faults;
    total.failovers += row.failovers;
    total.worst = Math.max(total.worst, worst);
    total.resumed = Math.max(total.resumed, resumed);
    total.lag = Math.max(total.lag, lag);
    total.ok += row.ok;
    total.unknown += row.unknown;
    total.failed += row.failed;
    total.lost += row.lost;
    total.resyncs += row.resyncs;
    total.setup += sum((r) => r.figures.setupRestarts ?? 0);
  }
  lines.push(
    `total: ${total.runs} runs, ${total.pass} passed; ${total.faults} faults injected; ${total.failovers} failovers, worst ${total.worst} ms; writes resumed at worst ${total.resumed} ms after a fault of the master, at most ${total.lag} ms after its failover; ${total.ok} acknowledged writes, ${total.unknown} unknown, ${total.failed} failed; acknowledged writes lost: ${total.lost}; ${total.resyncs} resyncs; ${total.setup} processes restarted at setup`,
  );
  for (const r of rs) for (const n of r.history.setup ?? []) lines.push(`setup ${r.scenario} seed ${r.seed}${r.repo === "postgres" ? " (pg)" : ""}: ${n}`);
  for (const r of rs.filter((x) => !x.ok)) {
    lines.push(`FAIL ${r.scenario} seed ${r.seed}${r.repo === "postgres" ? " (pg)" : ""}: ${r.error ? `run error: ${r.error.split("\n")[0]}` : r.invariants.filter((i) => !i.ok).map((i) => `${i.id}: ${i.evidence[0] ?? ""}`).join("; ")}`);
  }
  return lines.join("\n") + "\n";
}

function table(rs: RunReport[]): string {
  const lines = ["scenario           repo      seed  result  faults  failovers  worst-failover-ms  worst-writes-resumed-ms  acked  unknown  lost-acked"];
  for (const r of rs) {
    const faults = r.faults.filter((f) => f.kind !== "sync-task" && !f.skipped).length;
    lines.push(
      `${r.scenario.padEnd(18)} ${(r.repo ?? "sqlite").padEnd(8)}  ${String(r.seed).padStart(4)}  ${(r.ok ? "PASS" : r.knownFailing ? "KNOWN" : "FAIL").padEnd(6)}  ${String(faults).padStart(6)}  ${String(r.figures.failovers).padStart(9)}  ${String(r.figures.worstFailoverMs ?? "-").padStart(17)}  ${String(r.figures.worstWritesResumedMs ?? "-").padStart(23)}  ${String(r.figures.writes.ok).padStart(5)}  ${String(r.figures.writes.unknown).padStart(7)}  ${String(r.figures.ackedLost).padStart(10)}`,
    );
  }
  return lines.join("\n") + "\n";
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // Ctrl-C or a kill: exit through process.exit, whose handler stops every process and server started.
  process.on("SIGINT", () => process.exit(130));
  process.on("SIGTERM", () => process.exit(143));
  main().then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`chaos: ${(err as Error).stack ?? err}\n`);
      process.exit(1);
    },
  );
}
