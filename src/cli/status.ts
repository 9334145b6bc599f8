/** `ferry status`: every member's latest heartbeat, the leases, and each replica's backlog. */
import type { Command } from "commander";
import { readStatus, type ClusterStatus } from "../client/status.js";
import { UsageError } from "../errors.js";
import type { DivergedRecord } from "../nats/records.js";
import { command, printJson, withClient, type OptionSpec } from "./common.js";
import { newTable } from "./draw.js";

export function renderStatus(s: ClusterStatus): string {
  const lease = s.leases.master;
  const wd = s.leases.watchdog;
  const lines = [
    `cluster ${s.cluster}: master lease ${lease ? `${lease.node} (epoch ${lease.epoch})` : "free (no active master)"}; active watchdog ${wd ? wd.node : "none"}`,
    `automatic failover ${s.failover.automatic ? "enabled" : "DISABLED (run: ferry failover reset)"}: ${s.failover.failovers} failover(s), ${s.failover.recent} of at most ${s.failover.maxAutomatic} in the window`,
  ];
  const t = newTable({
    head: ["node", "role", "state", "epoch", "applied", "lag lsn", "lag ms", "backlog", "heartbeat", "note"],
    style: { head: [], border: [] },
  });
  for (const m of s.members) {
    const diverged = m.diverged as DivergedRecord | undefined;
    const note = m.needsResync
      ? `NEEDS RESYNC: ${String(m.resyncReason ?? (m.error as { message?: string } | null)?.message ?? "").slice(0, 80)}`
      : diverged
        ? `DIVERGED found at LSN ${diverged.lsn}: ${diverged.tables.map((x) => `${x.table} ${x.rows} rows`).join(", ")} (ferry repair --node ${m.node})`
        : (m.error as { message?: string } | null)?.message ??
          (m.role === "collector"
            ? `host ${m.host}, reads ${m.source ?? "?"}`
            : m.role === "synctool" && m.state === "active"
              ? `${m.tasks} tasks, ${m.packsInFlight} packs in flight`
              : m.role === "watchdog" && m.state === "active"
                ? verifyNote(m)
                : "");
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

/** An active watchdog's continuous verification: its interval and its last compare. */
function verifyNote(m: Record<string, unknown>): string {
  const every = Number(m.verifyMs ?? 0);
  if (every <= 0) return "";
  const last = m.verified as { at: number; lsn: number } | null | undefined;
  return `verifies every ${every} ms, ${last ? `last at LSN ${last.lsn} (${((Date.now() - last.at) / 1000).toFixed(1)}s ago)` : "none yet"}`;
}

const stateText = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v).replace(/[{}"]/g, "").replace(/:/g, "."));

export function statusCommand(): Command {
  const options: OptionSpec[] = [
    ["--json", "print JSON"],
    ["--watch [ms]", "refresh in place (every second, or every ms) until Ctrl-C"],
  ];
  return command("status", "show every node: role, state, epoch, applied LSN, lag, backlog, heartbeat", options, async (opts) => {
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
  });
}
