/**
 * The synctool's saved progress, in its LevelDB: one record per subtask, keyed by task id and
 * partition, written synced after the pack's file is durably in the destination.
 */
import type { AbstractSublevel } from "abstract-level";
import type { SyncPosition } from "./sync.js";
import { tracked, writeOps, writing, type LevelDb } from "./store.js";

export interface SavedProgress {
  pos: SyncPosition;
  /** Rows and change records written so far. */
  rows: number;
  at: number;
}

type Db = AbstractSublevel<LevelDb, string | Buffer | Uint8Array, string, string>;

const key = (task: string, part: number) => `${task}:${String(part).padStart(4, "0")}`;

export class SyncProgress {
  private db: Db;

  constructor(private level: LevelDb) {
    this.db = tracked(level, level.sublevel<string, string>("sync", { valueEncoding: "utf8" }));
  }

  async get(task: string, part: number): Promise<SavedProgress | null> {
    const v = await this.db.get(key(task, part));
    return v === undefined ? null : (JSON.parse(v) as SavedProgress);
  }

  async save(task: string, part: number, p: SavedProgress): Promise<void> {
    await writeOps(this.level, [{ type: "put", sublevel: this.db, key: key(task, part), value: JSON.stringify(p) }]);
  }

  /** Forgets every subtask of a task (deleted or complete). */
  async drop(task: string): Promise<void> {
    await writing(this.level, () => this.db.clear({ gte: `${task}:`, lt: `${task};` }));
  }
}
