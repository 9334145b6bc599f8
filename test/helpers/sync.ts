/**
 * Helpers of the sync integration tests: a cluster with collectors and synctools, and readers of
 * the destination's files (snapshot rows, change records, replay).
 */
import * as assert from "uvu/assert";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { ENDPOINTS } from "../../src/nats/protocol.js";
import { synctoolRequest } from "../../src/client/synctool.js";
import { openRepository } from "../../src/storage/repository/index.js";
import { TestCluster } from "./cluster.js";
import { waitFor } from "./wait.js";

/** Sync timings for tests; the production lease (3 s) so a busy 2-core machine does not fence the master. */
export const SYNC_FAST = { lease: { ttlMs: 3000, safetyMarginMs: 1000 }, sync: { pollMs: 100, retryMs: 200, reassignWaitMs: 5000 } };

/** A master and `slaves` slaves, streaming, with the helpers of SyncCluster bound to them. */
export async function syncCluster(slaves: string[], config: Record<string, unknown> = {}, opts: { postgres?: boolean } = {}): Promise<SyncCluster> {
  const cl = await TestCluster.start({ config: merge(SYNC_FAST, config), postgres: opts.postgres });
  if (opts.postgres) await Promise.all(["m1", ...slaves].map((n) => cl.pgServer(n)));
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  for (const s of slaves) cl.startNode(s, "slave");
  for (const s of slaves) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
  return new SyncCluster(cl);
}

function merge(a: Record<string, any>, b: Record<string, any>): Record<string, any> {
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = v && typeof v === "object" && !Array.isArray(v) && typeof a[k] === "object" ? merge(a[k], v) : v;
  return out;
}

/** A running cluster and the sync helpers that need it. */
export class SyncCluster {
  constructor(readonly cl: TestCluster) {}

  collector(id: string, host: string, source: string, env: Record<string, string> = {}) {
    return this.cl.startProcess(id, "collector", ["--host", host, "--source", source], env);
  }

  /** A collector c1 on host h1 reading `source`, and a synctool st1, both active. */
  async startSync(source: string): Promise<void> {
    this.collector("c1", "h1", source);
    this.cl.startProcess("st1", "synctool");
    await this.waitActive("c1");
    await this.waitActive("st1");
  }

  waitActive(id: string, timeoutMs = 30_000) {
    return this.cl.waitMember(id, "active", (m) => m.state === "active", timeoutMs);
  }

  /** Waits until every slave has applied `lsn`. */
  async caughtUp(lsn: number, slaves: string[]) {
    for (const s of slaves) await this.cl.waitMember(s, `applied LSN ${lsn}`, (m) => m.appliedLsn >= lsn, 60_000);
  }

