/**
 * A collector (`ferry start --role collector --host HOST`): the per-host agent of the sync. One
 * collector per host is active through the lease `collector.<host>`; the others wait as standbys.
 *
 * The active one answers the synctool's pack requests for a subtask from the replica on its host
 * (its node's services): a snapshot of the table's partition in key order, read with the LSN it
 * corresponds to, then the change stream that continues right after that LSN, filtered to the
 * partition and turned into change records. The synctool pulls (one request per pack), so a slow
 * destination never piles packs up here. Each subtask keeps a cursor (the snapshot session and the
 * position it expects next); a request at another position (a restarted synctool, a retry)
 * reopens the snapshot after the last key written, as a new segment (see src/storage/sync.ts).
 */
import { repositoryLocation } from "../storage/repository/index.js";
import { ReplicationError, SyncError } from "../errors.js";
import { decodeFrame, encodeFrame, isJsonReply, unwrapReply } from "../nats/codec.js";
import { type PackHeader, type PackRequest, type PullReplyHeader, type TableChunkHeader } from "../nats/messages.js";
import {
  keyOfRow,
  lastJsonLine,
  pastSnapshot,
  partitionOf,
  splitJsonArray,
  toObject,
  type SyncPosition,
  type SyncSegment,
} from "../storage/sync.js";
import type { Change, TableColumns } from "../storage/repository/types.js";
import type { Config } from "../config.js";
import { startAgent, type AgentHandle, type RunningAgent } from "./agent.js";
import { HEARTBEAT_MS } from "./heartbeat.js";
import { LEASE_KEY, memberRecords } from "../nats/records.js";
import { ENDPOINTS, type Endpoint } from "../nats/protocol.js";
import { request, serve } from "../nats/rpc.js";

const CURSOR_IDLE_MS = 60_000;
/** A stream pack stops after this long even when not full, so a long catch-up never times out. */
const STREAM_BUDGET_MS = 1000;
const EMPTY = new Uint8Array(0);
const dec = new TextDecoder();

interface Cursor {
  /** The position this cursor serves next (JSON), and the node it reads. */
  next: string;
  source: string | null;
  session: string | null;
  table: TableColumns | null;
  keyIdx: number[];
  afters: { segs: string; keys: (string[] | null)[] } | null;
  used: number;
  queue: Promise<unknown>;
}

interface Pack {
  records: number;
  next: SyncPosition;
  more: boolean;
  payload: Uint8Array;
}

export async function startCollector(config: Config): Promise<RunningAgent> {
  return startAgent(config, "collector", (h) => {
    const c = new Collector(h);
    return { leaseKey: LEASE_KEY.collector(config.node.host), start: () => c.start(), status: () => c.status() };
  });
}

class Collector {
  private cursors = new Map<string, Cursor>();
  private source: string | null;
  private packs = 0;

  constructor(private h: AgentHandle) {
    this.source = h.rt.config.node.source ?? null;
    if (!this.source) void this.sourceNode().catch(() => {});
  }

  status(): Record<string, unknown> {
    return { source: this.source, cursors: this.cursors.size, packs: this.packs };
  }

  start(): () => void {
    const { rt } = this.h;
    const sub = serve(rt.nc, rt.log, ENDPOINTS.pack, rt.subj.collector(rt.node).pack, (req) => this.onPack(req));
    const sweep = setInterval(() => {
      for (const [k, c] of this.cursors) {
        if (Date.now() - c.used > CURSOR_IDLE_MS) {
          void this.closeSession(c);
          this.cursors.delete(k);
        }
      }
      if (!rt.config.node.source) void this.sourceNode().catch(() => {});
    }, 5000);
    return () => {
      sub.unsubscribe();
      clearInterval(sweep);
      for (const c of this.cursors.values()) void this.closeSession(c);
      this.cursors.clear();
    };
  }

  private onPack(req: PackRequest): Promise<Uint8Array> {
    const key = `${req.task}/${req.part}`;
    let cur = this.cursors.get(key);
    if (!cur) {
      cur = { next: "", source: null, session: null, table: null, keyIdx: [], afters: null, used: Date.now(), queue: Promise.resolve() };
      this.cursors.set(key, cur);
    }
    const c = cur;
    // One request at a time per subtask: a prefetch waits for the pack before it.
    const answer = c.queue
      .then(() => this.pack(c, req))
      .then(
        (p) => {
          this.packs++;
          const header: PackHeader = { ok: true, records: p.records, next: p.next, more: p.more, len: p.payload.length };
          return encodeFrame(header, [p.payload]);
        },
        (err) => {
          c.next = "";
          throw err;
        },
      );
    c.queue = answer.then(
      () => {},
      () => {},
    );
    return answer;
  }

