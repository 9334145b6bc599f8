import { Kvm, type KV, type KvWatchOptions } from "@nats-io/kv";
import { TimeoutError } from "../errors.js";
import type { NatsConnection } from "@nats-io/transport-node";

/** Every KV bucket ferry uses, and how it is created. */
export const bucketNames = (cluster: string) => ({
  /** Leases: keys `master`, `watchdog`, `synctool`, `collector.<host>`; values { node, epoch, ... }. */
  leases: `ferry_${cluster}_leases`,
  /** One key per process (its node id): its latest heartbeat JSON. */
  members: `ferry_${cluster}_members`,
  /** Table sync tasks. */
  tasks: `ferry_${cluster}_tasks`,
});

/** JetStream's "wrong last sequence" (10071): a compare-and-set lost, the key moved since the revision given. */
export function isWrongSequence(e: unknown): boolean {
  const err = e as { api_error?: { err_code?: number }; code?: number; message?: string };
  return err?.api_error?.err_code === 10071 || err?.code === 10071 || /wrong last sequence/i.test(err?.message ?? "");
}

/** The bucket's last sequence: every later change to any of its keys gets a higher revision. */
export async function bucketSequence(kv: KV): Promise<number> {
  return (await kv.status()).streamInfo.state.last_seq;
}

export interface Buckets {
  leases: KV;
  members: KV;
  tasks: KV;
}

/**
 * Opens (creating when missing) the cluster's buckets. `replicas` is 1 on a single server and
 * 3 on a cluster; bucket TTLs are never used for lease expiry (see the README's design section).
 */
export async function openBuckets(nc: NatsConnection, cluster: string, replicas = 1): Promise<Buckets> {
  const kvm = new Kvm(nc);
  const names = bucketNames(cluster);
  const [leases, members, tasks] = await Promise.all([
    kvm.create(names.leases, { history: 5, replicas }),
    kvm.create(names.members, { history: 1, replicas }),
    kvm.create(names.tasks, { history: 5, replicas }),
  ]);
  return { leases, members, tasks };
}

/**
 * `kv.watch(opts)`, or null when its owner stopped while it was opening: then it is stopped at
 * once. nats.js starts a watch consumer's heartbeat timer before it subscribes, and only stopping
 * the watch ends that timer, which would otherwise keep the process alive for good.
 */
export async function openWatch(kv: KV, opts: KvWatchOptions, stopped: () => boolean): Promise<Awaited<ReturnType<KV["watch"]>> | null> {
  const w = await kv.watch(opts);
  if (!stopped()) return w;
  w.stop();
  return null;
}

/** The leases bucket as a client reads it: opened, never created (a client may not have the right to). */
export async function openLeases(nc: NatsConnection, cluster: string): Promise<KV> {
  return new Kvm(nc).open(bucketNames(cluster).leases);
}

/**
 * The keys of a bucket. `kv.keys()` reads them through an ordered consumer that can wait for ever
 * when the bucket is written while it is read (every process writes its heartbeat to the members
 * bucket each second), so each attempt has a deadline and a stalled one is started again.
 */
export async function listKeys(kv: KV, timeoutMs = 2000, attempts = 5): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    const it = await kv.keys();
    const keys: string[] = [];
    const read = (async () => {
      for await (const k of it) keys.push(k);
      return true;
    })().catch(() => false);
    if (await withDeadline(read, timeoutMs, "listing the keys").catch(() => false)) return [...new Set(keys)];
    it.stop();
    if (attempt >= attempts) throw new TimeoutError(`listing the keys of a KV bucket did not finish in ${attempts} attempts of ${timeoutMs} ms`);
  }
}

/** `p`, or a TimeoutError naming `what` when it has not settled within `ms`. */
export async function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new TimeoutError(`${what} did not answer within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