  async cliJson(args: string[]): Promise<any> {
    const r = await this.cl.cli([...args, "--json"]);
    if (r.code !== 0) throw new Error(`ferry ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** `ferry task status --json`, through the CLI. */
  async tasks(): Promise<any[]> {
    return (await this.cliJson(["task", "status"])).tasks;
  }

  /** The same, straight over NATS (for tight polling). */
  async tasksNow(): Promise<any[]> {
    const c = await this.cl.client();
    return (await synctoolRequest<{ tasks: any[] }>(c, ENDPOINTS.tasks, {})).tasks;
  }

  async waitTaskGone(task: string, timeoutMs = 60_000) {
    await waitFor(`task ${task} removed`, async () => !(await this.tasks()).some((t) => t.task === task), { timeoutMs, intervalMs: 250 });
  }

  /** Waits until replaying the destination gives the master's table, and checks no record is doubled. */
  async expectReplay(dest: string, table: string, key = "id", timeoutMs = 30_000): Promise<Files> {
    await waitFor(
      `replaying ${table} gives the table`,
      () => {
        const want = new Map(tableRows(this.cl.repo("m1"), table).map((r) => [JSON.stringify([r[key]]), JSON.stringify(r)]));
        const got = replay(readFiles(dest, table), [key]);
        return got.size === want.size && [...want].every(([k, v]) => got.get(k) === v);
      },
      { timeoutMs, intervalMs: 250 },
    );
    const files = readFiles(dest, table);
    const keys = files.snapshot.map((r) => r[key]);
    assert.is(new Set(keys).size, keys.length, `${table}: no snapshot row doubled`);
    const lines = files.stream.map((c) => JSON.stringify(c));
    assert.is(new Set(lines).size, lines.length, `${table}: no change record doubled`);
    return files;
  }
}

export function fileCount(dest: string, table: string): number {
  const root = join(dest, table);
  if (!existsSync(root)) return 0;
  return readdirSync(root).reduce((n, d) => n + readdirSync(join(root, d)).filter((f) => f.endsWith(".jsonl")).length, 0);
}

/** The collector each subtask was given, in the synctool's log order. */
export function assignments(logLines: Record<string, unknown>[], task: string): { part: number; collector: string }[] {
  return logLines.filter((l) => l.assigned && l.task === task).map((l) => ({ part: Number(l.part), collector: String(l.assigned) }));
}

/** The states an actor went through, from a process's log. */
export function states(logLines: Record<string, unknown>[], actor: string): string[] {
  return logLines.filter((l) => l.actor === actor && l.state !== undefined).map((l) => JSON.stringify(l.state));
}

export interface Files {
  snapshot: Record<string, any>[];
  stream: Record<string, any>[];
  /** Per partition, the lines of each file in order. */
  parts: Map<number, { name: string; lines: Record<string, any>[] }[]>;
}

/** Every pack file of a table under DIR: snapshot rows, then change records in replay order. */
export function readFiles(dest: string, table: string): Files {
  const out: Files = { snapshot: [], stream: [], parts: new Map() };
  const root = join(dest, table);
  if (!existsSync(root)) return out;
  for (const d of readdirSync(root).sort()) {
    const part = Number(/^part[-=](\d+)$/.exec(d)?.[1]);
    assert.ok(Number.isInteger(part), `unexpected entry ${d}`);
    const list: { name: string; lines: Record<string, any>[] }[] = [];
    for (const f of readdirSync(join(root, d)).sort()) {
      assert.ok(/^(snapshot|stream)-.*\.jsonl$/.test(f), `unexpected file ${d}/${f}`);
      const lines = readFileSync(join(root, d, f), "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l));
      list.push({ name: f, lines });
      (f.startsWith("snapshot-") ? out.snapshot : out.stream).push(...lines);
    }
    out.parts.set(part, list);
  }
  return out;
}

/** Rows of a table as the repository's table reader gives them (what snapshot files hold), any kind. */
export async function readerRows(url: string, table: string): Promise<Record<string, any>[]> {
  const repo = await openRepository(url);
  const reader = await repo.openTableReader({ table });
  const out: Record<string, any>[] = [];
  try {
    for (let c = await reader.next(1 << 20); c; c = await reader.next(1 << 20)) for (const l of c.text.split("\n")) if (l) out.push(JSON.parse(l));
    return out;
  } finally {
    await reader.close();
    await repo.close();
  }
}

/** Rows of a table as JSON objects like the destination's (blobs {"$blob": HEX}). */
export function tableRows(repo: string, table: string, select = "*"): Record<string, any>[] {
  const db = new Database(repo, { readonly: true });
  try {
    return (db.prepare(`SELECT ${select} FROM "${table}"`).all() as Record<string, unknown>[]).map((r) =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Buffer.isBuffer(v) ? { $blob: v.toString("hex").toUpperCase() } : v])),
    );
  } finally {
    db.close();
  }
}

/** Rows by key (JSON) to the row (JSON). */
export const canon = (rows: Record<string, any>[], key: string) => new Map(rows.map((r) => [JSON.stringify(r[key]), JSON.stringify(r)]));

/** The table as replaying snapshot rows then change records gives it, by `key`. */
export function replay(files: Files, key: string[]): Map<string, string> {
  const state = new Map<string, string>();
  const k = (row: Record<string, any>) => JSON.stringify(key.map((c) => row[c]));
  for (const r of files.snapshot) state.set(k(r), JSON.stringify(r));
  // Change records of one key are all in one partition, in order; replaying partition by partition is exact.
  for (const [, list] of [...files.parts].sort((a, b) => a[0] - b[0])) {
    for (const f of list) {
      if (!f.name.startsWith("stream-")) continue;
      for (const c of f.lines) {
        if (c.old) state.delete(k(c.old));
        if (c.op === "delete") state.delete(k(c.row));
        else state.set(k(c.row), JSON.stringify(c.row));
      }
    }
  }
  return state;
}
