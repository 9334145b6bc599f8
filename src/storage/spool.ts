/**
 * The spool: batches in LSN order, each stored as one or more parts (JSON arrays of changes)
 * plus a small meta record. A batch is complete once its meta is written; meta is written last,
 * in the same synced LevelDB batch as the last part.
 */
import type { AbstractSublevel } from "abstract-level";
import type { BatchMeta } from "../batch.js";
import { ReplicationError } from "../errors.js";
import type { Change } from "./repository/types.js";
import { lsnKey, partKey, tracked, writeOps, writing, type BatchOp, type LevelDb } from "./store.js";

/** One part on the wire or in the spool. The last part of a batch carries the batch's meta. */
export interface PartRecord {
  lsn: number;
  part: number;
  parts: number;
  data: Uint8Array;
  meta?: BatchMeta;
}

type Db = AbstractSublevel<LevelDb, string | Buffer | Uint8Array, string, string>;
type BinDb = AbstractSublevel<LevelDb, string | Buffer | Uint8Array, string, Uint8Array>;

/**
 * The newest complete batches, kept in memory up to this many bytes: replicas pull, and a replica
 * applies, what was written a moment ago. A bounded cache keeps memory flat however long the backlog.
 */
const RECENT_BYTES = 8 * 1024 * 1024;

export class Spool {
  private parts: BinDb;
  private metas: Db;
  private _head = 0;
  private _first = 0;
  private headMeta: BatchMeta | null = null;
  /** Consecutive newest batches, oldest first, with their parts. */
  private recent: { meta: BatchMeta; parts: Uint8Array[] }[] = [];
  private recentBytes = 0;
  /**
   * Parts of batches whose last part has not been written yet; null for a batch grown past
   * RECENT_BYTES, which is never cached (a transaction of any size must not be held in memory).
   */
  private pending = new Map<number, { parts: Uint8Array[]; bytes: number } | null>();

  constructor(private db: LevelDb) {
    this.parts = tracked(db, db.sublevel<string, Uint8Array>("p", { valueEncoding: "view" }));
    this.metas = tracked(db, db.sublevel<string, string>("b", { valueEncoding: "utf8" }));
  }

  /** Loads head and first LSN and drops parts of an incomplete batch past the head. */
  async load(): Promise<void> {
    for await (const v of this.metas.values({ reverse: true, limit: 1 })) this.headMeta = JSON.parse(v);
    for await (const k of this.metas.keys({ limit: 1 })) this._first = Number(k);
    this._head = this.headMeta?.lsn ?? 0;
  }

  get head(): number {
    return this._head;
  }
  /** Lowest LSN still held (0 when empty). */
  get first(): number {
    return this._first;
  }
  get last(): BatchMeta | null {
    return this.headMeta;
  }

  /** Bytes of parts held in memory (the newest batches and the parts of one being written): at most about 2 × RECENT_BYTES. */
  get cachedBytes(): number {
    let pending = 0;
    for (const p of this.pending.values()) pending += p?.bytes ?? 0;
    return this.recentBytes + pending;
  }

  private cachedBatch(lsn: number) {
    const first = this.recent[0]?.meta.lsn;
    return first !== undefined && lsn >= first ? this.recent[lsn - first] : undefined;
  }

  async meta(lsn: number): Promise<BatchMeta | null> {
    const hit = this.cachedBatch(lsn);
    if (hit) return hit.meta;
    const v = await this.metas.get(lsnKey(lsn));
    return v === undefined ? null : JSON.parse(v);
  }

  /** The LevelDB operations that store records; the caller adds its own and writes them synced. */
  ops(records: PartRecord[]): BatchOp[] {
    const ops: BatchOp[] = [];
    for (const r of records) {
      ops.push({ type: "put", sublevel: this.parts, key: partKey(r.lsn, r.part), value: r.data });
      if (r.meta) ops.push({ type: "put", sublevel: this.metas, key: lsnKey(r.lsn), value: JSON.stringify(r.meta) });
    }
    return ops;
  }

  /** Call after the ops of `ops(records)` were written. */
  committed(records: PartRecord[]): void {
    for (const r of records) {
      this.remember(r);
      if (!r.meta) continue;
      this.headMeta = r.meta;
      this._head = r.meta.lsn;
      if (this._first === 0) this._first = r.meta.lsn;
    }
  }

  private remember(r: PartRecord): void {
    let p = this.pending.get(r.lsn);
    if (p === undefined) p = { parts: [], bytes: 0 };
    if (p !== null) {
      p.parts[r.part] = r.data;
      p.bytes += r.data.length;
      if (p.bytes > RECENT_BYTES) p = null;
    }
    if (!r.meta) return void this.pending.set(r.lsn, p);
    this.pending.delete(r.lsn);
    if (p === null) return this.forget(); // the cache holds consecutive batches only: it starts again after this one
    const parts = p.parts;
    const last = this.recent[this.recent.length - 1];
    if ((last && last.meta.lsn !== r.lsn - 1) || parts.length !== r.meta.parts || parts.some((x) => !x)) return this.forget();
    this.recent.push({ meta: r.meta, parts });
    this.recentBytes += r.meta.bytes;
    while (this.recentBytes > RECENT_BYTES && this.recent.length > 1) this.recentBytes -= this.recent.shift()!.meta.bytes;
  }

  private forget(): void {
    this.recent = [];
    this.recentBytes = 0;
    this.pending.clear();
  }

  /** Writes records atomically; synced unless `sync` is false (a replica that need not acknowledge durability). */
  async write(records: PartRecord[], extra: BatchOp[] = [], sync = true): Promise<void> {
    await writeOps(this.db, [...this.ops(records), ...extra], sync);
    this.committed(records);
  }

