/**
 * Injecting and healing faults on a chaos cluster. `inject` resolves the planned target against
 * the cluster as it is now, does the damage, and returns the heal (run after the fault's duration).
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import { ENDPOINTS } from "../../src/nats/protocol.js";
import { synctoolRequest } from "../../src/client/synctool.js";
import { waitFor } from "../../test/helpers/wait.js";
import type { ChaosCluster } from "./cluster.js";
import type { FaultRecord, History, SyncTaskRecord } from "./history.js";
import type { ProxyMode } from "./proxy.js";
import type { ChaosSql } from "./sql.js";
import { AGENTS, NODES, PROCESSES, WATCHDOGS, type PlannedFault } from "./scenarios.js";

export interface FaultContext {
  cl: ChaosCluster;
  history: History;
  /** The run's SQL for the repository kind. */
  sql: ChaosSql;
  /** What sync tasks name the tables' database as (DB.TABLE): main on SQLite, the schema on PostgreSQL. */
  db: string;
  /** The node holding the master lease, as last seen. */
  master(): string | null;
  log(line: string): void;
}

type Heal = () => Promise<void>;
const noHeal: Heal = async () => {};

const live = (ctx: FaultContext, name: string) => ctx.cl.running(name) && !ctx.cl.paused(name);
const choose = <T>(xs: T[], pick: number): T | undefined => xs[Math.floor(pick * xs.length)];

/** A process name for a planned target, or null with the reason it cannot be hit now. */
async function resolveProcess(ctx: FaultContext, f: PlannedFault): Promise<{ name: string } | { skip: string }> {
  const liveOf = (xs: readonly string[]) => xs.filter((n) => live(ctx, n));
  switch (f.target) {
    case "master": {
      const m = ctx.master();
      if (!m) return { skip: "no master lease holder" };
      if (!live(ctx, m)) return { skip: `the master ${m} is not running` };
      return { name: m };
    }
    case "slave": {
      const m = ctx.master();
      const c = liveOf(NODES.filter((n) => n !== m));
      return c.length ? { name: choose(c, f.pick)! } : { skip: "no live slave" };
    }
    case "watchdog":
    case "watchdog-standby": {
      const holder = (await ctx.cl.status()).leases.watchdog?.node;
      const c = liveOf(WATCHDOGS.filter((w) => (f.target === "watchdog" ? w === holder : w !== holder)));
      return c.length ? { name: c[0] } : { skip: `no live ${f.target}` };
    }
    case "collector": {
      const c = liveOf(AGENTS.filter((a) => a.startsWith("c")));
      return c.length ? { name: choose(c, f.pick)! } : { skip: "no live collector" };
    }
    case "any": {
      const c = liveOf(PROCESSES);
      return c.length ? { name: choose(c, f.pick)! } : { skip: "no live process" };
    }
    default:
      if ((PROCESSES as readonly string[]).includes(f.target)) return live(ctx, f.target) ? { name: f.target } : { skip: `${f.target} is not running` };
      return { skip: `unknown target ${f.target}` };
  }
}

/** Restarts a process once its previous life has ended. */
async function restart(ctx: FaultContext, name: string, rec: FaultRecord): Promise<void> {
  const p = ctx.cl.slots.get(name)!.proc;
  if (p?.running) await Promise.race([p.exited, new Promise((r) => setTimeout(r, 15_000))]);
  ctx.cl.start(name);
  rec.notes.push(`${name} restarted`);
}

