/**
 * What the benchmarks share: the writer process, samplers (row visibility on a replica's file,
 * a process's RSS and CPU time), percentiles and the result table. Clusters come from
 * test/helpers (TestCluster: real nats-server and ferry processes).
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import Table from "cli-table3";
import { openLevel } from "../../src/storage/store.js";
import { wallMs, type WriterResult } from "./writer.js";

export { wallMs };
export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));
const WRITER = join(ROOT, "scripts", "bench", "writer.ts");

export interface WriterOpts {
  db: string;
  rows: number;
  txn?: number;
  from?: number;
  rate?: number;
  payload?: number;
  create?: boolean;
  times?: boolean;
  untilFile?: string;
}

/** Runs the writer in its own process (node + tsx) and resolves with its result. */
export function runWriter(o: WriterOpts): { pid: () => number | undefined; done: Promise<WriterResult> } {
  const args = ["--import", "tsx", WRITER, "--db", o.db, "--rows", String(o.rows), "--txn", String(o.txn ?? 100), "--from", String(o.from ?? 1)];
  if (o.rate) args.push("--rate", String(o.rate));
  if (o.payload) args.push("--payload", String(o.payload));
  if (o.create) args.push("--create");
  if (o.times) args.push("--times");
  if (o.untilFile) args.push("--until-file", o.untilFile);
  const p = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  p.stdout.on("data", (d) => (out += d));
  p.stderr.on("data", (d) => (err += d));
  const done = new Promise<WriterResult>((res, rej) =>
    p.once("exit", (code) => {
      if (code !== 0) return rej(new Error(`writer exited with ${code}: ${err.trim()}`));
      try {
        res(JSON.parse(out.trim().split("\n").pop()!));
      } catch (e) {
        rej(new Error(`writer printed no result: ${out.slice(0, 200)} ${err.slice(0, 500)}`));
      }
    }),
  );
  return { pid: () => p.pid, done };
}

/**
 * Polls replicas' files read-only (every ~1 ms) for the highest bench row id they show, and
 * records when it changes. A replica applies whole transactions in order, so "row id N visible"
 * means every transaction up to the one holding N is visible.
 */
export class VisibilitySampler {
  private conns: { name: string; q: Database.Statement; db: Database.Database }[] = [];
  /** Per replica: [time (wallMs), max id] whenever the max id changed. */
  readonly seen = new Map<string, [number, number][]>();
  polls = 0;
  private running = false;
  private loop: Promise<void> = Promise.resolve();

  constructor(files: Record<string, string>) {
    for (const [name, file] of Object.entries(files)) {
      const db = new Database(file, { readonly: true, fileMustExist: true, timeout: 1000 });
      this.conns.push({ name, db, q: db.prepare("SELECT max(id) AS m FROM bench").pluck() });
      this.seen.set(name, []);
    }
  }

  latest(name: string): number {
    const s = this.seen.get(name)!;
    return s.length ? s[s.length - 1][1] : 0;
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
      let m = 0;
      try {
        m = (c.q.get() as number | null) ?? 0;
      } catch {
        continue; // busy for a moment (checkpoint): next poll
      }
      const s = this.seen.get(c.name)!;
      if (m !== (s.length ? s[s.length - 1][1] : 0)) s.push([wallMs(), m]);
    }
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
    // Binary search: max ids only grow.
    let lo = 0;
    let hi = s.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (s[mid][1] >= id) hi = mid;
      else lo = mid + 1;
    }
    return lo < s.length ? s[lo][0] : null;
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
