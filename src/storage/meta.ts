/**
 * A process's durable facts, rebuilt into actors at start (never XState snapshots):
 * the highest epoch seen, the epoch history, the capture checkpoint, the replicas a master
 * retains batches for, and whether this node needs a resync.
 */
import type { AbstractSublevel } from "abstract-level";
import { checkWritable, lsnKey, tracked, writeOps, writing, type BatchOp, type LevelDb } from "./store.js";

export interface EpochStart {
  epoch: number;
  /** First LSN written in this epoch. */
  firstLsn: number;
  node: string;
}

export interface CapturePoint {
  checkpoint: number;
  lsn: number;
  epoch: number;
}

export interface ReplicaRecord {
  node: string;
  /** Everything up to this LSN is durably held by the replica. */
  acked: number;
  applied: number;
  needsResync: boolean;
  reason?: string;
  lastSeen: number;
}

export interface ResyncState {
  needed: boolean;
  reason?: string;
  code?: string;
  since?: number;
}

type Db = AbstractSublevel<LevelDb, string | Buffer | Uint8Array, string, string>;

export class Meta {
  private kv: Db;
  private epochs: Db;
  private replicas: Db;

  constructor(private db: LevelDb) {
    this.kv = tracked(db, db.sublevel<string, string>("m", { valueEncoding: "utf8" }));
    this.epochs = tracked(db, db.sublevel<string, string>("e", { valueEncoding: "utf8" }));
    this.replicas = tracked(db, db.sublevel<string, string>("r", { valueEncoding: "utf8" }));
  }

  private async getJson<T>(db: Db, key: string, fallback: T): Promise<T> {
    const v = await db.get(key);
    return v === undefined ? fallback : (JSON.parse(v) as T);
  }

  async maxEpoch(): Promise<number> {
    return this.getJson(this.kv, "epoch", 0);
  }
  /** Persists a higher epoch (synced: NATS may lose its KV write in a power cut, this must not). */
  async raiseEpoch(epoch: number): Promise<void> {
    if (epoch > (await this.maxEpoch())) await writeOps(this.db, [this.epochOp(epoch)]);
  }
  epochOp(epoch: number): BatchOp {
    return { type: "put", sublevel: this.kv, key: "epoch", value: JSON.stringify(epoch) };
  }

  async epochHistory(): Promise<EpochStart[]> {
    const out: EpochStart[] = [];
    for await (const v of this.epochs.values()) out.push(JSON.parse(v));
    return out;
  }
  epochStartOp(e: EpochStart): BatchOp {
    return { type: "put", sublevel: this.epochs, key: lsnKey(e.epoch), value: JSON.stringify(e) };
  }
  async recordEpochStart(e: EpochStart): Promise<void> {
    const known = await this.epochs.get(lsnKey(e.epoch));
    if (known === undefined) await writeOps(this.db, [this.epochStartOp(e), this.epochOp(e.epoch)]);
  }

  /** Where capture stands: the last change id sequenced and the batch (lsn, epoch) it went into. */
  async capture(): Promise<CapturePoint> {
    return this.getJson<CapturePoint>(this.kv, "capture", { checkpoint: 0, lsn: 0, epoch: 0 });
  }
  async checkpoint(): Promise<number> {
    return (await this.capture()).checkpoint;
  }
  async setCapture(p: CapturePoint): Promise<void> {
    await writeOps(this.db, [this.captureOp(p)]);
  }
  captureOp(p: CapturePoint): BatchOp {
    return { type: "put", sublevel: this.kv, key: "capture", value: JSON.stringify(p) };
  }

  async resync(): Promise<ResyncState> {
    return this.getJson<ResyncState>(this.kv, "resync", { needed: false });
  }
  async setResync(s: ResyncState): Promise<void> {
    await writeOps(this.db, [{ type: "put", sublevel: this.kv, key: "resync", value: JSON.stringify(s) }]);
  }

  /** Resolves once this process can write its LevelDB again (see checkWritable). */
  checkWritable(): Promise<void> {
    return checkWritable(this.db);
  }

  async replicaRecords(): Promise<ReplicaRecord[]> {
    const out: ReplicaRecord[] = [];
    for await (const v of this.replicas.values()) out.push(JSON.parse(v));
    return out;
  }
  async putReplica(r: ReplicaRecord): Promise<void> {
    await writing(this.db, () => this.replicas.put(r.node, JSON.stringify(r)));
  }
  async dropReplica(node: string): Promise<void> {
    await writing(this.db, () => this.replicas.del(node));
  }
}