  private async pack(c: Cursor, req: PackRequest): Promise<Pack> {
    const source = await this.sourceNode();
    const want = JSON.stringify(req.pos);
    if (c.next !== want || c.source !== source) {
      await this.closeSession(c);
      c.table = null;
    }
    c.source = source;
    c.used = Date.now();
    const p =
      req.pos.phase === "snapshot"
        ? await this.snapshotPack(c, req, req.pos)
        : req.pos.phase === "stream"
          ? await this.streamPack(c, req, req.pos)
          : { records: 0, next: req.pos, more: false, payload: EMPTY };
    c.next = JSON.stringify(p.next);
    const delay = this.h.rt.config.sync.packDelayMs;
    if (delay > 0) await new Promise((r) => setTimeout(r, delay));
    return p;
  }

  private async snapshotPack(c: Cursor, req: PackRequest, pos: Extract<SyncPosition, { phase: "snapshot" }>): Promise<Pack> {
    const subject = this.h.rt.subj.node(c.source!).snapshot;
    let segs = pos.segs;
    if (!c.session) {
      const r = unwrapReply<{ session: string; lsn: number; table: TableColumns }>(
        subject,
        await this.ask(ENDPOINTS.snapshot, subject, {
          op: "begin",
          node: this.h.rt.node,
          purpose: "read",
          filter: { table: req.table, partition: { index: req.part, count: req.partitions }, after: pos.key, since: req.since },
        }),
      );
      c.session = r.session;
      this.setTable(c, r.table);
      segs = [...segs, { lsn: r.lsn, after: pos.key, firstRow: pos.rows + 1 }];
      this.h.rt.log.info({ table: req.table, part: req.part, lsn: r.lsn, after: pos.key }, `snapshot of ${req.table} partition ${req.part} at LSN ${r.lsn} from ${c.source}`);
    }
    const data = await this.ask(ENDPOINTS.snapshot, subject, { op: "next", session: c.session, maxBytes: req.maxBytes });
    if (isJsonReply(data)) {
      try {
        unwrapReply(subject, data);
      } catch (err) {
        // The node restarted or dropped an idle session: read on in a new segment after the last key.
        if ((err as { code?: string }).code === "NOT_FOUND" && /session/.test((err as Error).message) && segs === pos.segs) {
          c.session = null;
          return this.snapshotPack(c, req, pos);
        }
        throw err;
      }
    }
    const { header, payloads } = decodeFrame<TableChunkHeader>(subject, data, (h) => [h.len]);
    if (header.rows === 0) {
      await this.closeSession(c);
      const next: SyncPosition = req.mode === 0 ? { phase: "done" } : { phase: "stream", segs, lsn: segs[0].lsn + 1, part: 0, off: 0 };
      return { records: 0, next, more: true, payload: EMPTY };
    }
    const payload = payloads[0];
    const key = keyOfRow(lastJsonLine(payload), c.table!.key);
    return { records: header.rows, next: { phase: "snapshot", segs, rows: pos.rows + header.rows, key }, more: true, payload };
  }

  private async streamPack(c: Cursor, req: PackRequest, pos: Extract<SyncPosition, { phase: "stream" }>): Promise<Pack> {
    const subject = this.h.rt.subj.node(c.source!).changes;
    if (!c.table) this.setTable(c, await this.info(c.source!, req.table));
    const segsKey = JSON.stringify(pos.segs);
    if (c.afters?.segs !== segsKey) c.afters = { segs: segsKey, keys: pos.segs.map((s) => (s.after ? splitJsonArray(s.after) : null)) };
    let { lsn, part, off } = pos;
    const chunks: string[] = [];
    let bytes = 0;
    let records = 0;
    let more = false;
    const started = Date.now();
    fetching: for (;;) {
      const data = await this.ask(ENDPOINTS.changes, subject, { lsn, part, maxBytes: req.maxBytes });
      if (isJsonReply(data)) unwrapReply(subject, data);
      const { header, payloads } = decodeFrame<PullReplyHeader>(subject, data, (h) => h.records.map((r) => r.len));
      if (header.records.length === 0) break;
      for (let i = 0; i < header.records.length; i++) {
        const r = header.records[i];
        if (r.lsn !== lsn || r.part !== part) {
          throw new ReplicationError("INTERNAL", `${c.source} sent ${r.lsn}/${r.part} where ${lsn}/${part} was expected`);
        }
        const changes = JSON.parse(dec.decode(payloads[i])) as Change[];
        for (let k = off; k < changes.length; k++) {
          const recs = await this.convert(c, req, pos.segs, changes[k], r.lsn);
          if (recs.length === 0) continue;
          const text = recs.join("\n") + "\n";
          const size = Buffer.byteLength(text);
          if (records > 0 && bytes + size > req.maxBytes) {
            off = k;
            more = true;
            break fetching;
          }
          chunks.push(text);
          bytes += size;
          records += recs.length;
        }
        off = 0;
        if (r.meta) {
          lsn = r.lsn + 1;
          part = 0;
        } else part++;
      }
      if (Date.now() - started > STREAM_BUDGET_MS) {
        more = true;
        break;
      }
    }
    return { records, next: { phase: "stream", segs: pos.segs, lsn, part, off }, more, payload: new TextEncoder().encode(chunks.join("")) };
  }

