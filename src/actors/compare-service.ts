/**
 * Compare and repair on one node (ferry.<cluster>.node.<id>.compare), driven by client/compare.ts.
 * The master opens its read aligned with a batch (an LSN); a replica, held so that it applies
 * nothing new, is let go up to exactly that LSN and opens its read there. A compare lets go of
 * the replica as soon as its read is open (the read stays consistent while applying goes on); a
 * repair keeps it held until its rows are written, so they are written at the LSN they were read
 * for, in one transaction that leaves the applied position as it is.
 */
import { randomUUID } from "node:crypto";
import type { Subscription } from "@nats-io/transport-node";
import { ClusterError, ReplicationError } from "../errors.js";
import type { CompareRequest, WireChunk } from "../nats/messages.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { serve } from "../nats/rpc.js";
import type { CompareRead, Position, Repository } from "../storage/repository/types.js";
import { openAligned, type AlignDeps } from "./aligned-read.js";
import type { ApplyHold } from "./apply-hold.js";

export interface CompareServiceDeps extends AlignDeps {
  repo: Repository;
  hold: ApplyHold;
  /** Highest LSN this node has applied (a replica). */
  applied: () => Position;
}

interface Session {
  read: CompareRead;
  /** The read's requests one after another: a SQLite read cannot serve a second while it iterates. */
  queue: Promise<unknown>;
  at: Position;
  holder: string;
  repair: boolean;
  used: number;
}

export function startCompareService(d: CompareServiceDeps): () => void {
  const { rt, repo, hold } = d;
  const cfg = rt.config.compare;
  const sessions = new Map<string, Session>();

  const busy = (holder: string | null) =>
    new ClusterError("IN_PROGRESS", `${rt.node} is held by another compare or repair${holder ? ` (${holder})` : ""}`, {
      hint: `wait for it to end (at most compare.holdMs, ${cfg.holdMs} ms, after it stops), then ask again`,
    });

  const replicaOnly = (what: string) => {
    if (d.masterEpoch() !== null) throw new ClusterError("NOT_MASTER", `${rt.node} is the master; ${what} is for a replica`);
  };

  /** Lets the held replica apply up to `lsn` and waits until it has applied exactly that. */
  async function reach(lsn: number, holder: string): Promise<void> {
    if (hold.heldBy() !== holder) throw busy(hold.heldBy());
    hold.raise(lsn);
    const deadline = Date.now() + cfg.holdMs;
    while (d.applied().lsn < lsn) {
      // Let go meanwhile (its client gave up, or a new master ended it): nothing to wait for.
      if (hold.heldBy() !== holder) throw busy(hold.heldBy());
      if (Date.now() > deadline) throw new ReplicationError("TIMEOUT", `${rt.node} did not apply LSN ${lsn} within ${cfg.holdMs} ms (it is at ${d.applied().lsn})`);
      await new Promise((r) => setTimeout(r, 2));
    }
  }

  const sub: Subscription = serve(rt.nc, rt.log, ENDPOINTS.compare, rt.subj.node(rt.node).compare, async (req) => {
    switch (req.op) {
      case "hold": {
        replicaOnly("a hold");
        const by = hold.heldBy();
        if (by !== null && by !== req.holder) throw busy(by);
        hold.take(req.holder, d.applied().lsn);
        rt.log.info({ holder: req.holder, lsn: d.applied().lsn }, `held at LSN ${d.applied().lsn} for compare`);
        return { node: rt.node, applied: d.applied().lsn };
      }
      case "release":
        hold.release(req.holder);
        return { node: rt.node };
      case "begin": {
        let opened: { reader: CompareRead; at: Position };
        if (req.lsn === undefined) {
          if (d.masterEpoch() === null) throw new ClusterError("NOT_MASTER", `${rt.node} is not the active master; compare reads the master first`);
          opened = await openAligned(d, () => repo.openCompareRead(), "the repository");
        } else {
          replicaOnly("a read at a given LSN");
          await reach(req.lsn, req.holder);
          const reader = await repo.openCompareRead();
          opened = { reader, at: reader.header.applied };
          if (opened.at.lsn !== req.lsn) {
            await reader.close();
            throw new ReplicationError("DIVERGED", `${rt.node} read at LSN ${opened.at.lsn}, not ${req.lsn}`);
          }
          if (!req.repair) hold.release(req.holder);
        }
        const session = randomUUID();
        sessions.set(session, { read: opened.reader, queue: Promise.resolve(), at: opened.at, holder: req.holder, repair: req.repair, used: Date.now() });
        rt.log.info({ session, lsn: opened.at.lsn, repair: req.repair }, `compare read at LSN ${opened.at.lsn}`);
        return { node: rt.node, session, lsn: opened.at.lsn, epoch: opened.at.epoch, tables: opened.reader.tables };
      }
    }
    const s = sessions.get(req.session);
    if (!s) throw new ReplicationError("NOT_FOUND", `compare session ${req.session} is unknown or expired`, { hint: "run the compare again" });
    const run = s.queue.then(async () => {
      // A long chunk pass is not idleness: the sweep leaves a session in use alone.
      s.used = Infinity;
      if (s.repair) hold.touch();
      try {
        return await sessionOp(s, req);
      } finally {
        s.used = Date.now();
        if (s.repair) hold.touch();
      }
    });
    s.queue = run.catch(() => {});
    return run;
  });

  async function sessionOp(s: Session, req: Exclude<CompareRequest, { op: "hold" | "release" | "begin" }>): Promise<object> {
    switch (req.op) {
      case "chunks": {
        const page = await s.read.chunks(req.table, { chunkRows: req.chunkRows, after: req.after, upto: req.upto, maxChunks: req.maxChunks });
        return { chunks: page.chunks.map((c): WireChunk => [c.upto, c.rows, c.sum]), done: page.done };
      }
      case "sums": {
        const ranges = req.bounds.map((upto, i) => ({ after: i === 0 ? req.after : req.bounds[i - 1], upto }));
        return { sums: (await s.read.sums(req.table, ranges)).map((c) => [c.rows, c.sum]) };
      }
      case "rows":
        return { rows: await s.read.rows(req.table, req.range) };
      case "repair": {
        if (!s.repair || hold.heldBy() !== s.holder) throw busy(hold.heldBy());
        const changed = await repo.repairRows(req.table, { put: req.put, del: req.del }, s.at);
        rt.alerts.raise("repaired", "info", `${rt.node} repaired ${changed} rows of ${req.table} at LSN ${s.at.lsn}`, { table: req.table, rows: changed, lsn: s.at.lsn });
        return { changed };
      }
      case "end":
        sessions.delete(req.session);
        await s.read.close();
        hold.release(s.holder);
        return {};
    }
  }

  const sweep = setInterval(() => {
    for (const [id, s] of sessions) {
      if (Date.now() - s.used > cfg.holdMs) {
        sessions.delete(id);
        void s.read.close().catch(() => {});
        hold.release(s.holder);
        rt.log.warn({ session: id }, `compare session ${id} expired`);
      }
    }
    hold.limit();
  }, 1000);

  return () => {
    clearInterval(sweep);
    sub.unsubscribe();
    for (const s of sessions.values()) void s.read.close().catch(() => {});
    sessions.clear();
    hold.release();
  };
}
