/**
 * Each process's LevelDB: its spool of batches and its durable facts (positions, epochs,
 * registered replicas). One directory per process; LevelDB's lock keeps out a second process.
 */
import { Level } from "level";
import { ClusterError } from "../errors.js";

export type LevelDb = Level<string, string>;
export type Sub<V> = ReturnType<LevelDb["sublevel"]> & { __v?: V };

export const lsnKey = (lsn: number) => String(lsn).padStart(16, "0");
export const partKey = (lsn: number, part: number) => `${lsnKey(lsn)}:${String(part).padStart(6, "0")}`;

export async function openLevel(dir: string): Promise<LevelDb> {
  const db = new Level<string, string>(dir, { valueEncoding: "utf8" });
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause;
    if (cause?.code === "LEVEL_LOCKED") {
      throw new ClusterError("DATA_DIR_IN_USE", `data directory ${dir} is in use by another ferry process`, {
        cause: err,
        hint: "give each process its own --data directory (and its own --node id)",
      });
    }
    throw err;
  }
  return db;
}

/** One operation of an atomic LevelDB batch across sublevels. */
export interface BatchOp {
  type: "put" | "del";
  sublevel: unknown;
  key: string;
  value?: unknown;
}

/** Writes operations atomically and fsyncs before resolving. */
export async function writeSynced(db: LevelDb, ops: BatchOp[]): Promise<void> {
  await db.batch(ops as never, { sync: true });
}
