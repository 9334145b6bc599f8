/**
 * What the benchmarks share: the writer process, samplers (row visibility on a replica's file,
 * a process's RSS and CPU time), percentiles and the result table. Clusters come from
 * test/helpers (TestCluster: real nats-server and ferry processes).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import Table from "cli-table3";
import pg from "pg";
import { openLevel } from "../../src/storage/store.js";
import { wallMs, type WriterResult } from "./writer.js";
import type { PgWriterResult } from "./pg-writer.js";

export { wallMs };
export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const WRITER = join(ROOT, "scripts", "bench", "writer.ts");

/** The options both writers take (see writer.ts and pg-writer.ts). */
interface WriterRunOpts {
  rows: number;
  txn?: number;
  from?: number;
  rate?: number;
  payload?: number;
  create?: boolean;
  times?: boolean;
}

export interface WriterOpts extends WriterRunOpts {
  db: string;
  untilFile?: string;
}

/** The command line for a writer `script` writing to `target` ([flag, value]) with `o`. */
function writerArgv(script: string, target: [string, string], o: WriterRunOpts): string[] {
  const args = ["--import", "tsx", script, ...target, "--rows", String(o.rows), "--txn", String(o.txn ?? 100), "--from", String(o.from ?? 1)];
  if (o.rate) args.push("--rate", String(o.rate));
  if (o.payload) args.push("--payload", String(o.payload));
  if (o.create) args.push("--create");
  if (o.times) args.push("--times");
  return args;
}

/** Runs a writer (node + tsx) with `args` and resolves with the JSON line it printed last. */
function spawnWriter<R>(label: string, args: string[], live?: Set<ChildProcess>): { pid: () => number | undefined; kill: () => void; done: Promise<R> } {
  const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  live?.add(p);
  let out = "";
  let err = "";
  p.stdout.on("data", (d) => (out += d));
  p.stderr.on("data", (d) => (err += d));
  const done = new Promise<R>((res, rej) =>
    p.once("exit", (code) => {
      live?.delete(p);
      if (code !== 0) return rej(new Error(`${label} exited with ${code}: ${err.trim()}`));
      try {
        res(JSON.parse(out.trim().split("\n").pop()!));
      } catch {
        rej(new Error(`${label} printed no result: ${out.slice(0, 200)} ${err.slice(0, 500)}`));
      }
    }),
  );
  return { pid: () => p.pid, kill: () => p.exitCode === null && p.kill("SIGKILL"), done };
}

/** Runs the writer in its own process (node + tsx) and resolves with its result. */
export function runWriter(o: WriterOpts): { pid: () => number | undefined; done: Promise<WriterResult> } {
  const args = writerArgv(WRITER, ["--db", o.db], o);
  if (o.untilFile) args.push("--until-file", o.untilFile);
  const { pid, done } = spawnWriter<WriterResult>("writer", args);
  return { pid, done };
}

/**
 * Per replica, the highest bench row id it showed over time: [time (wallMs), max id] whenever the
 * max id changed (`empty` until the first poll that answered). A replica applies whole
 * transactions in order, so "row id N visible" means every transaction up to the one holding N is.
 */
export class MaxIdLog {
  readonly seen = new Map<string, [number, number][]>();
  polls = 0;

  constructor(readonly empty: number) {}

  latest(name: string): number {
    const s = this.seen.get(name)!;
    return s.length ? s[s.length - 1][1] : this.empty;
  }

  /** Records that `name` shows max id `m` now, if that is a change. */
  protected record(name: string, m: number): void {
    if (m !== this.latest(name)) this.seen.get(name)!.push([wallMs(), m]);
  }

