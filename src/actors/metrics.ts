/**
 * Prometheus metrics (`--metrics-port`): every process serves /metrics, derived from the same
 * status it publishes in its heartbeat, plus alerts raised and the process defaults (memory,
 * CPU, event-loop lag) of prom-client. Imported only when a port is set (heartbeat.ts): loading
 * prom-client costs a process about 130 ms of CPU at start, and its default metrics observe
 * every garbage collection.
 */
import { createServer, type Server } from "node:http";
import type { Logger } from "pino";
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import type { Config } from "../config.js";
import type { Alerts } from "./alerts.js";

const registry = new Registry();
collectDefaultMetrics({ register: registry });

const g = (name: string, help: string, labels: string[] = []) =>
  new Gauge({ name, help, labelNames: ["role", "node", ...labels], registers: [registry] });

/** Top-level numeric status fields and the gauges they feed. */
const FIELDS: Record<string, Gauge> = {
  epoch: g("ferry_epoch", "the epoch this process serves (master) or has seen (replica)"),
  appliedLsn: g("ferry_applied_lsn", "last LSN applied to this repository (the master: sequenced)"),
  spooledLsn: g("ferry_spooled_lsn", "last LSN held in this process's spool"),
  headLsn: g("ferry_head_lsn", "the master's head LSN as last known"),
  lagLsn: g("ferry_lag_lsn", "LSNs behind the master"),
  lagMs: g("ferry_lag_ms", "milliseconds behind the master (from the replicated heartbeat table)"),
  applyLatencyMs: g("ferry_apply_latency_ms", "commit-to-applied time of the last applied batch"),
  changeSeq: g("ferry_change_seq", "highest id in the repository's change table"),
  failovers: g("ferry_failovers", "automatic failovers recorded (watchdog)"),
  tasks: g("ferry_sync_tasks", "table sync tasks (synctool)"),
  subtasks: g("ferry_sync_subtasks", "sync subtasks (synctool)"),
  packsInFlight: g("ferry_sync_packs_in_flight", "packs requested and not yet written (synctool)"),
};
const up = g("ferry_up", "1 while the process runs");
const stateG = g("ferry_state", "1 for the state the process is in", ["state"]);
const needsResync = g("ferry_needs_resync", "1 when this replica needs a resync");
const automatic = g("ferry_failover_automatic", "1 when automatic failover is enabled (watchdog)");
const holder = g("ferry_master_lease_holder", "1 for the node this process sees holding the master lease", ["holder"]);
const backlog = g("ferry_replica_backlog_bytes", "bytes the master holds for a replica", ["replica"]);
const acked = g("ferry_replica_acked_lsn", "LSN a replica holds durably, as the master knows it", ["replica"]);
const replicaResync = g("ferry_replica_needs_resync", "1 when the master has cut a replica loose", ["replica"]);
const diverged = g("ferry_replica_diverged_rows", "rows in which continuous verification found a replica different from the master (watchdog; only replicas marked diverged)", ["replica"]);
const syncRows = g("ferry_sync_rows", "rows written by a sync subtask", ["table", "partition"]);
const syncPacks = g("ferry_sync_packs", "packs written by a sync subtask", ["table", "partition"]);
const alerts = new Counter({ name: "ferry_alerts_total", help: "alerts raised by this process", labelNames: ["role", "node", "kind", "severity"], registers: [registry] });

function refresh(base: { role: string; node: string }, s: Record<string, unknown>, raised: Alerts): void {
  for (const gauge of [stateG, holder, backlog, acked, replicaResync, diverged, syncRows, syncPacks]) gauge.reset();
  // Counted by the process since it started: a counter's value is the count, so it never goes back.
  alerts.reset();
  for (const a of raised.counts()) alerts.inc({ ...base, kind: a.kind, severity: a.severity }, a.n);
  up.set(base, 1);
  for (const [field, gauge] of Object.entries(FIELDS)) if (typeof s[field] === "number") gauge.set(base, s[field] as number);
  if (typeof s.state === "string") stateG.set({ ...base, state: s.state }, 1);
  if (typeof s.needsResync === "boolean") needsResync.set(base, s.needsResync ? 1 : 0);
  if (typeof s.automatic === "boolean") automatic.set(base, s.automatic ? 1 : 0);
  if (typeof s.master === "string") holder.set({ ...base, holder: s.master }, 1);
  for (const r of (s.replicas as { node: string; backlogBytes: number; acked: number; needsResync: boolean }[] | undefined) ?? []) {
    backlog.set({ ...base, replica: r.node }, r.backlogBytes);
    acked.set({ ...base, replica: r.node }, r.acked);
    replicaResync.set({ ...base, replica: r.node }, r.needsResync ? 1 : 0);
  }
  for (const d of (s.divergedReplicas as { node: string; rows: number }[] | undefined) ?? []) diverged.set({ ...base, replica: d.node }, d.rows);
  for (const t of (s.subtaskStats as { table: string; partition: number; rows: number; packs: number }[] | undefined) ?? []) {
    syncRows.set({ ...base, table: t.table, partition: String(t.partition) }, t.rows);
    syncPacks.set({ ...base, table: t.table, partition: String(t.partition) }, t.packs);
  }
}

/** What startMetrics reads of a process's Runtime. */
interface MetricsHost {
  config: Pick<Config, "metrics">;
  log: Logger;
  role: string;
  node: string;
  alerts: Alerts;
}

/** Serves /metrics on metrics.port, which is set; resolves to a function that stops it. */
export async function startMetrics(rt: MetricsHost, status: () => Record<string, unknown>): Promise<() => Promise<void>> {
  const { port, host } = rt.config.metrics;
  const base = { role: rt.role, node: rt.node };
  const server: Server = createServer((req, res) => {
    if (req.url !== "/metrics") {
      res.writeHead(404).end("see /metrics\n");
      return;
    }
    refresh(base, status(), rt.alerts);
    registry.metrics().then(
      (text) => res.writeHead(200, { "content-type": registry.contentType }).end(text),
      (err) => res.writeHead(500).end(String(err)),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  }).catch((err) => {
    rt.log.error({ err: String(err), port }, `metrics not served: ${(err as Error).message}`);
  });
  if (server.listening) rt.log.info({ port, host }, `metrics on http://${host}:${port}/metrics`);
  return () => new Promise((resolve) => server.close(() => resolve()));
}
