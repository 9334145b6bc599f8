/** `ferry status`: every member's latest heartbeat, the leases, and each replica's backlog. */
import { listKeys } from "../nats/buckets.js";
import { Command } from "commander";
import Table from "cli-table3";
import { readFailoverState } from "../actors/watchdog.js";
import { TimeoutError, UsageError } from "../errors.js";
import { addGlobalOptions, action, allOpts, printJson, withClient, type Client } from "./common.js";

/** A member whose last heartbeat is older than this is DOWN. */
export const STALE_MS = 3000;

export interface ClusterStatus {
  cluster: string;
  leases: Record<string, { node: string; epoch: number; [k: string]: unknown }>;
  /** Automatic failovers recorded, how many fall in failover.windowMs, and whether the next one may happen. */
  failover: { failovers: number; recent: number; maxAutomatic: number; automatic: boolean };
  members: Record<string, unknown>[];
}

/** The cluster's status from the KV buckets; never waits longer than a few request timeouts. */
export async function readStatus(c: Client): Promise<ClusterStatus> {
  const limit = 3 * c.config.nats.requestTimeoutMs;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`reading the cluster status took longer than ${limit} ms`, { hint: "is JetStream available on the NATS servers?" })), limit);
  });
  try {
    return await Promise.race([readStatusOnce(c), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function readStatusOnce(c: Client): Promise<ClusterStatus> {
  const b = await c.buckets();
  const leases: ClusterStatus["leases"] = {};
  for (const key of await listKeys(b.leases)) {
    const e = await b.leases.get(key);
    if (e?.operation === "PUT") {
      try {
        leases[key] = e.json();
      } catch {
        /* a value ferry did not write */
      }
    }
  }
  const members: Record<string, unknown>[] = [];
  for (const key of await listKeys(b.members)) {
    const e = await b.members.get(key);
    if (e?.operation !== "PUT") continue;
    try {
      const m = e.json<Record<string, unknown>>();
      const age = Date.now() - Number(m.ts ?? 0);
      members.push({ ...m, heartbeatAgeMs: age, up: age < STALE_MS });
    } catch {
      /* ignore */
    }
  }
  members.sort((a, b) => String(a.node).localeCompare(String(b.node)));
  // A replica's backlog is known to the master: copy it onto the replica's row.
  const master = members.find((m) => m.state === "active" && m.up);
  const rows = (master?.replicas as { node: string; backlogBytes: number; needsResync: boolean; reason?: string }[] | undefined) ?? [];
  for (const m of members) {
    const r = rows.find((x) => x.node === m.node);
    if (r) Object.assign(m, { backlogBytes: r.backlogBytes, needsResync: Boolean(m.needsResync) || r.needsResync, resyncReason: r.reason ?? m.resyncReason });
  }
  const f = await readFailoverState(b.leases);
  const recent = f.history.filter((t) => t > Date.now() - c.config.failover.windowMs).length;
  const failover = { failovers: f.history.length, recent, maxAutomatic: c.config.failover.maxAutomatic, automatic: f.enabled && recent < c.config.failover.maxAutomatic };
  return { cluster: c.config.cluster, leases, failover, members };
}

export function renderStatus(s: ClusterStatus): string {
  const lease = s.leases.master;
  const wd = s.leases.watchdog;
  const lines = [
    `cluster ${s.cluster}: master lease ${lease ? `${lease.node} (epoch ${lease.epoch})` : "free (no active master)"}; active watchdog ${wd ? wd.node : "none"}`,
    `automatic failover ${s.failover.automatic ? "enabled" : "DISABLED (run: ferry failover reset)"}: ${s.failover.failovers} failover(s), ${s.failover.recent} of at most ${s.failover.maxAutomatic} in the window`,
  ];
  const t = new Table({
    head: ["node", "role", "state", "epoch", "applied", "lag lsn", "lag ms", "backlog", "heartbeat", "note"],
    style: { head: [], border: [] },
  });
  for (const m of s.members) {
    const note = m.needsResync
      ? `NEEDS RESYNC: ${String(m.resyncReason ?? (m.error as { message?: string } | null)?.message ?? "").slice(0, 80)}`
      : (m.error as { message?: string } | null)?.message ??
        (m.role === "collector" ? `host ${m.host}, reads ${m.source ?? "?"}` : m.role === "synctool" && m.state === "active" ? `${m.tasks} tasks, ${m.packsInFlight} packs in flight` : "");
    t.push([
      String(m.node),
      String(m.role),
      m.up ? `${m.state}${m.replica ? `/${m.replica}` : ""}${m.role === "watchdog" && m.state === "active" ? ` (${stateText(m.decision)})` : ""}` : "DOWN",
      String(m.epoch ?? ""),
      String(m.appliedLsn ?? ""),
      String(m.lagLsn ?? ""),
      m.lagMs === null || m.lagMs === undefined ? "-" : String(m.lagMs),
      m.backlogBytes === undefined ? "-" : String(m.backlogBytes),
      `${(Number(m.heartbeatAgeMs) / 1000).toFixed(1)}s ago`,
      note,
    ]);
  }
  lines.push(t.toString());
  return lines.join("\n") + "\n";
}

const stateText = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v).replace(/[{}"]/g, "").replace(/:/g, "."));

export function statusCommand(): Command {
  const cmd = new Command("status")
    .description("show every node: role, state, epoch, applied LSN, lag, backlog, heartbeat")
    .option("--json", "print JSON")
    .option("--watch [ms]", "refresh in place (every second, or every ms) until Ctrl-C");
  addGlobalOptions(cmd);
  return cmd.action(
    action(async () => {
      const opts = allOpts(cmd);
      if (opts.watch === undefined) {
        const s = await withClient(opts, readStatus);
        if (opts.json) printJson(s);
        else process.stdout.write(renderStatus(s));
        return;
      }
      const every = opts.watch === true ? 1000 : Number(opts.watch);
      if (!Number.isFinite(every) || every < 100) throw new UsageError("--watch takes a refresh period of at least 100 ms");
      await withClient(opts, async (c) => {
        let stop = false;
        const quit = () => (stop = true);
        process.once("SIGINT", quit);
        process.once("SIGTERM", quit);
        while (!stop) {
          const s = await readStatus(c).catch((err: Error) => err);
          const body = s instanceof Error ? `ferry: ${s.message}\n` : opts.json ? `${JSON.stringify(s)}\n` : renderStatus(s);
          // Home the cursor and clear the screen on a terminal: the table is redrawn in place.
          process.stdout.write(opts.json || !process.stdout.isTTY ? body : `\x1b[H\x1b[2J${new Date().toISOString()}  (every ${every} ms, Ctrl-C stops)\n${body}`);
          await new Promise((r) => setTimeout(r, every));
        }
      });
    }),
  );
}
