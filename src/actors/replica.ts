/**
 * The replica machine's I/O: pull from the master and spool durably (fetch), apply spooled
 * batches in one transaction with the applied position (apply), and backup-and-restore from a
 * snapshot of the master streamed in chunks (restore).
 */
import { fromPromise } from "xstate";
import type { Subscription } from "@nats-io/transport-node";
import { asFerryError, ClusterError, ReplicationError, RepositoryError } from "../errors.js";
import { decodeFrame, decodeJson, encodeJson, parseAs } from "../nats/codec.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call, callFrame } from "../nats/rpc.js";
import { notifyMessage, pushHeader, type NotifyMessage, type PullRecordHeader, type PullReplyHeader, type PullRequest, type PushHeader } from "../nats/messages.js";
import { replicaMachine, type ApplyResult, type FetchResult, type MasterRef } from "../machines/replica.js";
import type { Meta } from "../storage/meta.js";
import type { BatchMeta } from "../batch.js";
import type { PartRecord, Spool } from "../storage/spool.js";
import type { Change, Repository, SnapshotHeader } from "../storage/repository/types.js";
import type { ApplyHold } from "./apply-hold.js";
import { repairAfterRejoin, touchedKeys } from "./rejoin.js";
import type { Runtime } from "./runtime.js";

export interface ReplicaDeps {
  rt: Runtime;
  repo: Repository;
  spool: Spool;
  meta: Meta;
  /** Set while a compare or repair holds this replica at an LSN. */
  hold: ApplyHold;
}

/** What a replica knows about itself, for heartbeats and status. */
export class ReplicaStats {
  applied = 0;
  appliedEpoch = 0;
  /** Master's sequencing time of the newest applied batch. */
  appliedTs = 0;
  /** Commit-to-applied latency of the newest applied batch. */
  applyLatencyMs = 0;
  maxEpoch = 0;
  next = { lsn: 1, part: 0 };
  fp = "";
  master: string | null = null;
  /** Changes captured while this node was master and never sequenced (reported to the master it follows). */
  unsequenced = 0;
  /** When (wall clock) this node last heard from a master, and which (failover prerequisite 2). */
  masterContact: { node: string; at: number } | null = null;
  /**
   * Repairing the rows of batches it dropped at a rejoin (its durable resync mark is set): until
   * the repair is done this node must not be promoted, which its member record tells the watchdogs.
   */
  rejoining = false;

  heardFrom(node: string): void {
    this.masterContact = { node, at: Date.now() };
  }
}

const APPLY_BYTES = 4 * 1024 * 1024;
/** How long the master may go without hearing where a replica taking pushes is (when it waits for no acknowledgement). */
const ACK_MS = 100;