export async function inject(ctx: FaultContext, f: PlannedFault, rec: FaultRecord): Promise<Heal> {
  const { cl } = ctx;
  switch (f.kind) {
    case "kill": {
      const t = await resolveProcess(ctx, f);
      if ("skip" in t) return skip(rec, t.skip);
      rec.resolved = t.name;
      cl.signal(t.name, "SIGKILL", "fault:kill");
      return () => restart(ctx, t.name, rec);
    }
    case "pause": {
      const t = await resolveProcess(ctx, f);
      if ("skip" in t) return skip(rec, t.skip);
      rec.resolved = t.name;
      cl.signal(t.name, "SIGSTOP", "fault:pause");
      return async () => {
        cl.signal(t.name, "SIGCONT", "heal");
      };
    }
    case "cut": {
      const t = await resolveProcess(ctx, f);
      if ("skip" in t) return skip(rec, t.skip);
      rec.resolved = t.name;
      const mode = String(f.params?.mode ?? "blackhole");
      const m: ProxyMode = mode === "delay" ? { mode: "delay", ms: Number(f.params?.ms ?? 500) } : mode === "drop" ? { mode: "drop" } : { mode: "blackhole" };
      const proxy = cl.proxies.get(t.name)!;
      proxy.set(m);
      return async () => proxy.set({ mode: "pass" });
    }
    case "nats-kill": {
      let i: number;
      if (f.target === "nats-master") {
        const m = ctx.master();
        const on = m ? cl.proxies.get(m)!.connectedTo() : [];
        if (!m || on.length === 0) return skip(rec, `the master ${m ?? "(none)"} has no NATS connection now`);
        i = on[0];
        rec.notes.push(`${m} is connected to nats-${i}`);
      } else i = Number(f.target.replace("nats-", ""));
      if (!cl.natsRunning(i)) return skip(rec, `nats-${i} is not running`);
      rec.resolved = `nats-${i}`;
      cl.killNats(i);
      return async () => {
        await waitFor(`nats-${i} restarted`, async () => (await cl.startNatsServer(i), true), { timeoutMs: 30_000, intervalMs: 500 });
        rec.notes.push(`nats-${i} restarted`);
      };
    }
    case "repo-unreadable": {
      const t = await resolveProcess(ctx, f);
      if ("skip" in t) return skip(rec, t.skip);
      rec.resolved = t.name;
      if (cl.repoKind === "postgres") {
        // No file to move away: the server is shut down (cleanly) and started again.
        const server = cl.pgServer(t.name);
        await server.stop("fast");
        rec.notes.push(`${t.name}'s PostgreSQL server stopped (fast)`);
        return async () => {
          await server.start();
          rec.notes.push(`${t.name}'s PostgreSQL server started`);
        };
      }
      const file = cl.repo(t.name);
      renameSync(file, `${file}.away`);
      return async () => {
        if (existsSync(`${file}.away`)) renameSync(`${file}.away`, file);
      };
    }
    case "backlog": {
      const t = await resolveProcess(ctx, f);
      if ("skip" in t) return skip(rec, t.skip);
      rec.resolved = t.name;
      const since = Date.now();
      cl.signal(t.name, "SIGKILL", "fault:backlog");
      // Writes until the master cuts the slave loose (its backlog passed the cap), or time runs out.
      const deadline = since + f.durationMs;
      let filled = 0;
      const cut = () => ctx.history.alerts.find((a) => a.at >= since && a.kind === "backlog-exceeded" && a.data?.replica === t.name);
      while (!cut() && Date.now() < deadline) {
        try {
          await cl.sql(ctx.sql.filler, undefined, 5000);
          filled++;
        } catch {
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      rec.notes.push(cut() ? `${t.name} cut loose by the master after ${filled} filler writes (${Date.now() - since} ms)` : `backlog cap not reached within ${f.durationMs} ms (${filled} filler writes)`);
      return () => restart(ctx, t.name, rec);
    }
    case "pg-kill": {
      if (cl.repoKind !== "postgres") return skip(rec, "pg-kill needs --repo postgres");
      const t = await resolveProcess(ctx, f);
      if ("skip" in t) return skip(rec, t.skip);
      rec.resolved = t.name;
      const server = cl.pgServer(t.name);
      const withProcess = f.params?.process === true;
      // The process first, as a power cut takes both: it must not see its server go.
      if (withProcess) cl.signal(t.name, "SIGKILL", "fault:pg-kill");
      await server.stop("immediate");
      rec.notes.push(`${t.name}'s PostgreSQL server stopped (immediate)${withProcess ? " with its ferry process (kill -9)" : ""}`);
      return async () => {
        await server.start();
        rec.notes.push(`${t.name}'s PostgreSQL server started`);
        if (withProcess) await restart(ctx, t.name, rec);
      };
    }
    case "sync-task": {
      const table = f.target;
      const dest = join(cl.dir, "offline", `${table}-${rec.n}`);
      mkdirSync(dest, { recursive: true });
      const task: SyncTaskRecord = { table, db: ctx.db, dest, createdAt: Date.now() };
      ctx.history.syncTasks.push(task);
      rec.resolved = table;
      const c = await cl.client();
      try {
        await waitFor(`sync task for ${table} created`, async () => {
          try {
            await synctoolRequest(c, ENDPOINTS.taskCreate, { db: ctx.db, table, mode: 0, dest, partitions: 4, format: "jsonl" });
            return true;
          } catch (err) {
            const code = (err as { code?: string }).code;
            if (code === "NO_ACTIVE_SYNCTOOL" || code === "TIMEOUT" || (err as Error).name === "TimeoutError") return false;
            throw err;
          }
        }, { timeoutMs: 30_000, intervalMs: 500 });
        task.createdAt = Date.now();
        rec.notes.push(`task ${ctx.db}.${table} -> ${dest}`);
      } catch (err) {
        task.error = `not created: ${(err as Error).message}`;
        rec.notes.push(task.error);
      }
      return noHeal;
    }
  }
}

function skip(rec: FaultRecord, why: string): Heal {
  rec.skipped = why;
  return noHeal;
}