  /** A change as the partition's change records (0, 1, or 2 when a key change moves a row here or away). */
  private async convert(c: Cursor, req: PackRequest, segs: SyncSegment[], [tbl, op, rid, row]: Change, lsn: number): Promise<string[]> {
    if (op === "X") {
      // DDL: the table's columns may have changed (or it was dropped: NOT_FOUND fails the subtask).
      this.setTable(c, await this.info(c.source!, req.table));
      return [];
    }
    if (tbl !== req.table) return [];
    const t = c.table!;
    const mine = (k: string[]) => partitionOf(k, req.partitions) === req.part && pastSnapshot(segs, c.afters!.keys, k, lsn);
    const image = row !== null ? splitJsonArray(row) : null;
    const newKey = image ? c.keyIdx.map((i) => image[i]) : null;
    const oldKey = rid !== null ? splitJsonArray(rid) : null;
    const rec = (kind: string, body: string, old?: string[]) =>
      `{"op":"${kind}","lsn":${lsn}${old ? `,"old":${toObject(t.key, old)}` : ""},"row":${body}}`;
    if (op === "D") return oldKey && mine(oldKey) ? [rec("delete", toObject(t.key, oldKey))] : [];
    if (!image || !newKey) return [];
    if (op === "I" || !oldKey) return mine(newKey) ? [rec(op === "I" ? "insert" : "update", toObject(t.columns, image))] : [];
    const o = mine(oldKey);
    const n = mine(newKey);
    if (o && n) return [rec("update", toObject(t.columns, image), oldKey)];
    if (o) return [rec("delete", toObject(t.key, oldKey))];
    if (n) return [rec("insert", toObject(t.columns, image))];
    return [];
  }

  private setTable(c: Cursor, t: TableColumns): void {
    c.table = t;
    c.keyIdx = t.key.map((k) => t.columns.indexOf(k));
  }

  private async info(source: string, table: string): Promise<TableColumns> {
    const subject = this.h.rt.subj.node(source).snapshot;
    return unwrapReply<{ table: TableColumns }>(subject, await this.ask(ENDPOINTS.snapshot, subject, { op: "info", table })).table;
  }

  private async closeSession(c: Cursor): Promise<void> {
    const session = c.session;
    c.session = null;
    if (!session || !c.source) return;
    const subject = this.h.rt.subj.node(c.source).snapshot;
    await this.ask(ENDPOINTS.snapshot, subject, { op: "end", session }).catch(() => {});
  }

  /** A request to the local replica; a replica that does not answer makes this collector unavailable. */
  private async ask(endpoint: Endpoint, subject: string, body: object): Promise<Uint8Array> {
    const { rt } = this.h;
    const absent = { code: "COLLECTOR_UNAVAILABLE" as const, says: `collector ${rt.node} cannot read` };
    const opts = { timeoutMs: rt.config.nats.requestTimeoutMs, peer: `its replica ${this.source}`, absent };
    try {
      return await request(rt.nc, endpoint, subject, body, opts);
    } catch (err) {
      if (!rt.config.node.source) this.source = null; // look for the host's node again
      throw err;
    }
  }

  /**
   * The replica this collector reads: --source; else the live node serving --repo; else a live node
   * with the same host label (a slave first).
   */
  private async sourceNode(): Promise<string> {
    if (this.source) return this.source;
    const { rt } = this.h;
    const host = rt.config.node.host;
    const repo = rt.config.node.repo ? repositoryLocation(rt.config.node.repo).id : null;
    const found: { node: string; master: boolean }[] = [];
    for (const m of await memberRecords(rt.buckets.members)) {
      const live = (m.ts ?? 0) > Date.now() - 3 * HEARTBEAT_MS;
      const local = repo ? m.repo === repo : m.host === host;
      if (live && local && (m.role === "master" || m.role === "slave") && m.node) found.push({ node: m.node, master: m.state === "active" });
    }
    found.sort((a, b) => Number(a.master) - Number(b.master) || a.node.localeCompare(b.node));
    if (found.length === 0) {
      throw new SyncError("COLLECTOR_UNAVAILABLE", `collector ${rt.node} finds no running node ${repo ? `serving ${repo}` : `on host ${host}`}`, {
        hint: "start the host's node, or give the collector --source NODE",
      });
    }
    if (this.source !== found[0].node) rt.log.info({ source: found[0].node }, `reading the replica of ${found[0].node}`);
    this.source = found[0].node;
    return this.source;
  }
}
