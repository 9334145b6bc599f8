/**
 * The cluster's status as `ferry status` and the dashboard read it: the leases, every member's
 * heartbeat, failovers, and on a replica's row the diverged mark continuous verification gave it.
 */
import { decodeDiverged, isDivergedKey, memberRecords, readFailoverState, type DivergedRecord } from "../nats/records.js";
import { TimeoutError } from "../errors.js";
import { listKeys } from "../nats/buckets.js";
import type { Client } from "./client.js";

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
  const diverged = new Map<string, DivergedRecord>();
  for (const key of await listKeys(b.leases)) {
    const e = await b.leases.get(key);
    if (isDivergedKey(key)) {
      const r = e?.operation === "PUT" ? decodeDiverged(e.value) : null;
      if (r) diverged.set(r.node, r);
    } else if (e?.operation === "PUT") {
      try {
        leases[key] = e.json();
      } catch {
        /* a value ferry did not write */
      }
    }
  }
  const members: Record<string, unknown>[] = [];
  for (const m of await memberRecords(b.members)) {
    const age = Date.now() - Number(m.ts ?? 0);
    members.push({ ...m, heartbeatAgeMs: age, up: age < STALE_MS, ...(diverged.has(m.node) ? { diverged: diverged.get(m.node) } : {}) });
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