export function createReplicaIo(d: ReplicaDeps, stats: ReplicaStats) {
  const { rt, repo, spool, meta, hold } = d;
  const ask = (master: string) => ({ timeoutMs: rt.config.nats.requestTimeoutMs, peer: `master ${master}` });

  async function init(): Promise<void> {
    await spool.dropIncomplete();
    // What this node sequenced itself while master is in its repository by construction.
    const applied = await repo.appliedPosition();
    stats.fp = await repo.fingerprint();
    const captured = await meta.capture();
    const pos = captured.lsn > applied.lsn ? captured : applied;
    stats.applied = pos.lsn;
    stats.appliedEpoch = pos.epoch;
    stats.maxEpoch = Math.max(await meta.maxEpoch(), pos.epoch);
    stats.next = { lsn: Math.max(spool.head, pos.lsn) + 1, part: 0 };
    // A replica has no capture triggers: what it captured as master stays as it is until it is master again.
    stats.unsequenced = await repo.pendingChanges(captured.checkpoint);
  }

  /** What this replica holds and is, as a pull (or, published without a reply subject, an acknowledgement) tells the master. */
  function position(): PullRequest {
    const last = spool.last ?? { lsn: stats.applied, epoch: stats.appliedEpoch };
    return {
      node: rt.node,
      epoch: stats.maxEpoch,
      lsn: stats.next.lsn,
      part: stats.next.part,
      last: { lsn: Math.max(last.lsn, stats.applied), epoch: last.lsn >= stats.applied ? last.epoch : stats.appliedEpoch },
      applied: stats.applied,
      fp: stats.fp,
      maxBytes: rt.config.replication.pullBytes,
      unsequenced: stats.unsequenced,
    };
  }

  /** When the master last heard this replica's position, and when it last pulled (its checks run at a pull). */
  let reported = 0;
  let pulled = 0;
  let trailing: NodeJS.Timeout | null = null;

  async function fetch(master: MasterRef, signal?: AbortSignal): Promise<FetchResult> {
    stats.master = master.node;
    reported = pulled = Date.now();
    let data: Uint8Array;
    try {
      data = await callFrame(rt.nc, ENDPOINTS.pull, rt.subj.node(master.node).pull, position(), ask(master.node));
    } catch (err) {
      const e = err as { code?: string; message: string; details?: { from?: number; to?: number } };
      if (e.code !== "DIVERGED" || e.details?.from === undefined) throw err;
      await dropDiverged(e.details.from, e.message);
      return { records: 0, head: 0, received: stats.next.lsn - 1, more: true };
    }
    const { header, payloads } = decodeFrame<PullReplyHeader>(rt.subj.node(master.node).pull, data, (h) => h.records.map((r) => r.len));
    return take(master.node, header, payloads, signal);
  }

  /** The newest batch a master pushed, until `accept` takes it or a newer one replaces it. */
  let pushed: { header: PushHeader; data: Uint8Array } | null = null;

  function stash(header: PushHeader, data: Uint8Array): void {
    pushed = { header, data };
  }

  /**
   * Takes a pushed batch as a pull would have brought it. Only the batch right after what this
   * replica holds, from the master it pulled from last, in the epoch that pull saw: the master's
   * checks at that pull then still hold. Anything else, and every pollMs, is left to a pull.
   */
  async function accept(master: MasterRef, lsn: number, signal?: AbortSignal): Promise<FetchResult> {
    const p = pushed?.header.records[0].lsn === lsn ? pushed : null;
    pushed = null;
    const h = p?.header;
    const next = stats.next;
    if (!p || !h || h.node !== master.node || h.epoch !== master.epoch || h.epoch !== stats.maxEpoch || next.part !== 0 || lsn !== next.lsn) {
      return { records: 0, head: h?.head ?? lsn, received: next.lsn - 1, more: true };
    }
    const got = await take(master.node, h, [p.data], signal);
    report(master.node, h.ack);
    return { ...got, more: got.head > got.received || Date.now() - pulled >= rt.config.replication.pollMs };
  }

  /**
   * Tells the master what this replica holds after a pushed batch: at once when it waits for
   * acknowledgements, else at most every ACK_MS (a trailing one covers the last batch).
   */
  function report(master: string, now: boolean): void {
    const since = Date.now() - reported;
    if (trailing) clearTimeout(trailing);
    trailing = null;
    if (now || since >= ACK_MS) {
      reported = Date.now();
      rt.nc.publish(rt.subj.node(master).pull, encodeJson(position()));
      return;
    }
    trailing = setTimeout(() => report(master, true), ACK_MS - since);
    trailing.unref();
  }

  /** Spools the records of a pull reply or a push, which must continue exactly where this replica is. */
  /** The last spool write was refused (DATA_DIR_UNWRITABLE, alerted once); store.ts checks the next one first. */
  let unwritable = false;

  async function take(master: string, header: { epoch: number; head: number; ack?: boolean; records: PullRecordHeader[] }, payloads: Uint8Array[], signal?: AbortSignal): Promise<FetchResult> {
    stats.heardFrom(master);
    if (header.epoch < stats.maxEpoch) {
      throw new ClusterError("STALE_EPOCH", `master ${master} answered with epoch ${header.epoch}, below epoch ${stats.maxEpoch} already seen`);
    }
    if (header.epoch > stats.maxEpoch) {
      await meta.raiseEpoch(header.epoch);
      stats.maxEpoch = header.epoch;
      // A compare held this replica at an LSN of the old master's history, which the new master
      // cannot read at: its client may wait on the old master for long, the hold must not.
      hold.release();
    }
    const records: PartRecord[] = [];
    let expect = { ...stats.next };
    for (let i = 0; i < header.records.length; i++) {
      const h = header.records[i];
      if (h.lsn !== expect.lsn || h.part !== expect.part) {
        throw new ReplicationError("INTERNAL", `master sent ${h.lsn}/${h.part} where ${expect.lsn}/${expect.part} was expected`);
      }
      records.push({ lsn: h.lsn, part: h.part, parts: h.parts, data: payloads[i], meta: h.meta });
      expect = h.meta ? { lsn: h.lsn + 1, part: 0 } : { lsn: h.lsn, part: h.part + 1 };
    }
    // A pull abandoned for another master writes nothing: the new one decides what comes next.
    if (signal?.aborted) throw new ReplicationError("INTERNAL", "pull abandoned");
    if (records.length > 0) {
      // Synced only when the master waits for acknowledgements (synchronous replication); otherwise
      // a power cut costs at most a re-pull: the applied position commits with the data it covers.
      try {
        await spool.write(records, [], header.ack === true);
        if (unwritable) rt.alerts.raise("data-dir-writable", "info", `${rt.node} spools batches again; replication resumed`);
        unwritable = false;
      } catch (err) {
        const refused = (err as { code?: string }).code === "DATA_DIR_UNWRITABLE";
        if (refused && !unwritable) rt.alerts.raise("data-dir-unwritable", "critical", `replication paused: ${(err as Error).message}`);
        unwritable = refused;
        throw err;
      }
      stats.next = expect;
    }
    const received = stats.next.lsn - 1;
    // More than this pull brought, an acknowledgement wanted now, or spooled while the master answered.
    return { records: records.length, head: header.head, received, more: header.head > received || (records.length > 0 && header.ack === true) };
  }

  /**
   * Batches this node wrote as master that the new master never received. They are dropped and
   * the node goes on from where the histories part; heartbeat rows need nothing more, and the rows
   * other changes touched are repaired from the new master (rejoin.ts). A resync only when that
   * cannot be bounded: DDL among them, or more keys than compare.maxRepairRows.
   */
  async function dropDiverged(from: number, why: string): Promise<void> {
    const changes: Change[] = [];
    for (let lsn = from; lsn <= spool.head; lsn++) {
      const m = await spool.meta(lsn);
      if (!m) return needsResync(from, why);
      for (const c of spool.changesOf(m)) changes.push(c);
    }
    const touched = await touchedKeys(repo, changes);
    const keys = touched ? [...touched.values()].reduce((n, k) => n + k.size, 0) : Infinity;
    if (keys > rt.config.compare.maxRepairRows) return needsResync(from, why);
    const to = spool.head;
    if (keys > 0) {
      // Until the repair is done, a restart finds the node marked for resync: the dropped rows are never left in place.
      await meta.setResync({ needed: true, reason: `${why}; rejoining by repair of ${keys} rows`, code: "DIVERGED", since: Date.now() });
      stats.rejoining = true;
    }
    const back = from > 1 ? await spool.meta(from - 1) : null;
    await spool.truncateFrom(from);
    const pos = { lsn: from - 1, epoch: back?.epoch ?? 0 };
    const captured = await meta.capture();
    if (captured.lsn >= from) await meta.setCapture({ ...captured, ...pos });
    if ((await repo.appliedPosition()).lsn >= from) await repo.resetPosition(pos);
    stats.applied = pos.lsn;
    stats.appliedEpoch = pos.epoch;
    stats.next = { lsn: from, part: 0 };
    if (keys === 0) {
      rt.alerts.raise("heartbeats-dropped", "info", `${rt.node} dropped LSNs ${from}..${to}: heartbeat rows the new master never received; it continues from LSN ${from}`, { from, to });
      return;
    }
    const listed = Object.fromEntries([...touched!].filter(([, k]) => k.size > 0).map(([t, k]) => [t, [...k]]));
    rt.alerts.raise("rejoin-by-repair", "warning", `${rt.node} discarded LSNs ${from}..${to}, never replicated, and repairs the ${keys} rows they touched from the new master`, {
      from,
      to,
      keys: listed,
    });
    void repairAfterRejoin(rt, Object.keys(listed), async (changed, err) => {
      if (changed === null) {
        rt.alerts.raise("replica-diverged", "critical", `${rt.node} could not repair the rows of LSNs ${from}..${to}: ${err}`, { from, to });
        return;
      }
      await meta.setResync({ needed: false });
      stats.rejoining = false;
      rt.alerts.raise("rejoined", "info", `${rt.node} rejoined by repair: ${changed} rows changed instead of a full resync`, { from, to, rows: changed });
    });
  }

  async function needsResync(from: number, why: string): Promise<never> {
    rt.alerts.raise("replica-diverged", "critical", why, { from, to: spool.head });
    throw new ReplicationError("NEEDS_RESYNC", why, { hint: `run: ferry resync --node ${rt.node}` });
  }

  /**
   * Set when the repository went away during an apply: a database server that crashed may come
   * back without its last commits (a replica's commits are not flushed one by one), and the
   * applied position it recorded with them is the truth to continue from.
   */
  let repoLost = false;

  async function apply(): Promise<ApplyResult> {
    try {
      return await applyNext();
    } catch (err) {
      if ((err as { code?: string }).code === "REPO_UNAVAILABLE") repoLost = true;
      throw err;
    }
  }

  async function applyNext(): Promise<ApplyResult> {
    if (repoLost) {
      const recorded = await repo.appliedPosition();
      repoLost = false;
      if (recorded.lsn < stats.applied) {
        rt.log.warn({ recorded: recorded.lsn, applied: stats.applied }, `the repository came back at LSN ${recorded.lsn}; applying again from there`);
        stats.applied = recorded.lsn;
        stats.appliedEpoch = recorded.epoch;
      }
    }
    const upto = Math.min(spool.head, hold.limit());
    if (upto <= stats.applied) return { applied: stats.applied, more: false };
    const batches: { meta: BatchMeta; changes: Iterable<Change> }[] = [];
    let bytes = 0;
    for (let lsn = stats.applied + 1; lsn <= upto && (bytes < APPLY_BYTES || batches.length === 0); lsn++) {
      const m = await spool.meta(lsn);
      if (!m) throw new ReplicationError("NEEDS_RESYNC", `batch ${lsn} is missing from the spool of ${rt.node}`);
      batches.push({ meta: m, changes: spool.changesOf(m) });
      bytes += m.bytes;
      if (m.ddl) break; // the fingerprint is checked after each DDL batch
    }
    const prevEpoch = stats.appliedEpoch;
    const { ddl } = await repo.applyBatches(batches.map((b) => ({ lsn: b.meta.lsn, epoch: b.meta.epoch, changes: b.changes })));
    const last = batches[batches.length - 1].meta;
    // The fingerprint before the position: a pull built meanwhile reports the two together, and the
    // master compares them.
    const fp = ddl ? await repo.fingerprint() : stats.fp;
    stats.fp = fp;
    stats.applied = last.lsn;
    stats.appliedEpoch = last.epoch;
    stats.appliedTs = last.ts;
    stats.applyLatencyMs = Date.now() - last.ts;
    for (const b of batches) {
      if (b.meta.epoch > prevEpoch) await meta.recordEpochStart({ epoch: b.meta.epoch, firstLsn: b.meta.lsn, node: stats.master ?? "?" });
    }
    if (ddl && last.fp !== "" && fp !== last.fp) {
      throw new RepositoryError("SCHEMA_MISMATCH", `schema fingerprint mismatch after LSN ${last.lsn}: ${rt.node} has ${fp}, the master had ${last.fp}`, {
        hint: `run: ferry resync --node ${rt.node}`,
      });
    }
    // Applied batches stay (a promoted replica serves them), up to maxBacklogBytes.
    await spool.pruneOver(rt.config.replication.maxBacklogBytes, stats.applied);
    return { applied: stats.applied, more: Math.min(spool.head, hold.limit()) > stats.applied };
  }

  async function restore(master: MasterRef): Promise<{ lsn: number }> {
    const subject = rt.subj.node(master.node).snapshot;
    const progress = rt.subj.node(rt.node).resyncProgress;
    const say = (p: Record<string, unknown>) => rt.nc.publish(progress, encodeJson({ node: rt.node, master: master.node, ...p }));
    const begin = await call<{ session: string; lsn: number; epoch: number; header: SnapshotHeader }>(
      rt.nc,
      ENDPOINTS.snapshot,
      subject,
      { op: "begin", node: rt.node },
      ask(master.node),
    );
    const { session, lsn, epoch, header } = begin;
    const totalRows = header.tables.reduce((n, t) => n + t.rows, 0);
    rt.log.info({ master: master.node, lsn, totalRows }, `resync from ${master.node} at LSN ${lsn}: ${totalRows} rows`);
    say({ phase: "started", lsn, totalRows, rows: 0 });
    const writer = await repo.restoreSnapshot(header.schema);
    let rows = 0;
    let lastSaid = 0;
    try {
      for (;;) {
        const r = await call<{ chunk: { table: string; rows: string[] } | null }>(
          rt.nc,
          ENDPOINTS.snapshot,
          subject,
          { op: "next", session, maxBytes: rt.config.replication.pullBytes },
          ask(master.node),
        );
        if (!r.chunk) break;
        await writer.rows(r.chunk.table, r.chunk.rows);
        rows += r.chunk.rows.length;
        if (Date.now() - lastSaid > 200) {
          lastSaid = Date.now();
          say({ phase: "copying", lsn, totalRows, rows, table: r.chunk.table });
        }
      }
      await writer.commit({ lsn, epoch });
    } catch (err) {
      await writer.abort();
      say({ phase: "failed", error: (err as Error).message });
      throw err;
    } finally {
      void call(rt.nc, ENDPOINTS.snapshot, subject, { op: "end", session }, ask(master.node)).catch(() => {});
    }
    await spool.reset();
    await meta.raiseEpoch(epoch);
    await meta.setResync({ needed: false });
    await init();
    if (stats.fp !== header.fingerprint) {
      throw new RepositoryError("SCHEMA_MISMATCH", `restored schema fingerprint ${stats.fp} differs from the master's ${header.fingerprint}`);
    }
    rt.alerts.raise("resynced", "info", `${rt.node} restored ${rows} rows from ${master.node} at LSN ${lsn}`, { lsn, rows });
    say({ phase: "done", lsn, totalRows, rows });
    return { lsn };
  }

  async function markResync(err: { code: string; message: string } | null): Promise<void> {
    const known = await meta.resync();
    const reason = err?.message ?? known.reason ?? "resync requested";
    if (!known.needed || err) await meta.setResync({ needed: true, reason, code: err?.code ?? known.code, since: Date.now() });
    rt.log.error({ code: err?.code ?? known.code }, `${rt.node} needs a resync: ${reason}`);
  }

  return { init, fetch, accept, stash, apply, restore, markResync };
}

