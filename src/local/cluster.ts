/**
 * A whole cluster on one machine: a nats-server with JetStream, a master and slaves on SQLite
 * repositories (or, with `postgres`, each on a PostgreSQL server of its own under its directory),
 * two watchdogs, a collector per node and a synctool, each a real `ferry start` process with its
 * log in its own directory. Used by `ferry up` and `ferry demo`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, closeSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, startNatsServer, type NatsServer } from "../nats/server.js";
import { redactRepositoryUrl } from "../storage/repository/url.js";
import type { PgServer } from "./postgres.js";

export const FERRY_BIN = resolve(fileURLToPath(new URL("../../bin/ferry", import.meta.url)));

export interface LocalMember {
  id: string;
  role: string;
  args: string[];
  dir: string;
  log: string;
  repo?: string;
  proc: ChildProcess | null;
  restarts: number;
}

export interface LocalClusterOpts {
  dir: string;
  cluster: string;
  slaves: number;
  /** NATS client port; default 14222 when free, else any free port. */
  port?: number;
  /** Extra config for every process (merged over cluster and servers). */
  config?: Record<string, unknown>;
  /** Each node's repository on a PostgreSQL server of its own (initdb into DIR/<node>/pg on first use). */
  postgres?: boolean;
  /** Restart a process that exits unexpectedly (ferry up) or leave it down (ferry demo). */
  restart: boolean;
  /** Where to say what happens (a process exited, restarted). */
  say: (line: string) => void;
}

export class LocalCluster {
  readonly members = new Map<string, LocalMember>();
  /** The PostgreSQL server of each node (with `postgres`). */
  readonly pg = new Map<string, PgServer>();
  private stopping = false;

  private constructor(
    readonly opts: LocalClusterOpts,
    readonly nats: NatsServer,
    readonly configFile: string,
  ) {}

  static async start(opts: LocalClusterOpts): Promise<LocalCluster> {
    const dir = resolve(opts.dir);
    mkdirSync(dir, { recursive: true });
    // PostgreSQL runs as its own OS user, which must reach the servers' directories below this one.
    if (opts.postgres) chmodSync(dir, 0o755);
    const port = opts.port ?? (await preferredPort(14222));
    const nats = await startNatsServer({ dir: join(dir, "nats"), port });
    const configFile = join(dir, "ferry.json");
    const extra = opts.config ?? {};
    const config = { ...extra, cluster: opts.cluster, nats: { ...(extra.nats as object | undefined), servers: [nats.url] } };
    writeFileSync(configFile, JSON.stringify(config, null, 2) + "\n");
    const c = new LocalCluster({ ...opts, dir }, nats, configFile);
    const nodes = ["dm1", ...Array.from({ length: opts.slaves }, (_, i) => `dm${i + 2}`)];
    let repos: string[];
    try {
      repos = await Promise.all(nodes.map((id) => (opts.postgres ? c.postgresRepo(id) : `sqlite:${join(dir, id, "repo.db")}`)));
    } catch (err) {
      await c.stop();
      throw err;
    }
    nodes.forEach((id, i) => c.add(id, i === 0 ? "master" : "slave", ["--repo", repos[i], ...(i === 1 ? ["--designated", "standby"] : [])]));
    // One collector per node, each on its node's "host" (reading that node's replica), and one synctool.
    for (const n of [...c.members.keys()]) c.add(`c-${n}`, "collector", ["--host", n, "--source", n]);
    c.add("sync1", "synctool", []);
    // Two monitors, as in Data Mover's HA scenario: the primary decides, the secondary takes over if it dies.
    c.add("w1", "watchdog", ["--designated", "primary"]);
    c.add("w2", "watchdog", ["--designated", "secondary"]);
    for (const m of c.members.values()) c.launch(m);
    return c;
  }

  /** The node's own PostgreSQL server (its data kept in DIR/<node>/pg), and the URL of its database `ferry`. */
  private async postgresRepo(id: string): Promise<string> {
    const dir = join(this.opts.dir, id, "pg");
    mkdirSync(dir, { recursive: true });
    // Loaded here: pg is for clusters on PostgreSQL (every ferry process loads this file).
    const { startPostgres } = await import("./postgres.js");
    const server = await startPostgres({ dir });
    this.pg.set(id, server);
    // A directory used before holds the database already (ferry up again).
    return server.createDb("ferry").catch((err: Error) => {
      if (/already exists/.test(err.message)) return server.url.replace(/\/postgres$/, "/ferry");
      throw err;
    });
  }

  private add(id: string, role: string, extra: string[]): void {
    const dir = join(this.opts.dir, id);
    mkdirSync(dir, { recursive: true });
    const repo = extra.includes("--repo") ? extra[extra.indexOf("--repo") + 1] : undefined;
    this.members.set(id, {
      id,
      role,
      args: ["start", "--role", role, "--node", id, ...extra, "--data", dir, "--config", this.configFile],
      dir,
      log: join(dir, "ferry.log"),
      repo,
      proc: null,
      restarts: 0,
    });
  }

  /** Starts (or restarts) a member's process. */
  launch(m: LocalMember): void {
    const fd = openSync(m.log, "a");
    const proc = spawn(process.execPath, [FERRY_BIN, ...m.args], { stdio: ["ignore", fd, fd] });
    closeSync(fd);
    m.proc = proc;
    proc.on("exit", (code, signal) => {
      if (m.proc === proc) m.proc = null;
      if (this.stopping || !this.opts.restart) return;
      m.restarts++;
      this.opts.say(`${m.id} exited (${signal ?? `code ${code}`}); restarting in 2 s (see ${m.log})`);
      setTimeout(() => !this.stopping && !m.proc && this.launch(m), 2000);
    });
  }

  member(id: string): LocalMember {
    const m = this.members.get(id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  /** Sends a signal to a member and waits for it to exit. */
  async kill(id: string, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const p = this.member(id).proc;
    if (!p) return;
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill(signal);
    await exited;
  }

  describe(): string[] {
    return [...this.members.values()].map((m) =>
      m.repo
        ? `  ${m.id.padEnd(8)} ${m.role.padEnd(9)} pid ${m.proc?.pid}  repo ${redactRepositoryUrl(m.repo)}  log ${m.log}`
        : `  ${m.id.padEnd(8)} ${m.role.padEnd(9)} pid ${m.proc?.pid}  log ${m.log}`,
    );
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.members.values()].map(
        (m) =>
          new Promise<void>((res) => {
            const p = m.proc;
            if (!p) return res();
            const force = setTimeout(() => p.kill("SIGKILL"), 10_000);
            p.once("exit", () => (clearTimeout(force), res()));
            p.kill("SIGTERM");
          }),
      ),
    );
    await this.nats.stop();
    await Promise.all([...this.pg.values()].map((s) => s.stop("fast").catch(() => s.kill())));
  }
}

async function preferredPort(port: number): Promise<number> {
  const free = await new Promise<boolean>((res) => {
    const s = createServer();
    s.once("error", () => res(false));
    s.listen(port, "127.0.0.1", () => s.close(() => res(true)));
  });
  return free ? port : freePort();
}
