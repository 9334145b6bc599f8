/**
 * Summarises a V8 CPU profile (`node --cpu-prof`): self time per function, highest first, so a
 * benchmark can say where a process spent its CPU.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileSummary {
  totalMs: number;
  /** Share of samples in which the process was idle (waiting for I/O or timers). */
  idlePct: number;
  top: { fn: string; where: string; ms: number; pct: number }[];
  /** Self time per source area (ferry src/..., node_modules package, node internals, native). */
  byArea: Record<string, number>;
  /** Time (ms) spent inside each group, callees included, and its share of busy time. */
  inclusive: Record<string, { ms: number; pct: number }>;
}

/** Groups whose inclusive time says where a process's work goes. */
const GROUPS: Record<string, RegExp> = {
  "logging (pino)": /node_modules\/(pino|sonic-boom|thread-stream)\//,
  "transition logging (log.ts inspect)": /\/dist\/log\.js/,
  xstate: /node_modules\/xstate\//,
  "LevelDB (level)": /node_modules\/(classic-level|abstract-level|level|level-transcoder)\//,
  "NATS client": /node_modules\/@nats-io\//,
  "better-sqlite3": /node_modules\/better-sqlite3\//,
  "ferry storage/sqlite": /\/dist\/storage\/sqlite\.js/,
  "ferry storage/spool": /\/dist\/storage\/spool\.js/,
  "ferry actors/sequencer": /\/dist\/actors\/sequencer\.js/,
  "ferry actors/master-services": /\/dist\/actors\/master-services\.js/,
  "ferry actors/replica": /\/dist\/actors\/replica\.js/,
  "ferry actors/node (status, heartbeat)": /\/dist\/actors\/(node|heartbeat)\.js/,
};

export function summariseProfile(p: CpuProfile, n = 15): ProfileSummary {
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<number, number>();
  const samples = p.samples ?? [];
  const deltas = p.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) self.set(samples[i], (self.get(samples[i]) ?? 0) + (deltas[i] ?? 0) / 1000);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const byFn = new Map<string, { fn: string; where: string; ms: number }>();
  const byArea: Record<string, number> = {};
  let idle = 0;
  for (const [id, ms] of self) {
    const cf = byId.get(id)!.callFrame;
    const fn = cf.functionName || "(anonymous)";
    if (fn === "(idle)") idle += ms;
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : "";
    const key = `${fn}@${where}`;
    const e = byFn.get(key) ?? { fn, where, ms: 0 };
    e.ms += ms;
    byFn.set(key, e);
    const area = areaOf(cf.url, fn);
    byArea[area] = (byArea[area] ?? 0) + ms;
  }
  const busy = total - idle;
  const top = [...byFn.values()]
    .filter((e) => e.fn !== "(idle)")
    .sort((a, b) => b.ms - a.ms)
    .slice(0, n)
    .map((e) => ({ ...e, ms: Math.round(e.ms), pct: Math.round((e.ms / Math.max(busy, 1)) * 1000) / 10 }));
  for (const k of Object.keys(byArea)) byArea[k] = Math.round(byArea[k]);
  const parent = new Map<number, number>();
  for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
  const incl: Record<string, number> = {};
  for (const [id, ms] of self) {
    const counted = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const url = byId.get(cur)!.callFrame.url;
      for (const [g, re] of Object.entries(GROUPS)) {
        if (!counted.has(g) && re.test(url)) {
          counted.add(g);
          incl[g] = (incl[g] ?? 0) + ms;
        }
      }
    }
  }
  const inclusive = Object.fromEntries(
    Object.entries(incl)
      .sort((a, b) => b[1] - a[1])
      .map(([g, ms]) => [g, { ms: Math.round(ms), pct: Math.round((ms / Math.max(busy, 1)) * 1000) / 10 }]),
  );
  return { totalMs: Math.round(total), idlePct: Math.round((idle / Math.max(total, 1)) * 1000) / 10, top, byArea, inclusive };
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) return url.slice(nm + "node_modules/".length);
  const dist = url.lastIndexOf("/dist/");
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, "");
}

function areaOf(url: string, fn: string): string {
  if (fn === "(idle)") return "(idle)";
  if (fn === "(garbage collector)") return "(gc)";
  if (fn === "(program)") return "(program)";
  if (!url) return "(native)";
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1];
  const d = /\/dist\/([^/]+)\//.exec(url);
  if (d) return `ferry ${d[1]}`;
  if (url.startsWith("node:")) return "node internals";
  return url;
}

/** The profiles of every process under `profDir` (one folder per process, as `--cpu-prof-dir` wrote them). */
export function summariseProfiles(profDir: string) {
  const out: Record<string, unknown> = { dir: profDir };
  if (!existsSync(profDir)) return out;
  for (const id of readdirSync(profDir)) {
    const files = readdirSync(join(profDir, id)).filter((f) => f.endsWith(".cpuprofile"));
    if (files.length === 0) continue;
    out[id] = summariseProfile(JSON.parse(readFileSync(join(profDir, id, files[0]), "utf8")), 15);
  }
  return out;
}

/** Prints what summariseProfiles found. */
export function printProfiles(profiles: Record<string, any>): void {
  for (const [id, p] of Object.entries(profiles)) {
    if (id === "dir") continue;
    process.stdout.write(`\nCPU profile ${id}: ${p.totalMs} ms sampled, ${p.idlePct}% idle. Inside (callees included, % of busy):\n`);
    for (const [g, v] of Object.entries(p.inclusive as Record<string, { ms: number; pct: number }>)) {
      process.stdout.write(`  ${String(v.pct).padStart(5)}%  ${g}\n`);
    }
    process.stdout.write(`  top functions by self time (% of busy):\n`);
    for (const f of p.top) process.stdout.write(`  ${String(f.pct).padStart(5)}%  ${f.fn}  ${f.where}\n`);
  }
  process.stdout.write(`profiles kept in ${profiles.dir}\n`);
}
