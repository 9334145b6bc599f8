/**
 * What every node serves, whatever its role: consistent snapshots of its repository with the LSN
 * they correspond to (for a replica's resync, and for readers such as collectors: one table's
 * partition in key order as JSON Lines), a table's columns, and the batches it holds (the change
 * stream that continues a snapshot).
 *
 * On the master, a snapshot's LSN comes from cutting a batch exactly at the snapshot's capture
 * position; on a replica, from the applied position read in the same transaction.
 */
import { randomUUID } from "node:crypto";
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError, ReplicationError, RepositoryError, UsageError } from "../errors.js";
import { encodeFrame } from "../nats/codec.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { serve } from "../nats/rpc.js";
import type { PullRecordHeader, TableChunkHeader } from "../nats/messages.js";
import type { Spool } from "../storage/spool.js";
import type { Repository, SnapshotReader, TableReader } from "../storage/repository/types.js";
import type { ReplicaRegistry } from "./replicas.js";
import type { Runtime } from "./runtime.js";
import type { Capture } from "./sequencer.js";
import { openAligned, type AlignableRead } from "./aligned-read.js";

export interface NodeServiceDeps {
  rt: Runtime;
  repo: Repository;
  spool: Spool;
  replicas: ReplicaRegistry;
  capture: Capture;
  /** The epoch while this node is the active master with a valid lease, else null. */
  masterEpoch: () => number | null;
  /** Highest LSN this node has applied (a replica) or sequenced (the master). */
  applied: () => { lsn: number; epoch: number };
}

const SESSION_IDLE_MS = 60_000;
const enc = new TextEncoder();

export function startNodeServices(d: NodeServiceDeps): () => void {
  const { rt, repo, spool } = d;
  const cfg = rt.config.replication;
  const sessions = new Map<string, { reader: SnapshotReader | TableReader; table: boolean; used: number }>();
  const subs: Subscription[] = [];

  const openAt = <R extends AlignableRead>(open: () => Promise<R>, what: string) => openAligned(d, open, what);

  subs.push(serve(rt.nc, rt.log, ENDPOINTS.snapshot, rt.subj.node(rt.node).snapshot, async (req) => {
    if (req.op === "info") {
      const table = await repo.tableColumns(req.table);
      if (!table) throw new RepositoryError("NOT_FOUND", `table ${req.table} does not exist on ${rt.node}`, { hint: "give an existing table as main.TABLE" });
      return { table };
    }
    if (req.op === "begin" && req.filter) {
      if (req.purpose !== "read") throw new UsageError("a filtered snapshot is for reading only (purpose read)");
      const filter = req.filter;
      const { reader, at } = await openAt(() => repo.openTableReader(filter), filter.table);
      const session = randomUUID();
      sessions.set(session, { reader, table: true, used: Date.now() });
      rt.log.debug({ reader: req.node, table: filter.table, partition: filter.partition, lsn: at.lsn }, `sync read of ${filter.table} for ${req.node} at LSN ${at.lsn}`);
      return { session, lsn: at.lsn, epoch: at.epoch, table: reader.header.table };
    }
    if (req.op === "begin") {
      if (req.purpose === "resync" && d.masterEpoch() === null) {
        throw new ClusterError("NOT_MASTER", `${rt.node} is not the active master; a resync copies the master`, {
          hint: "retry: the replica asks whichever node holds the master lease",
        });
      }
      const { reader, at } = await openAt(() => repo.openSnapshot({ tables: req.tables }), "the repository");
      const session = randomUUID();
      sessions.set(session, { reader, table: false, used: Date.now() });
      if (req.purpose === "resync") await d.replicas.resynced(req.node, at.lsn);
      rt.log.info({ reader: req.node, purpose: req.purpose, lsn: at.lsn, tables: reader.header.tables }, `snapshot for ${req.node} at LSN ${at.lsn}`);
      return { session, lsn: at.lsn, epoch: at.epoch, header: reader.header };
    }
    const s = sessions.get(req.session);
    if (!s) throw new ReplicationError("NOT_FOUND", `snapshot session ${req.session} is unknown or expired`);
    s.used = Date.now();
    if (req.op === "end") {
      await s.reader.close();
      sessions.delete(req.session);
      return {};
    }
    if (s.table) {
      // JSON Lines as they are, in a frame: up to the NATS payload limit rather than pullBytes.
      const max = Math.max(1024, Math.min(req.maxBytes, (rt.nc.info?.max_payload ?? 1024 * 1024) - 64 * 1024));
      const chunk = await (s.reader as TableReader).next(max);
      const payload = chunk ? enc.encode(chunk.text) : new Uint8Array(0);
      const header: TableChunkHeader = { ok: true, rows: chunk?.rows ?? 0, len: payload.length };
      return encodeFrame(header, [payload]);
    }
    return { chunk: await (s.reader as SnapshotReader).next(Math.min(req.maxBytes, cfg.pullBytes)) };
  }));

  subs.push(serve(rt.nc, rt.log, ENDPOINTS.changes, rt.subj.node(rt.node).changes, async (req) => {
    const upto = d.applied().lsn;
    if (req.lsn <= upto && (spool.first === 0 || req.lsn < spool.first)) {
      throw new ReplicationError("SNAPSHOT_REQUIRED", `LSN ${req.lsn} is no longer held by ${rt.node} (it holds ${spool.first}..${spool.head})`);
    }
    // Whole parts; a batch larger than maxBytes ends in a later reply (its last part carries the meta).
    const records = req.lsn > upto ? [] : await spool.read(req.lsn, req.part, Math.min(req.maxBytes, cfg.pullBytes), upto);
    const headers: PullRecordHeader[] = records.map((r) => ({ lsn: r.lsn, part: r.part, parts: r.parts, len: r.data.length, meta: r.meta }));
    return encodeFrame({ ok: true, epoch: d.applied().epoch, head: upto, records: headers }, records.map((r) => r.data));
  }));

  const sweep = setInterval(() => {
    for (const [id, s] of sessions) {
      if (Date.now() - s.used > SESSION_IDLE_MS) {
        void s.reader.close().catch(() => {});
        sessions.delete(id);
      }
    }
  }, 5000);

  return () => {
    clearInterval(sweep);
    for (const s of subs) s.unsubscribe();
    for (const s of sessions.values()) void s.reader.close().catch(() => {});
    sessions.clear();
  };
}
