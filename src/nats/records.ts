/**
 * The KV records of the protocol (protocol.ts lists them): the keys and values of the leases,
 * tasks and members buckets.
 */
import type { KV } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { isWrongSequence, listKeys } from "./buckets.js";
import type { Subjects } from "./subjects.js";

/** Keys of the leases bucket. */
export const LEASE_KEY = {
  master: "master",
  watchdog: "watchdog",
  synctool: "synctool",
  collector: (host: string) => `collector.${host}`,
  /** Not a lease: the watchdogs' count of automatic failovers and their switch (ferry failover). */
  failover: "failover",
  /** Not a lease: a replica continuous verification found different from the master (DivergedRecord). */
  diverged: (node: string) => `diverged.${node}`,
} as const;

const DIVERGED_PREFIX = LEASE_KEY.diverged("");

/** A lease's value (JSON): who holds it, with which epoch, and from which process. */
export interface LeaseRecord {
  node: string;
  epoch: number;
  /** Identifies the holding process; a restarted node has a new instance. */
  instance: string;
  [field: string]: unknown;
}

/** A lease value as read from the bucket; null when missing, deleted or not a lease. */
export function decodeLease(value: Uint8Array | null | undefined): LeaseRecord | null {
  if (!value || value.length === 0) return null;
  try {
    const v = JSON.parse(new TextDecoder().decode(value));
    return v && typeof v.node === "string" && Number.isInteger(v.epoch) ? v : null;
  } catch {
    return null;
  }
}

/** A table task as stored in the tasks bucket (JSON under `taskKey(db, table)`). */
export interface TaskDef {
  /** Random per task: a task deleted and created again is another task. */
  id: string;
  db: string;
  table: string;
  mode: 0 | 1 | 2;
  ts?: number;
  tsColumn?: string;
  dest: string;
  partitions: number;
  columns: string[];
  key: string[];
  /** The columns' value kinds (ValueKind of src/storage/repository/types.ts), for typed files. */
  kinds?: string[];
  /** The files' format (a SinkFormat of src/storage/sink/); absent in tasks created before formats existed, which write jsonl to part-<p>/. */
  format?: string;
  createdAt: number;
}

/** The KV key of a table's task: `<db>.<table>`, characters a key cannot hold written as =HH. */
export function taskKey(db: string, table: string): string {
  const esc = (s: string) => Array.from(Buffer.from(s, "utf8"), (b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `=${b.toString(16).padStart(2, "0")}`)).join("");
  return `${esc(db)}.${esc(table)}`;
}

export interface StoredFailoverState {
  history: number[];
  enabled: boolean;
  resetAt?: number;
}

/** The shared failover count and switch, as stored under `failover` in the leases bucket. */
export async function readFailoverState(kv: KV): Promise<StoredFailoverState> {
  const e = await kv.get(LEASE_KEY.failover);
  if (!e || e.operation !== "PUT") return { history: [], enabled: true };
  try {
    const v = e.json<StoredFailoverState>();
    return { history: Array.isArray(v.history) ? v.history.filter(Number.isFinite) : [], enabled: v.enabled !== false, resetAt: v.resetAt };
  } catch {
    return { history: [], enabled: true };
  }
}

export async function writeFailoverState(kv: KV, s: StoredFailoverState): Promise<void> {
  await kv.put(LEASE_KEY.failover, JSON.stringify(s));
}

/**
 * A replica that differs from the master, as the active watchdog records it under
 * `diverged.<node>` in the leases bucket: the compare that found it (master, LSN, time), the rows
 * that differ, and per table their count and first keys. Deleted when it is found clean again or
 * repaired.
 */
export interface DivergedRecord {
  node: string;
  master: string;
  lsn: number;
  at: number;
  rows: number;
  tables: { table: string; rows: number; keys: string[] }[];
}

export const isDivergedKey = (key: string) => key.startsWith(DIVERGED_PREFIX);

/** A diverged record as read from the bucket; null when it is not one. */
export function decodeDiverged(value: Uint8Array | null | undefined): DivergedRecord | null {
  if (!value || value.length === 0) return null;
  try {
    const v = JSON.parse(new TextDecoder().decode(value));
    return v && typeof v.node === "string" && Array.isArray(v.tables) && Number.isInteger(v.lsn) ? v : null;
  } catch {
    return null;
  }
}

/**
 * Writes a replica's mark. With `since` (the bucket's sequence when the compare that found it
 * began), only if the key has not changed after it: false when it has, and nothing is written.
 */
