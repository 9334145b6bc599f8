/**
 * Rejoin by repair, not by reload. An old master that comes back holding batches the new master
 * never received (asynchronous replication) drops them, as pg_rewind does, and repairs only the
 * rows they touched: the keys come from the batches themselves. After the drop it streams from
 * where the histories part, and a repair (client/compare.ts) of the tables those batches touched
 * brings the rows they changed back to the new master's. A full resync remains for what cannot be
 * bounded: DDL among the batches, or more keys than compare.maxRepairRows.
 */
import { repair } from "../client/compare.js";
import type { Change, Repository } from "../storage/repository/types.js";
import { splitJsonArray } from "../storage/sync.js";
import { runtimeClient, type Runtime } from "./runtime.js";

/** Heartbeat rows are overwritten by the new master's; write keys are compared and repaired like user rows. */
const HEARTBEAT = "ferry_heartbeat";
const WRITE_KEYS = "ferry_requests";

/** The key images each table's changes touched, or null when a repair cannot cover them (DDL, an unknown table). */
export async function touchedKeys(repo: Repository, changes: Change[]): Promise<Map<string, Set<string>> | null> {
  const out = new Map<string, Set<string>>();
  const cols = new Map<string, { width: number; at: number[] } | null>();
  for (const [tbl, op, rid, row] of changes) {
    if (op === "X" || tbl === null) return null;
    if (tbl === HEARTBEAT) continue;
    if (!cols.has(tbl)) {
      const t = await repo.tableColumns(tbl);
      cols.set(tbl, t ? { width: t.columns.length, at: t.key.map((k) => t.columns.indexOf(k)) } : null);
    }
    const t = cols.get(tbl) ?? (tbl === WRITE_KEYS ? { width: 0, at: [] } : null);
    if (!t) return null;
    const keys = out.get(tbl) ?? new Set<string>();
    out.set(tbl, keys);
    // A key image, or a whole old row (PostgreSQL's REPLICA IDENTITY FULL) from which the key is taken.
    const keyOf = (image: string) => {
      const el = splitJsonArray(image);
      return el.length === t.width && t.at.length < t.width ? `[${t.at.map((i) => el[i]).join(",")}]` : image;
    };
    if (rid !== null) keys.add(keyOf(rid));
    if (row !== null) keys.add(keyOf(row));
  }
  return out;
}

/**
 * Repairs the tables the dropped batches touched, once this node streams from the new master
 * again (the repair holds it at the master's LSN). Retries while the cluster settles.
 */
export async function repairAfterRejoin(rt: Runtime, tables: string[], done: (changed: number | null, why?: string) => Promise<void>): Promise<void> {
  const client = runtimeClient(rt);
  let changed = 0;
  let last = "";
  for (let attempt = 0; attempt < 30; attempt++) {
    try {
      for (const table of tables.splice(0)) {
        try {
          changed += (await repair(client, { node: rt.node, table })).changed;
        } catch (err) {
          tables.unshift(table);
          throw err;
        }
      }
      return done(changed);
    } catch (err) {
      last = (err as Error).message;
      if ((err as { code?: string }).code === "REPAIR_TOO_LARGE") break;
      // A process that stops leaves the node marked for resync: it does not retry past its own NATS connection.
      if (rt.nc.isClosed()) return;
      rt.log.debug({ err: last, attempt }, "rejoin repair: retrying");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  return done(null, last);
}