  /** Resolves with the time every replica (or each of `names`) first showed `id`; rejects after timeoutMs. */
  async waitAll(id: number, timeoutMs: number, names = [...this.seen.keys()]): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const times = names.map((n) => this.firstAt(n, id));
      if (times.every((t) => t !== null)) return Math.max(...(times as number[]));
      if (Date.now() > deadline) {
        const at = names.map((n) => `${n} at ${this.latest(n)}`).join(", ");
        throw new Error(`timed out waiting for row ${id} on every replica (${at})`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** When `name` first showed a max id >= id, or null. */
  firstAt(name: string, id: number): number | null {
    const s = this.seen.get(name)!;
    const i = lowerBound(s, 1, id); // max ids only grow
    return i < s.length ? s[i][0] : null;
  }
}

/** The first index in `a` (sorted by field `f`) whose field `f` is >= x; a.length if none. */
export function lowerBound(a: [number, number][], f: 0 | 1, x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid][f] >= x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/**
 * Polls replicas' files read-only (every ~1 ms) for the highest bench row id they show, and
 * records when it changes (see MaxIdLog).
 */
export class VisibilitySampler extends MaxIdLog {
  private conns: { name: string; q: Database.Statement; db: Database.Database }[] = [];
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(files: Record<string, string>) {
    super(0);
    for (const [name, file] of Object.entries(files)) {
      const db = new Database(file, { readonly: true, fileMustExist: true, timeout: 1000 });
      this.conns.push({ name, db, q: db.prepare("SELECT max(id) AS m FROM bench").pluck() });
      this.seen.set(name, []);
    }
  }

  start(): this {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        this.pollOnce();
        await new Promise((r) => setTimeout(r, 1));
      }
    })();
    return this;
  }

  pollOnce(): void {
    this.polls++;
    for (const c of this.conns) {
      let m: number;
      try {
        m = (c.q.get() as number | null) ?? 0;
      } catch {
        continue; // busy for a moment (checkpoint): next poll
      }
      this.record(c.name, m);
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    for (const c of this.conns) c.db.close();
  }
}

/** Samples a process's resident set size (VmRSS, bytes) from /proc. */
export class RssSampler {
  readonly samples: [number, number][] = [];
  private t: NodeJS.Timeout | null = null;
  constructor(readonly pid: number, readonly everyMs = 200) {}
  start(): this {
    this.sample();
    this.t = setInterval(() => this.sample(), this.everyMs);
    return this;
  }
  sample(): number {
    const kb = Number(/VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"))?.[1] ?? 0);
    this.samples.push([Date.now(), kb * 1024]);
    return kb * 1024;
  }
  stop(): { startBytes: number; maxBytes: number; endBytes: number; growthPct: number; maxGrowthPct: number; samples: number } {
    if (this.t) clearInterval(this.t);
    this.sample();
    const v = this.samples.map((s) => s[1]);
    const start = v[0];
    const max = Math.max(...v);
    const end = v[v.length - 1];
    return {
      startBytes: start,
      maxBytes: max,
      endBytes: end,
      growthPct: ((end - start) / start) * 100,
      maxGrowthPct: ((max - start) / start) * 100,
      samples: v.length,
    };
  }
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
    return ticks / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
  }
}

/** CPU seconds each named process used while fn ran. */
export async function cpuDuring<T>(pids: Record<string, number>, fn: () => Promise<T>): Promise<{ result: T; cpu: Record<string, number> }> {
  const before = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, cpuSeconds(p)]));
  const result = await fn();
  const cpu = Object.fromEntries(Object.entries(pids).map(([n, p]) => [n, round(cpuSeconds(p) - before[n], 2)]));
  return { result, cpu };
}

export function percentiles(values: number[]): { n: number; p50: number; p90: number; p99: number; max: number; mean: number } {
  const s = [...values].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
  return {
    n: s.length,
    p50: round(at(0.5), 2),
    p90: round(at(0.9), 2),
    p99: round(at(0.99), 2),
    max: round(s[s.length - 1], 2),
    mean: round(s.reduce((a, b) => a + b, 0) / s.length, 2),
  };
}

/**
 * What one synced LevelDB write costs on this disk: `n` writes of `bytes` each, one every
 * `intervalMs` (paced like the transactions it is compared with), in a fresh database under `dir`.
 * Every batch is fsynced once on the master and once on each slave before it is applied, so two
 * of these in series are a floor under the commit-to-applied lag.
 */
export async function syncedWriteMs(dir: string, n: number, bytes: number, intervalMs: number): Promise<number[]> {
  const db = await openLevel(dir);
  const value = "x".repeat(bytes);
  const out: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = wallMs();
      await db.put(String(i).padStart(8, "0"), value, { sync: true });
      const ms = wallMs() - t;
      out.push(ms);
      if (ms < intervalMs) await new Promise((r) => setTimeout(r, intervalMs - ms));
    }
  } finally {
    await db.close();
  }
  return out;
}

