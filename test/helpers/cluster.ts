/**
 * A test cluster: a real nats-server, real `ferry` node processes, real LevelDB, and real
 * repositories: SQLite files, or (with `postgres: true`) a PostgreSQL server per node.
 */
import { writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { client } from "../../src/cli/common.js";
import type { Client } from "../../src/client/client.js";
import { readStatus, type ClusterStatus } from "../../src/client/status.js";
import { runSql, type SqlReply } from "../../src/client/sql.js";
import { dumpFile } from "../../src/storage/repository/sqlite/schema.js";
import { openRepository } from "../../src/storage/repository/index.js";
import type { PgServer } from "../../src/local/postgres.js";
import type { NatsServer, NatsServerOpts } from "../../src/nats/server.js";
import { ferry, ferryRun, natsServer, postgresServer, tempDir, type FerryProcess, type RunResult } from "./procs.js";
import { waitFor } from "./wait.js";

/** Short timings so tests run in seconds. */
export const FAST_CONFIG = {
  lease: { ttlMs: 1500, safetyMarginMs: 500 },
  replication: { heartbeatMs: 250, pollMs: 500 },
  log: { level: "debug" },
};

export type Member = Record<string, any>;

export class TestCluster {
  readonly nodes = new Map<string, FerryProcess>();
  private c: Client | null = null;
  private closed = false;
  private onClose: (() => Promise<void>)[] = [];
  /** PostgreSQL: each node's server (started by pgServer, or by startNode when missing). */
  readonly pg = new Map<string, { server: PgServer; url: string }>();

  private constructor(
    readonly dir: string,
    readonly nats: NatsServer,
    readonly name: string,
    readonly configFile: string,
    readonly postgres: boolean,
  ) {}

  /** `nats` passes options to the nats-server (e.g. authorization, TLS, and a probe that can log in). */
  static async start(opts: { config?: Record<string, unknown>; nats?: Partial<NatsServerOpts>; postgres?: boolean } = {}): Promise<TestCluster> {
    const dir = tempDir();
    const nats = await natsServer({ dir: join(dir, "nats"), ...opts.nats });
    const name = `t${randomBytes(3).toString("hex")}`;
    const configFile = join(dir, "ferry.json");
    const config = merge({ cluster: name, nats: { servers: [nats.url] }, ...FAST_CONFIG }, opts.config ?? {});
    writeFileSync(configFile, JSON.stringify(config, null, 2));
    return new TestCluster(dir, nats, name, configFile, opts.postgres === true);
  }

  /** A cluster with master m1 active and `slaves` streaming (each on a PostgreSQL server of its own with `postgres`). */
  static async masterAndSlaves(opts: { config?: Record<string, unknown>; postgres?: boolean; slaves?: string[] } = {}): Promise<TestCluster> {
    const cl = await TestCluster.start({ config: opts.config, postgres: opts.postgres });
    const slaves = opts.slaves ?? ["s1", "s2"];
    if (cl.postgres) await Promise.all(["m1", ...slaves].map((n) => cl.pgServer(n)));
    cl.startNode("m1", "master");
    await cl.waitMaster("m1");
    for (const s of slaves) cl.startNode(s, "slave");
    for (const s of slaves) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
    return cl;
  }

  /** kill -9 of a node's process, and once it is gone, the same node started again. */
  async killAndRestart(id: string, role: "master" | "slave"): Promise<FerryProcess> {
    const p = this.nodes.get(id)!;
    p.kill("SIGKILL");
    await p.exited;
    return this.startNode(id, role);
  }

  /** Waits for an active master other than `not` that holds the master lease. */
  async waitNewMaster(not: string, timeoutMs = 20_000): Promise<Member> {
    return this.explain(
      waitFor(`a master other than ${not}`, async () => {
        const s = await this.status();
        const m = s.members.find((x) => x.state === "active" && x.up && x.node !== not) as Member | undefined;
        return m && s.leases.master?.node === m.node ? m : null;
      }, { timeoutMs }),
    );
  }

  /** A SQLite node's repository file. */
  repo(id: string): string {
    return join(this.dir, id, "repo.db");
  }

  /** A node's repository URL (its PostgreSQL server must have been started: pgServer or startNode). */
  repoUrl(id: string): string {
    if (!this.postgres) return `sqlite:${this.repo(id)}`;
    const pg = this.pg.get(id);
    if (!pg) throw new Error(`no PostgreSQL server for ${id}: call pgServer first`);
    return pg.url;
  }

  /** The node's own PostgreSQL server, started on first use (database "ferry"). */
  async pgServer(id: string): Promise<{ server: PgServer; url: string }> {
    let pg = this.pg.get(id);
    if (!pg) {
      const server = await postgresServer({ dir: join(this.dir, id, "pg") });
      pg = { server, url: await server.createDb("ferry") };
      this.pg.set(id, pg);
    }
    return pg;
  }

  startNode(id: string, role: "master" | "slave", extra: string[] = [], env: Record<string, string> = {}, nodeArgs: string[] = []): FerryProcess {
    mkdirSync(join(this.dir, id), { recursive: true });
    const p = ferry(
      id,
      ["start", "--role", role, "--node", id, "--repo", this.repoUrl(id), "--data", join(this.dir, id), "--config", this.configFile, ...extra],
      { logDir: this.dir, env, nodeArgs },
    );
    this.nodes.set(id, p);
    return p;
  }

  /** Starts any other role (watchdog, collector, synctool) with this cluster's config. */
  startProcess(id: string, role: string, extra: string[] = [], env: Record<string, string> = {}): FerryProcess {
    mkdirSync(join(this.dir, id), { recursive: true });
    const p = ferry(id, ["start", "--role", role, "--node", id, "--data", join(this.dir, id), "--config", this.configFile, ...extra], {
      logDir: this.dir,
      env,
    });
    this.nodes.set(id, p);
    return p;
  }

  startWatchdog(id: string, designated: "primary" | "secondary" = "primary"): FerryProcess {
    return this.startProcess(id, "watchdog", ["--designated", designated]);
  }

  /** Runs a ferry CLI command against this cluster. */
  cli(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
    return ferryRun([...args, "--config", this.configFile], { env, cwd: this.dir });
  }

  async client(): Promise<Client> {
    if (this.closed) throw new Error("the test cluster is closed");
    return (this.c ??= await client({ config: this.configFile }));
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Runs fn when the cluster closes (e.g. to stop a workload left running by a failed test). */
  closing(fn: () => Promise<void>): void {
    this.onClose.push(fn);
  }

  /** The last lines of every process's log, printed when a wait on the cluster times out. */
  diagnose(lines = 25): string {
    return [...this.nodes.values()]
      .map((n) => `--- ${n.name} (${n.running ? "running" : `exited ${n.proc.exitCode ?? n.proc.signalCode}`}) ${n.logFile}\n${n.log().trimEnd().split("\n").slice(-lines).join("\n")}`)
      .join("\n");
  }

  /** waitFor, printing every process's last log lines if the wait times out. */
  until<T>(what: string, fn: () => T | Promise<T>, opts: { timeoutMs?: number; intervalMs?: number } = {}): Promise<NonNullable<T>> {
    return this.explain(waitFor(what, fn, opts));
  }

  private async explain<T>(p: Promise<T>): Promise<T> {
    try {
      return await p;
    } catch (err) {
      process.stderr.write(`${(err as Error).message}\n${this.diagnose()}\n`);
      throw err;
    }
  }

  async status(): Promise<ClusterStatus> {
    return readStatus(await this.client());
  }

  async member(id: string): Promise<Member | undefined> {
    return (await this.status()).members.find((m) => m.node === id);
  }

  async waitMember(id: string, what: string, pred: (m: Member) => boolean, timeoutMs = 20_000): Promise<Member> {
    return this.explain(
      waitFor(`${id}: ${what}`, async () => {
        const m = await this.member(id);
        return m && m.up && pred(m) ? m : null;
      }, { timeoutMs }),
    );
  }

  async waitMaster(id: string, timeoutMs = 20_000): Promise<Member> {
    return this.waitMember(id, "active master", (m) => m.state === "active", timeoutMs);
  }

  async sql(sql: string, params?: unknown, waitMs = 5000, timeoutMs?: number): Promise<SqlReply> {
    return runSql(await this.client(), sql, params, waitMs, timeoutMs);
  }

  /** A SQLite node's dump, read beside the running node. */
  dump(id: string): string {
    return dumpFile(this.repo(id));
  }

  /** Any node's dump, through the repository interface (a repository that is down throws). */
  async dumpRepo(id: string): Promise<string> {
    if (!this.postgres) return this.dump(id);
    const repo = await openRepository(this.repoUrl(id));
    try {
      return await repo.dump();
    } finally {
      await repo.close();
    }
  }

  /** Waits until every replica's dump equals the master's, and returns that dump. */
  async waitConverged(master: string, replicas: string[], timeoutMs = 30_000): Promise<string> {
    let want = "";
    await this.explain(
      waitFor(`${replicas.join(",")} identical to ${master}`, async () => {
        want = await this.dumpRepo(master);
        for (const r of replicas) if ((await this.dumpRepo(r).catch(() => null)) !== want) return false;
        return true;
      }, { timeoutMs, intervalMs: 200 }),
    );
    return want;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const fn of this.onClose) await fn().catch(() => {});
    await this.c?.close().catch(() => {});
    this.c = null;
    await Promise.all([...this.nodes.values()].map((n) => n.stop()));
  }
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] = v && typeof v === "object" && !Array.isArray(v) && typeof a[k] === "object" ? merge(a[k] as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}
