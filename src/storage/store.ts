/**
 * Each process's LevelDB: its spool of batches and its durable facts (positions, epochs,
 * registered replicas). One directory per process; LevelDB's lock keeps out a second process.
 */
import { statfs } from "node:fs/promises";
import { Level } from "level";
import { StorageError } from "../errors.js";

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
      throw new StorageError("DATA_DIR_IN_USE", `data directory ${dir} is in use by another ferry process`, {
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

/** Writes operations atomically (one LevelDB batch), fsynced before resolving unless `sync` is false. */
export async function writeOps(db: LevelDb, ops: BatchOp[], sync = true): Promise<void> {
  await writing(db, () => db.batch(ops as never, { sync }));
}

/**
 * A write to LevelDB; one it refuses (a full disk, a read-only mount) fails as
 * DATA_DIR_UNWRITABLE, and the next write to that database checks it first (checkWritable).
 */
export async function writing<T>(db: LevelDb, write: () => Promise<T>): Promise<T> {
  if (refused.has(db)) await checkWritable(db);
  return attempt(db, write);
}

const refused = new WeakSet<LevelDb>();

async function attempt<T>(db: LevelDb, write: () => Promise<T>): Promise<T> {
  try {
    const out = await write();
    refused.delete(db);
    return out;
  } catch (err) {
    if (!String((err as { code?: unknown }).code).startsWith("LEVEL_")) throw err;
    refused.add(db);
    throw new StorageError("DATA_DIR_UNWRITABLE", `cannot write to ${db.location}: ${(err as Error).message}`, {
      cause: err,
      hint: "free space on its disk (or make it writable again); ferry resumes by itself",
    });
  }
}

/** Sublevels by database, opened again when it is reopened (a sublevel closes with its database and stays closed). */
const sublevels = new WeakMap<LevelDb, { open(): Promise<void> }[]>();

export function tracked<S extends { open(): Promise<void> }>(db: LevelDb, sub: S): S {
  const list = sublevels.get(db) ?? sublevels.set(db, []).get(db)!;
  list.push(sub);
  return sub;
}

/** Free space that a LevelDB compaction of its 4 MiB write buffer surely fits in. */
const ROOM_BYTES = 16 * 1024 * 1024;
const PROBE_KEY = "~probe";
const checking = new WeakMap<LevelDb, Promise<void>>();

/**
 * Resolves when a synced write succeeds. LevelDB refuses every write after a compaction failed
 * (a full disk) until it is reopened, even once there is space again; so a write that fails while
 * the disk has room reopens the database and its sublevels and tries again. Reads in flight then
 * fail once, and their callers retry as after any read error. Concurrent callers share one check.
 */
export function checkWritable(db: LevelDb): Promise<void> {
  let check = checking.get(db);
  if (!check) {
    check = probeOrReopen(db).finally(() => checking.delete(db));
    checking.set(db, check);
  }
  return check;
}

async function probeOrReopen(db: LevelDb): Promise<void> {
  const probe = () => attempt(db, () => db.put(PROBE_KEY, String(Date.now()), { sync: true }));
  try {
    await probe();
  } catch (err) {
    const fs = await statfs(db.location).catch(() => null);
    if (fs === null || fs.bavail * fs.bsize < ROOM_BYTES) throw err;
    await db.close();
    await db.open();
    for (const sub of sublevels.get(db) ?? []) await sub.open();
    await probe();
  }
}
