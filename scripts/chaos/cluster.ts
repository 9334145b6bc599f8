/**
 * The chaos cluster: three nats-servers with JetStream clustered over routes on loopback (the KV
 * buckets with 3 replicas), and the ferry processes of a small production setup, each a real
 * `ferry start` process whose every NATS connection goes through its own fault proxy:
 *
 *   m1 (master), s1 (slave, designated standby), s2 (slave)
 *   w1, w2 (watchdogs, primary and secondary)
 *   c1, c2 (collectors on hosts h1, h2 reading s1 and s2), st1 (synctool)
 *
 * The run's own client (workload, observers, ferry CLI commands) connects to the three servers
 * directly, so faults hit the processes, not the witness.
 *
 * Repositories: SQLite files (`<dir>/<node>/repo.db`), or with repo "postgres" a PostgreSQL
 * server of each node's own (`<dir>/<node>/pg/`, database "ferry"). The run reads them only
 * through the repository interface (openRepository), whatever the kind.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { client } from "../../src/cli/common.js";
import { runSql, type SqlReply } from "../../src/client/sql.js";
import type { Client } from "../../src/client/client.js";
import { readStatus, type ClusterStatus } from "../../src/client/status.js";
import { freePort, type NatsServer, type NatsServerOpts } from "../../src/nats/server.js";
import type { PgServer } from "../../src/local/postgres.js";
import { openRepository, type Repository, type RepositoryKind } from "../../src/storage/repository/index.js";
import { ferry, ferryRun, natsServer, postgresServer, type FerryProcess, type RunResult } from "../../test/helpers/procs.js";
import { waitFor } from "../../test/helpers/wait.js";
import type { ProcExit } from "./history.js";
import { FaultProxy } from "./proxy.js";
import { NODES, PROCESSES } from "./scenarios.js";

/** Short leases, synchronous replication, many automatic failovers allowed. */
export const CHAOS_BASE_CONFIG = {
  nats: { kvReplicas: 3 },
  lease: { ttlMs: 2000, safetyMarginMs: 600 },
  replication: { syncReplicas: 1, syncTimeoutMs: 3000, heartbeatMs: 250, pollMs: 500 },
  failover: { waitMs: 1000, prerequisites: 7, maxAutomatic: 100, windowMs: 3_600_000 },
  sync: { pollMs: 200, retryMs: 300, reassignWaitMs: 10_000 },
  log: { level: "info" },
};

interface Slot {
  name: string;
  args: string[];
  proc: FerryProcess | null;
  paused: boolean;
  /** Why the run is about to end this process (set before it signals it). */
  cause: string | null;
  starts: number;
}

interface NatsSlot {
  opts: NatsServerOpts & { port: number };
  server: NatsServer | null;
  url: string;
}

export class ChaosCluster {
  readonly name = `chaos${randomBytes(3).toString("hex")}`;
  readonly nats: NatsSlot[] = [];
  readonly proxies = new Map<string, FaultProxy>();
  readonly slots = new Map<string, Slot>();
  readonly exits: ProcExit[] = [];
  readonly clientConfig: string;
  /** PostgreSQL: each node's server and its repository's URL. */
  readonly pg = new Map<string, { server: PgServer; url: string }>();
  private c: Client | null = null;

  constructor(
    readonly dir: string,
    readonly config: Record<string, unknown>,
    readonly repoKind: RepositoryKind = "sqlite",
  ) {
    this.clientConfig = join(dir, "client.json");
  }

  /** A SQLite node's repository file. */
  repo(node: string): string {
    return join(this.dir, node, "repo.db");
  }

  /** A node's repository URL (`--repo`). */
  repoUrl(node: string): string {
    if (this.repoKind === "sqlite") return `sqlite:${this.repo(node)}`;
    const pg = this.pg.get(node);
    if (!pg) throw new Error(`no PostgreSQL server for ${node}: startRepositories first`);
    return pg.url;
  }

  /** PostgreSQL: every node's server (initdb, started, database "ferry"); SQLite: nothing to do. */
  async startRepositories(): Promise<void> {
    if (this.repoKind !== "postgres") return;
    await Promise.all(
      NODES.map(async (n) => {
        const server = await postgresServer({ dir: join(this.dir, n, "pg") });
        this.pg.set(n, { server, url: await server.createDb("ferry") });
      }),
    );
  }

