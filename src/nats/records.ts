/**
 * The KV records of the protocol (protocol.ts lists them): the keys of the leases, tasks and
 * members buckets, and the schemas their values are read with (the heartbeat's is the members').
 */
import type { KV } from "@nats-io/kv";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { z } from "zod";
import { isWrongSequence, listKeys, openWatch } from "./buckets.js";
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

/** A JSON value that `schema` accepts, or null: empty, not JSON, or of another shape. */
function decodeWith<T>(schema: z.ZodType<T>, value: Uint8Array | null | undefined): T | null {
  if (!value || value.length === 0) return null;
  try {
    const parsed = schema.safeParse(JSON.parse(new TextDecoder().decode(value)));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/**
 * A lease's value (JSON): who holds it, with which epoch, and from which process. Holders add
 * their own fields (role, host, ts, from), which a reader keeps.
 */
export const leaseRecord = z.looseObject({
  node: z.string(),
  epoch: z.number().int(),
  /** Identifies the holding process; a restarted node has a new instance. */
  instance: z.string(),
});
export type LeaseRecord = z.infer<typeof leaseRecord>;

/** A lease value as read from the bucket; null when missing, deleted or not a lease. */
export function decodeLease(value: Uint8Array | null | undefined): LeaseRecord | null {
  return decodeWith(leaseRecord, value);
}

/** A table task as stored in the tasks bucket (JSON under `taskKey(db, table)`). */
export const taskDef = z.looseObject({
  /** Random per task: a task deleted and created again is another task. */
  id: z.string(),
  db: z.string(),
  table: z.string(),
  mode: z.union([z.literal(0), z.literal(1), z.literal(2)]),
  ts: z.number().optional(),
  tsColumn: z.string().optional(),
  dest: z.string(),
  partitions: z.number().int().positive(),
  columns: z.array(z.string()),
  key: z.array(z.string()),
  /** The columns' value kinds (ValueKind of src/storage/repository/types.ts), for typed files. */
  kinds: z.array(z.string()).optional(),
  /** The files' format (a SinkFormat of src/storage/sink/); absent in tasks created before formats existed, which write jsonl to part-<p>/. */
  format: z.string().optional(),
  createdAt: z.number(),
});
export type TaskDef = z.infer<typeof taskDef>;

/** A tasks bucket value as a task; null when it is not one. */
export function decodeTask(value: Uint8Array | null | undefined): TaskDef | null {
  return decodeWith(taskDef, value);
}

/** The KV key of a table's task: `<db>.<table>`, characters a key cannot hold written as =HH. */
export function taskKey(db: string, table: string): string {
  const esc = (s: string) => Array.from(Buffer.from(s, "utf8"), (b) => (/[A-Za-z0-9_-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `=${b.toString(16).padStart(2, "0")}`)).join("");
  return `${esc(db)}.${esc(table)}`;
}

/** The watchdogs' count of automatic failovers (when each happened) and their switch. */
export const storedFailoverState = z.looseObject({
  history: z.array(z.number()),
  enabled: z.boolean(),
  resetAt: z.number().optional(),
});
export type StoredFailoverState = z.infer<typeof storedFailoverState>;

/** The shared failover count and switch, as stored under `failover` in the leases bucket; none or a malformed one is a fresh count. */
export async function readFailoverState(kv: KV): Promise<StoredFailoverState> {
  const e = await kv.get(LEASE_KEY.failover);
  return (e?.operation === "PUT" ? decodeWith(storedFailoverState, e.value) : null) ?? { history: [], enabled: true };
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
export const divergedRecord = z.object({
  node: z.string(),
  master: z.string(),
  lsn: z.number().int(),
  at: z.number(),
  rows: z.number().int(),
  tables: z.array(z.object({ table: z.string(), rows: z.number().int(), keys: z.array(z.string()) })),
});
export type DivergedRecord = z.infer<typeof divergedRecord>;

export const isDivergedKey = (key: string) => key.startsWith(DIVERGED_PREFIX);

/** A diverged record as read from the bucket; null when it is not one. */
export function decodeDiverged(value: Uint8Array | null | undefined): DivergedRecord | null {
  return decodeWith(divergedRecord, value);
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
 * the watch ends (stop(), the connection's end, or `stopped()` already true once it opened); the
 * caller starts it again.
 */
export async function watchDiverged(kv: KV, onChange: (records: DivergedRecord[]) => void, stopped: () => boolean, started: (stop: () => void) => void): Promise<void> {
  const seen = new Map<string, DivergedRecord>();
  const w = await openWatch(kv, { key: `${DIVERGED_PREFIX}>` }, stopped);
  if (!w) return;
  started(() => w.stop());
  for await (const e of w) {
    const r = e.operation === "PUT" ? decodeDiverged(e.value) : null;
    if (r) seen.set(e.key, r);
    else seen.delete(e.key);
    onChange([...seen.values()]);
  }
}

/**
 * A process's heartbeat: published on its heartbeat subject every second, kept under its node id
 * in the members bucket, and the answer to a ping. Only `node` is required (older and other
 * roles write fewer fields); each role adds status fields of its own, which a reader keeps.
 */
export const memberRecord = z.looseObject({
  node: z.string(),
  role: z.string().optional(),
  state: z.string().optional(),
  host: z.string().optional(),
  instance: z.string().optional(),
  pid: z.number().optional(),
  /** When it was sent (ms since the epoch). */
  ts: z.number().optional(),
  /** The LevelDB directory. */
  data: z.string().optional(),
  /** A node's repository (its location id) and kind. */
  repo: z.string().optional(),
  repoKind: z.string().optional(),
  spooledLsn: z.number().optional(),
  appliedLsn: z.number().optional(),
  /** A collector: the node whose replica it reads (null until it knows). */
  source: z.string().nullable().optional(),
  needsResync: z.boolean().optional(),
  /** A node repairing the rows of batches it dropped at a rejoin: not to be promoted until done. */
  rejoining: z.boolean().optional(),
});
export type MemberRecord = z.infer<typeof memberRecord>;

/** A heartbeat or member value as a record; null when it is not one. */
export function decodeMember(data: Uint8Array): MemberRecord | null {
  return decodeWith(memberRecord, data);
}

/**
 * Every process's heartbeat as it is published (ferry.<cluster>.hb.>), with the time it arrived
 * here; a message that is not a heartbeat goes to `malformed` (heartbeats are informative: no
 * reply, nothing else to do).
 */
export function subscribeHeartbeats(
  nc: NatsConnection,
  subj: Subjects,
  onBeat: (hb: MemberRecord, receivedAt: number) => void,
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

/** Every member record, one read of the bucket; a value that is not a member record is left out. */
export async function memberRecords(kv: KV): Promise<MemberRecord[]> {
  const out: MemberRecord[] = [];
  for (const key of await listKeys(kv)) {
    const e = await kv.get(key);
    const m = e?.operation === "PUT" ? decodeMember(e.value) : null;
    if (m) out.push(m);
  }
  return out;
}