  /** An intermediate part of a large batch; durable once the batch's last part is written synced. */
  async writeUnsynced(r: PartRecord): Promise<void> {
    await writing(this.db, () => this.parts.put(partKey(r.lsn, r.part), r.data));
    this.remember(r);
  }

  /** Records from (lsn, part) on, up to batch `upto`, whole parts only, at most maxBytes (but at least one part). */
  async read(lsn: number, part: number, maxBytes: number, upto = this._head): Promise<PartRecord[]> {
    const out: PartRecord[] = [];
    let bytes = 0;
    if (this.cachedBatch(lsn)) {
      for (let l = lsn; l <= Math.min(upto, this._head); l++) {
        const b = this.cachedBatch(l);
        if (!b) break;
        for (let p = l === lsn ? part : 0; p < b.parts.length; p++) {
          const data = b.parts[p];
          if (out.length > 0 && bytes + data.length > maxBytes) return out;
          out.push({ lsn: l, part: p, parts: b.meta.parts, data, meta: p === b.meta.parts - 1 ? b.meta : undefined });
          bytes += data.length;
        }
      }
      return out;
    }
    let meta: BatchMeta | null = null;
    for await (const [k, data] of this.parts.iterator({ gte: partKey(lsn, part), lte: partKey(Math.min(upto, this._head), 999999) })) {
      const [l, p] = k.split(":").map(Number);
      if (out.length > 0 && bytes + data.length > maxBytes) break;
      if (!meta || meta.lsn !== l) meta = await this.meta(l);
      if (!meta) break; // an incomplete batch is never served
      out.push({ lsn: l, part: p, parts: meta.parts, data, meta: p === meta.parts - 1 ? meta : undefined });
      bytes += data.length;
    }
    return out;
  }

  /**
   * The changes of a complete batch, each part read only when the one before is used up, and
   * synchronously: an apply runs in one synchronous repository transaction, and a batch of any
   * size then holds one part in memory at a time.
   */
  *changesOf(m: BatchMeta): Generator<Change> {
    const dec = new TextDecoder();
    const hit = this.cachedBatch(m.lsn);
    for (let part = 0; part < m.parts; part++) {
      const data = hit ? hit.parts[part] : this.parts.getSync(partKey(m.lsn, part));
      if (data === undefined) throw new ReplicationError("INTERNAL", `part ${part} of batch ${m.lsn} is not in the spool (dropped while it was read)`);
      yield* JSON.parse(dec.decode(data)) as Change[];
    }
  }

  /** Bytes of the backlog of a reader that has everything up to `acked`. */
  async backlogBytes(acked: number): Promise<number> {
    if (!this.headMeta || acked >= this._head) return 0;
    const m = acked >= this._first ? await this.meta(acked) : null;
    const base = m ? m.cum : (await this.meta(this._first))!.cum - (await this.meta(this._first))!.bytes;
    return this.headMeta.cum - base;
  }

  /** Deletes batches up to and including lsn; the head batch always stays (it anchors the LSN sequence). */
  async prune(lsn: number): Promise<void> {
    const upto = Math.min(lsn, this._head - 1);
    if (upto < this._first) return;
    await writing(this.db, () => this.parts.clear({ lte: partKey(upto, 999999) }));
    await writing(this.db, () => this.metas.clear({ lte: lsnKey(upto) }));
    this._first = upto + 1;
    while (this.recent.length > 0 && this.recent[0].meta.lsn <= upto) this.recentBytes -= this.recent.shift()!.meta.bytes;
  }

  /**
   * Deletes the oldest batches, none past `upto`, each while the batches after it still hold more
   * than `cap` bytes; returns the highest LSN deleted (0: none). One pass over the meta records
   * from the first: a replica trims after every apply, and a get per batch showed in its profile.
   */
  async pruneOver(cap: number, upto = this._head): Promise<number> {
    const head = this.headMeta;
    if (!head || this._first === 0) return 0;
    let last = 0;
    for await (const v of this.metas.values({ gte: lsnKey(this._first), lte: lsnKey(Math.min(upto, this._head - 1)) })) {
      const m = JSON.parse(v) as BatchMeta;
      if (head.cum - m.cum <= cap) break;
      last = m.lsn;
    }
    if (last > 0) await this.prune(last);
    return last;
  }

  /** Drops parts past the last complete batch (left by a crash mid-transfer). */
  async dropIncomplete(): Promise<void> {
    this.pending.clear();
    await writing(this.db, () => this.parts.clear({ gt: partKey(this._head, 999999) }));
  }

  /** Deletes every batch from `lsn` on (batches that diverged from the master's history). */
  async truncateFrom(lsn: number): Promise<void> {
    this.forget();
    await writing(this.db, () => this.parts.clear({ gte: partKey(lsn, 0) }));
    await writing(this.db, () => this.metas.clear({ gte: lsnKey(lsn) }));
    this.headMeta = null;
    for await (const v of this.metas.values({ reverse: true, limit: 1 })) this.headMeta = JSON.parse(v);
    this._head = this.headMeta?.lsn ?? 0;
    if (this._head === 0) this._first = 0;
  }

  /** Empties the spool and starts it again after `lsn` (after a snapshot restore). */
  async reset(): Promise<void> {
    this.forget();
    await writing(this.db, () => this.parts.clear());
    await writing(this.db, () => this.metas.clear());
    this._head = 0;
    this._first = 0;
    this.headMeta = null;
  }
}
