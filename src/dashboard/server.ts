/**
 * `ferry dashboard`'s server: a node:http server whose page (GET /) follows the cluster live through
 * server-sent events (GET /events). It listens to every heartbeat (ferry.<cluster>.hb.>) and alert
 * (ferry.<cluster>.alert), reads the leases, members and failover count as `ferry status` does
 * (readStatus), and asks the synctool for its tasks as `ferry task status` does; every second it
 * pushes one JSON snapshot of all that, and each alert as it arrives. GET /state is the snapshot.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Alert } from "../nats/messages.js";
import type { Client } from "../client/client.js";
import { readStatus, STALE_MS, type ClusterStatus } from "../client/status.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { subscribeHeartbeats } from "../nats/records.js";
import { synctoolRequest } from "../client/synctool.js";
import { asFerryError, UsageError } from "../errors.js";
import { PAGE } from "./page.js";

/** What the page receives every second. */
export interface Snapshot {
  ts: number;
  cluster: string;
  leases: ClusterStatus["leases"];
  failover: ClusterStatus["failover"] | null;
  /** Every process, its latest heartbeat (from the subject or the members bucket, whichever is newer). */
  members: Record<string, unknown>[];
  /** Why the leases and members could not be read, if they could not. */
  statusError: string | null;
  /** The synctool's tasks (`ferry task status --json`), or null with the reason in tasksError. */
  tasks: unknown[] | null;
  tasksError: string | null;
}

export interface Dashboard {
  url: string;
  snapshot(): Snapshot;
  close(): Promise<void>;
}

const TICK_MS = 1000;
const KEEP_ALERTS = 50;

export async function startDashboard(c: Client, opts: { port: number; host: string }): Promise<Dashboard> {
  let status: ClusterStatus | null = null;
  let statusError: string | null = "not read yet";
  let tasks: unknown[] | null = null;
  let tasksError: string | null = "not asked yet";
  /** The latest heartbeat heard on the subject, by node. */
  const live = new Map<string, Record<string, unknown>>();
  /** Newest first. */
  const alerts: Alert[] = [];
  const clients = new Set<ServerResponse>();

  const subs = [
    subscribeHeartbeats(c.nc, c.subj, (hb) => void (typeof hb.ts === "number" && live.set(hb.node, hb))),
    c.nc.subscribe(c.subj.alert, {
      callback: (_e, m) => {
        try {
          const a = m.json<Alert>();
          alerts.unshift(a);
          alerts.length = Math.min(alerts.length, KEEP_ALERTS);
          send("alert", a);
        } catch {
          /* not ferry's */
        }
      },
    }),
  ];

  function snapshot(): Snapshot {
    const now = Date.now();
    const byNode = new Map<string, Record<string, unknown>>();
    for (const m of status?.members ?? []) byNode.set(String(m.node), { ...m });
    // A heartbeat heard on the subject after the bucket was read is the fresher one.
    for (const [node, hb] of live) {
      const m = byNode.get(node);
      if (!m || Number(hb.ts) > Number(m.ts ?? 0)) byNode.set(node, { ...m, ...hb });
    }
    const members = [...byNode.values()]
      .map((m): Record<string, unknown> => {
        const age = now - Number(m.ts ?? 0);
        return { ...m, heartbeatAgeMs: age, up: age < STALE_MS };
      })
      .sort((a, b) => String(a.node).localeCompare(String(b.node)));
    return { ts: now, cluster: c.config.cluster, leases: status?.leases ?? {}, failover: status?.failover ?? null, members, statusError, tasks, tasksError };
  }

  function send(event: string, data: unknown): void {
    const frame = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const res of clients) res.write(frame);
  }

  // Two loops, so a synctool that is slow to answer never delays the nodes' snapshot.
  let stopped = false;
  const loop = async (fn: () => Promise<void>) => {
    while (!stopped) {
      const started = Date.now();
      await fn();
      await new Promise((r) => setTimeout(r, Math.max(0, TICK_MS - (Date.now() - started))));
    }
  };
  void Promise.all([
    loop(async () => {
      try {
        status = await readStatus(c);
        statusError = null;
      } catch (err) {
        statusError = asFerryError(err).message;
      }
      if (!stopped) send("state", snapshot());
    }),
    loop(async () => {
      try {
        tasks = (await synctoolRequest<{ tasks: unknown[] }>(c, ENDPOINTS.tasks, {})).tasks;
        tasksError = null;
      } catch (err) {
        tasks = null;
        tasksError = asFerryError(err).message;
      }
    }),
  ]);

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
    } else if (path === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(PAGE);
    } else if (path === "/state") {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" }).end(JSON.stringify({ ...snapshot(), alerts }));
    } else if (path === "/events") {
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", connection: "keep-alive" });
      // The alerts heard so far and the current state at once; then the ticks and each new alert.
      res.write(`retry: 1000\nevent: alerts\ndata: ${JSON.stringify(alerts)}\n\nevent: state\ndata: ${JSON.stringify(snapshot())}\n\n`);
      clients.add(res);
      req.once("close", () => clients.delete(res));
      res.once("error", () => clients.delete(res));
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: the dashboard serves / and /events (and /state)\n");
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      stopped = true;
      for (const s of subs) s.unsubscribe();
      reject(
        err.code === "EADDRINUSE" || err.code === "EACCES"
          ? new UsageError(`cannot listen on ${opts.host}:${opts.port}: ${err.code === "EADDRINUSE" ? "the port is in use" : "permission denied"}`, "pick another port with --port P (0 takes a free one)")
          : err,
      );
    });
    server.listen(opts.port, opts.host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const shownHost = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host.includes(":") ? `[${opts.host}]` : opts.host;

  return {
    url: `http://${shownHost}:${port}/`,
    snapshot,
    async close() {
      stopped = true;
      for (const s of subs) s.unsubscribe();
      for (const res of clients) res.end();
      clients.clear();
      const closed = new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections();
      await closed;
      // The loops end on their own: a request still in flight fails when the client closes NATS.
    },
  };
}