export async function writeDiverged(kv: KV, r: DivergedRecord, since?: number): Promise<boolean> {
  const key = LEASE_KEY.diverged(r.node);
  if (since === undefined) return (await kv.put(key, JSON.stringify(r)), true);
  const e = await kv.get(key);
  if ((e?.revision ?? 0) > since) return false;
  try {
    await kv.put(key, JSON.stringify(r), { previousSeq: e?.revision ?? 0 });
    return true;
  } catch (err) {
    if (isWrongSequence(err)) return false;
    throw err;
  }
}

/**
 * Clears a replica's mark, or only one table of it (a repair of that table), by compare-and-set.
 * With `since` as for writeDiverged (false when the mark changed after it); without it (a
 * repair, which fixed the rows whatever a compare found before) a mark written meanwhile is read
 * again and cleared.
 */
export async function clearDiverged(kv: KV, node: string, table?: string, since?: number): Promise<boolean> {
  const key = LEASE_KEY.diverged(node);
  for (let attempt = 0; ; attempt++) {
    const e = await kv.get(key);
    const r = e?.operation === "PUT" ? decodeDiverged(e.value) : null;
    if (!e || !r) return true;
    if (since !== undefined && e.revision > since) return false;
    const tables = table === undefined ? [] : r.tables.filter((t) => t.table !== table);
    try {
      if (tables.length === 0) await kv.delete(key, { previousSeq: e.revision });
      else await kv.update(key, JSON.stringify({ ...r, tables, rows: tables.reduce((n, t) => n + t.rows, 0) }), e.revision);
      return true;
    } catch (err) {
      if (!isWrongSequence(err)) throw err;
      if (since !== undefined || attempt >= 5) return false;
    }
  }
}

/**
 * Follows every diverged record: `onChange` gets the whole set after each record seen (the last
 * value of every key first, a deleted one as its delete marker, then each change). Resolves when
 * the watch ends (stop(), or the connection's end); the caller starts it again.
 */
export async function watchDiverged(kv: KV, onChange: (records: DivergedRecord[]) => void, started: (stop: () => void) => void): Promise<void> {
  const seen = new Map<string, DivergedRecord>();
  const w = await kv.watch({ key: `${DIVERGED_PREFIX}>` });
  started(() => w.stop());
  for await (const e of w) {
    const r = e.operation === "PUT" ? decodeDiverged(e.value) : null;
    if (r) seen.set(e.key, r);
    else seen.delete(e.key);
    onChange([...seen.values()]);
  }
}

/**
 * A process's entry in the members bucket: its latest heartbeat. Every field is optional to a
 * reader (older and other roles write fewer); `ts` is when it was sent.
 */
export interface MemberRecord {
  node?: string;
  role?: string;
  state?: string;
  host?: string;
  instance?: string;
  pid?: number;
  ts?: number;
  /** The LevelDB directory. */
  data?: string;
  /** A node's repository (its location id) and kind. */
  repo?: string;
  repoKind?: string;
  spooledLsn?: number;
  appliedLsn?: number;
  /** A collector: the node whose replica it reads. */
  source?: string;
  needsResync?: boolean;
  [field: string]: unknown;
}

/** A heartbeat or member value as a record; null when it is not a JSON object naming its node. */
export function decodeMember(data: Uint8Array): (MemberRecord & { node: string }) | null {
  try {
    const m = JSON.parse(new TextDecoder().decode(data));
    return m && typeof m === "object" && !Array.isArray(m) && typeof m.node === "string" ? m : null;
  } catch {
    return null;
  }
}

/**
 * Every process's heartbeat as it is published (ferry.<cluster>.hb.>), with the time it arrived
 * here; a message that is not a heartbeat goes to `malformed` (heartbeats are informative: no
 * reply, nothing else to do).
 */
export function subscribeHeartbeats(
  nc: NatsConnection,
  subj: Subjects,
  onBeat: (hb: MemberRecord & { node: string }, receivedAt: number) => void,
  malformed: (subject: string) => void = () => {},
): Subscription {
  return nc.subscribe(subj.heartbeatAll, {
    callback: (_e, m) => {
      const hb = decodeMember(m.data);
      if (hb) onBeat(hb, Date.now());
      else malformed(m.subject);
    },
  });
}

/** Every member record, one read of the bucket; a value that is not a JSON object is left out. */
export async function memberRecords(kv: KV): Promise<(MemberRecord & { node: string })[]> {
  const out: (MemberRecord & { node: string })[] = [];
  for (const key of await listKeys(kv)) {
    const e = await kv.get(key);
    const m = e?.operation === "PUT" ? decodeMember(e.value) : null;
    if (m) out.push(m);
  }
  return out;
}