export const round = (x: number, digits = 0) => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

export const MB = 1024 * 1024;
export const fmtInt = (x: number) => Math.round(x).toLocaleString("en-US");
export const fmtMB = (b: number) => `${(b / MB).toFixed(1)} MB`;

/** Prints rows of [measure, value, target, verdict] as a table. */
export function printTable(title: string, rows: [string, string, string?, boolean?][]): void {
  const t = new Table({ head: ["measure", "value", "target", ""], style: { head: [], border: [] } });
  for (const [m, v, target, ok] of rows) t.push([m, v, target ?? "", ok === undefined ? "" : ok ? "ok" : "MISSED"]);
  process.stdout.write(`\n${title}\n${t.toString()}\n`);
}

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

// PostgreSQL (replication-postgres.ts) ------------------------------------------------------------

const PG_WRITER = join(ROOT, "scripts", "bench", "pg-writer.ts");
const pgWriters = new Set<ChildProcess>();
process.on("exit", () => {
  for (const p of pgWriters) if (p.exitCode === null) try { p.kill("SIGKILL"); } catch {}
});

export interface PgWriterOpts extends WriterRunOpts {
  url: string;
}

/** Runs pg-writer.ts in its own process (node + tsx) and resolves with its result. */
export function runPgWriter(o: PgWriterOpts): { pid: () => number | undefined; kill: () => void; done: Promise<PgWriterResult> } {
  return spawnWriter<PgWriterResult>("pg writer", writerArgv(PG_WRITER, ["--url", o.url], o), pgWriters);
}

/** Kills any pg writer still running (a benchmark that failed half-way). */
export function killPgWriters(): void {
  for (const p of pgWriters) if (p.exitCode === null) p.kill("SIGKILL");
}

/**
 * Polls PostgreSQL replicas (one connection each, every `intervalMs`) for the highest bench row id
 * they show, and records when it changes (the time the answer arrived: an upper bound on when it
 * became visible). Replicas apply whole transactions in commit order, so "row id N visible" means
 * every transaction up to the one holding N is. `backendPids` are the polling connections' server
 * processes (their CPU is the sampler's, not replication's). The table's max is -1 while empty.
 */
export class PgVisibilitySampler extends MaxIdLog {
  private conns: { name: string; c: pg.Client }[] = [];
  readonly backendPids = new Map<string, number>();
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  private constructor(public intervalMs: number) {
    super(-1);
  }

  static async open(urls: Record<string, string>, intervalMs = 2): Promise<PgVisibilitySampler> {
    const s = new PgVisibilitySampler(intervalMs);
    try {
      for (const [name, url] of Object.entries(urls)) {
        const c = new pg.Client({ connectionString: url, application_name: "ferry-bench-sampler" });
        s.conns.push({ name, c });
        await c.connect();
        s.backendPids.set(name, Number((await c.query("SELECT pg_backend_pid() AS p")).rows[0].p));
        s.seen.set(name, []);
      }
    } catch (err) {
      await s.stop();
      throw err;
    }
    return s;
  }

  start(): this {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        const t = wallMs();
        await this.pollOnce();
        const wait = this.intervalMs - (wallMs() - t);
        await new Promise<void>((r) => {
          const timer = setTimeout(r, Math.max(0, wait));
          this.wake = () => (clearTimeout(timer), r());
        });
        this.wake = null;
      }
    })();
    return this;
  }

  private wake: (() => void) | null = null;

  /** Polls every `ms` from now on (a poll that waits for a longer interval happens at once). */
  pace(ms: number): void {
    const faster = ms < this.intervalMs;
    this.intervalMs = ms;
    if (faster) this.wake?.();
  }

  async pollOnce(): Promise<void> {
    this.polls++;
    await Promise.all(
      this.conns.map(async ({ name, c }) => {
        let m: number;
        try {
          const r = await c.query({ name: "bench_max", text: "SELECT coalesce(max(id), -1) FROM bench", rowMode: "array" });
          m = Number(r.rows[0][0]);
        } catch {
          return; // e.g. the table is not there yet: next poll
        }
        this.record(name, m);
      }),
    );
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop.catch(() => {});
    await Promise.all(this.conns.map((c) => c.c.end().catch(() => {})));
    this.conns = [];
  }
}