  /** A node's PostgreSQL server. */
  pgServer(node: string): PgServer {
    const pg = this.pg.get(node);
    if (!pg) throw new Error(`${node} has no PostgreSQL server (repo ${this.repoKind})`);
    return pg.server;
  }

  /**
   * Reads a node's repository through the repository interface and closes it. A SQLite file that
   * is not there is not created: that read fails, as a PostgreSQL server that is down does.
   */
  async readRepo<T>(node: string, fn: (r: Repository) => Promise<T>): Promise<T> {
    if (this.repoKind === "sqlite" && !existsSync(this.repo(node))) throw new Error(`${this.repo(node)} does not exist`);
    const r = await openRepository(this.repoUrl(node));
    try {
      return await fn(r);
    } finally {
      await r.close();
    }
  }

  /** The three NATS servers, the buckets, and the proxies; no ferry process yet. */
  async startNats(): Promise<void> {
    // A free port can be taken before the server binds it (an outgoing connection's local port):
    // then the whole trio starts again on other ports.
    for (let attempt = 1; ; attempt++) {
      try {
        await this.startNatsOnce();
        break;
      } catch (err) {
        await Promise.all(this.nats.map((n) => n.server?.stop()));
        for (const n of this.nats) rmSync(n.opts.dir, { recursive: true, force: true });
        this.nats.length = 0;
        if (attempt >= 3) throw err;
      }
    }
    writeFileSync(this.clientConfig, JSON.stringify(this.configFor(this.nats.map((n) => n.url)), null, 2));
    // JetStream needs its meta leader before replicated buckets can be made.
    await waitFor("the KV buckets with 3 replicas", async () => (await this.client()).buckets(), { timeoutMs: 60_000, intervalMs: 500 });
    for (const name of PROCESSES) {
      const proxy = await FaultProxy.start(name, this.nats.map((n) => n.opts.port));
      this.proxies.set(name, proxy);
      writeFileSync(join(this.dir, `${name}.json`), JSON.stringify(this.configFor(proxy.urls), null, 2));
    }
  }