/**
 * The masters' batch announcements ({node, epoch, lsn}), for the node to pass to its replica
 * (the replica machine keeps those of the master it follows); a malformed one is logged and dropped.
 */
export function listenForBatches(rt: Runtime, stats: ReplicaStats, onNotify: (n: NotifyMessage) => void): Subscription {
  return rt.nc.subscribe(rt.subj.notify, {
    callback: (_e, msg) => {
      try {
        const n = decodeJson(msg.subject, msg.data, notifyMessage);
        if (n.node !== rt.node) stats.heardFrom(n.node);
        onNotify(n);
      } catch (err) {
        rt.log.warn({ err: asFerryError(err).message }, "malformed notification ignored");
      }
    },
  });
}

/**
 * The masters' pushed batches: each is held for the replica's `accept` and passed on as an
 * announcement (the machine keeps those of the master it follows); a malformed one is dropped.
 */
export function listenForPushes(rt: Runtime, io: ReturnType<typeof createReplicaIo>, onPush: (p: { node: string; epoch: number; lsn: number }) => void): Subscription {
  return rt.nc.subscribe(rt.subj.push, {
    callback: (_e, msg) => {
      try {
        const got: { h?: PushHeader } = {};
        const { payloads } = decodeFrame<unknown>(msg.subject, msg.data, (raw) => {
          got.h = parseAs(msg.subject, raw, pushHeader);
          return [got.h.records[0].len];
        });
        const h = got.h;
        if (!h || h.node === rt.node) return;
        io.stash(h, payloads[0]);
        onPush({ node: h.node, epoch: h.epoch, lsn: h.records[0].lsn });
      } catch (err) {
        rt.log.warn({ err: asFerryError(err).message }, "malformed pushed batch ignored");
      }
    },
  });
}

export function replicaLogic(io: ReturnType<typeof createReplicaIo>) {
  return replicaMachine.provide({
    actors: {
      fetch: fromPromise<FetchResult, { master: MasterRef }>(({ input, signal }) => io.fetch(input.master, signal)),
      accept: fromPromise<FetchResult, { master: MasterRef; lsn: number }>(({ input, signal }) => io.accept(input.master, input.lsn, signal)),
      apply: fromPromise<ApplyResult, void>(() => io.apply()),
      restore: fromPromise<{ lsn: number }, { master: MasterRef }>(({ input }) => io.restore(input.master)),
      markResync: fromPromise<void, { code: string; message: string } | null>(({ input }) => io.markResync(input)),
    },
  });
}