interface ProcStat {
  ppid: number;
  /** utime + stime, seconds. */
  self: number;
  /** cutime + cstime: reaped children's, seconds. */
  children: number;
}

function procStat(pid: number): ProcStat | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { ppid: Number(f[1]), self: (Number(f[11]) + Number(f[12])) / 100, children: (Number(f[13]) + Number(f[14])) / 100 };
  } catch {
    return null;
  }
}

/** What kind of PostgreSQL server process `pid` is, from its title (update_process_title). */
export function pgProcessKind(pid: number): string {
  let title: string;
  try {
    title = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
  } catch {
    return "exited";
  }
  if (/walsender/.test(title)) return "walsender";
  // "logical replication worker for subscription N" up to PostgreSQL 15, "... apply worker ..." since 16.
  if (/logical replication .*worker for subscription \d+ sync \d+|tablesync/.test(title)) return "tablesync worker";
  if (/logical replication (parallel )?(apply )?worker/.test(title)) return "apply worker";
  if (/logical replication launcher/.test(title)) return "replication launcher";
  if (/checkpointer|background writer|walwriter|autovacuum|stats collector|logger|archiver|io worker|walsummarizer/.test(title)) return "background";
  return "backend";
}

/**
 * CPU seconds of a process tree (a postmaster and its children) at one moment: the root's own,
 * its reaped children's (cutime/cstime: backends that exited), and each live child's with its
 * kind. Children are found by PPid in /proc.
 */
export interface TreeCpu {
  total: number;
  root: number;
  procs: Map<number, { cpu: number; kind: string }>;
}

export function treeCpu(rootPid: number, kind: (pid: number) => string = pgProcessKind): TreeCpu {
  const root = procStat(rootPid);
  const out: TreeCpu = { total: 0, root: root?.self ?? 0, procs: new Map() };
  if (!root) return out;
  out.total = root.self + root.children;
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    const s = procStat(pid);
    if (!s || s.ppid !== rootPid) continue;
    const cpu = s.self + s.children;
    out.procs.set(pid, { cpu, kind: kind(pid) });
    out.total += cpu;
  }
  return out;
}

/**
 * CPU seconds a process tree used between two treeCpu snapshots, in total and by kind: live
 * children by their kind (or `names`' name for their pid), the root as "postmaster", and what
 * children that exited in between used as "exited".
 */
export function treeCpuDiff(before: TreeCpu, after: TreeCpu, names: Map<number, string> = new Map()): { total: number; byKind: Record<string, number> } {
  const byKind: Record<string, number> = {};
  const add = (k: string, v: number) => (byKind[k] = (byKind[k] ?? 0) + v);
  let live = 0;
  for (const [pid, p] of after.procs) {
    const v = p.cpu - (before.procs.get(pid)?.cpu ?? 0);
    add(names.get(pid) ?? p.kind, v);
    live += v;
  }
  const root = after.root - before.root;
  add("postmaster", root);
  const total = after.total - before.total;
  add("exited", total - live - root);
  for (const k of Object.keys(byKind)) byKind[k] = round(byKind[k], 2);
  return { total: round(total, 2), byKind };
}

/** Prints a table with the given header row. */
export function printGrid(title: string, head: string[], rows: string[][]): void {
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r);
  process.stdout.write(`\n${title}\n${t.toString()}\n`);
}

/** The lag's phases at p50 for s1 (spy.ts), and how many transactions reached it pushed. */
export function phaseLine(p: Record<string, any>): string {
  const s1 = p.s1 ?? {};
  const f = (x: { p50?: number } | undefined) => (x?.p50 === undefined || Number.isNaN(x.p50) ? "-" : String(x.p50));
  const pushed = s1.pushedTxns ? `; ${s1.pushedTxns} transactions pushed, announced to visible ${f(s1.pushedToVisibleMs)} ms` : "";
  return `${f(p.captureMs)} / ${f(s1.reactMs)} / ${f(s1.serveMs)} / ${f(s1.spoolAndApplyMs)} ms${pushed}`;
}