  private async startNatsOnce(): Promise<void> {
    const ports: number[] = [];
    while (ports.length < 6) {
      const p = await freePort();
      if (!ports.includes(p)) ports.push(p);
    }
    const cports = ports.splice(3);
    for (let i = 0; i < 3; i++) {
      const opts = {
        dir: join(this.dir, `nats-${i}`),
        port: ports[i],
        cluster: {
          name: `${this.name}-nats`,
          serverName: `n${i}`,
          port: cports[i],
          routes: cports.filter((_, j) => j !== i).map((p) => `nats-route://127.0.0.1:${p}`),
          noAdvertise: true,
        },
      };
      this.nats.push({ opts, server: null, url: `nats://127.0.0.1:${ports[i]}` });
    }
    const started = await Promise.allSettled(this.nats.map((_, i) => this.startNatsServer(i)));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  private configFor(servers: string[]) {
    return merge(merge(CHAOS_BASE_CONFIG, this.config), { cluster: this.name, nats: { servers } });
  }

  async startNatsServer(i: number): Promise<void> {
    this.nats[i].server = await natsServer(this.nats[i].opts);
  }

  /** kill -9 of a NATS server. */
  killNats(i: number): void {
    const s = this.nats[i].server;
    if (s && s.proc.exitCode === null) s.proc.kill("SIGKILL");
    this.nats[i].server = null;
  }

  natsRunning(i: number): boolean {
    const s = this.nats[i].server;
    return !!s && s.proc.exitCode === null && s.proc.signalCode === null;
  }

  /** Defines and starts every ferry process. */
  define(): void {
    const node = (id: string, role: string, extra: string[] = []) =>
      this.slots.set(id, { name: id, args: ["start", "--role", role, "--node", id, "--repo", this.repoUrl(id), ...extra], proc: null, paused: false, cause: null, starts: 0 });
    const other = (id: string, role: string, extra: string[]) => this.slots.set(id, { name: id, args: ["start", "--role", role, "--node", id, ...extra], proc: null, paused: false, cause: null, starts: 0 });
    node("m1", "master");
    node("s1", "slave", ["--designated", "standby"]);
    node("s2", "slave");
    other("w1", "watchdog", ["--designated", "primary"]);
    other("w2", "watchdog", ["--designated", "secondary"]);
    other("c1", "collector", ["--host", "h1", "--source", "s1"]);
    other("c2", "collector", ["--host", "h2", "--source", "s2"]);
    other("st1", "synctool", []);
  }

  start(name: string): FerryProcess {
    const slot = this.slots.get(name)!;
    if (slot.proc?.running) return slot.proc;
    mkdirSync(join(this.dir, name), { recursive: true });
    // SIGUSR2 makes Node write a diagnostic report (stacks, open handles) next to the logs.
    const nodeArgs = ["--report-on-signal", "--report-signal=SIGUSR2", `--report-directory=${this.dir}`];
    const p = ferry(name, [...slot.args, "--data", join(this.dir, name), "--config", join(this.dir, `${name}.json`)], { logDir: this.dir, nodeArgs });
    slot.proc = p;
    slot.paused = false;
    slot.starts++;
    void p.exited.then(() => {
      this.exits.push({ name, pid: p.pid, at: Date.now(), code: p.proc.exitCode, signal: p.proc.signalCode, cause: slot.cause });
      slot.cause = null;
    });
    return p;
  }

  running(name: string): boolean {
    return !!this.slots.get(name)?.proc?.running;
  }

  /** Sends a signal the run is responsible for (the exit, if any, is recorded with this cause). */
  signal(name: string, sig: NodeJS.Signals, cause: string): boolean {
    const slot = this.slots.get(name)!;
    const p = slot.proc;
    if (!p?.running) return false;
    if (sig === "SIGKILL" || sig === "SIGTERM") slot.cause = cause;
    if (sig === "SIGSTOP") slot.paused = true;
    if (sig === "SIGCONT") slot.paused = false;
    p.proc.kill(sig);
    return true;
  }

  paused(name: string): boolean {
    return !!this.slots.get(name)?.paused;
  }

  async client(): Promise<Client> {
    return (this.c ??= await client({ config: this.clientConfig }));
  }

  async sql(sql: string, params?: unknown, waitMs = 15_000): Promise<SqlReply> {
    return runSql(await this.client(), sql, params, waitMs);
  }

  async status(): Promise<ClusterStatus> {
    return readStatus(await this.client());
  }

  cli(args: string[], timeoutMs = 120_000): Promise<RunResult> {
    return ferryRun([...args, "--config", this.clientConfig], { cwd: this.dir, timeoutMs });
  }

  /** Heals the network and resumes paused processes; restarts nothing. */
  healAll(): void {
    for (const p of this.proxies.values()) p.set({ mode: "pass" });
    for (const s of this.slots.values()) if (s.paused) this.signal(s.name, "SIGCONT", "heal");
  }

  /** Stops every ferry process (SIGTERM; recorded with cause "stop"), then the proxies and NATS servers. */
  async stop(): Promise<void> {
    this.healAll();
    await Promise.all(
      [...this.slots.values()].map(async (s) => {
        if (!s.proc?.running) return;
        s.cause = "stop";
        const p = s.proc;
        await p.stop(15_000);
        // Let the exit handler record it before we go on.
        await new Promise((r) => setImmediate(r));
      }),
    );
    await this.c?.close().catch(() => {});
    this.c = null;
    for (const p of this.proxies.values()) await p.stop();
    await Promise.all(this.nats.map((n) => n.server?.stop()));
    await Promise.all([...this.pg.values()].map(({ server }) => server.stop("fast").catch(() => server.kill())));
  }
}

export function merge(a: Record<string, any>, b: Record<string, any>): Record<string, any> {
  const out: Record<string, any> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] = v && typeof v === "object" && !Array.isArray(v) && a[k] && typeof a[k] === "object" && !Array.isArray(a[k]) ? merge(a[k], v) : v;
  }
  return out;
}
