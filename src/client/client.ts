/**
 * A connection to a running cluster as the commands, the dashboard and the library use it: the
 * config, NATS, the cluster's subjects, its buckets and the master lease when first asked for.
 */
import type { Config } from "../config.js";
import { openBuckets, openLeases, withDeadline, type Buckets } from "../nats/buckets.js";
import { connectNats, type NatsConnection } from "../nats/connect.js";
import { subjects, type Subjects } from "../nats/subjects.js";
import { MasterFollower } from "./master.js";

export interface Client {
  config: Config;
  nc: NatsConnection;
  subj: Subjects;
  buckets(): Promise<Buckets>;
  /**
   * The master lease, followed; null when this NATS user may not read it (an application user
   * allowed only `ferry.<cluster>.sql`): SQL then goes to the cluster's subject.
   */
  master(): Promise<MasterFollower | null>;
  close(): Promise<void>;
}

/** The least a close waits for the lease follower (a 1 ms request deadline must not cut it short). */
const CLOSE_WAIT_MIN_MS = 2000;

export async function openClient(config: Config, name = "ferry-cli"): Promise<Client> {
  const nc = await connectNats(config, { name });
  let b: Buckets | null = null;
  let m: MasterFollower | "denied" | null = null;
  // The follower being opened. One that opens after the deadline is kept for the next call, or
  // closed when the client already is: left open, its watch would retry forever and keep a
  // finished command's process alive.
  let opening: Promise<MasterFollower> | null = null;
  let closed = false;
  return {
    config,
    nc,
    subj: subjects(config.cluster),
    buckets: async () => (b ??= await openBuckets(nc, config.cluster, config.nats.kvReplicas)),
    master: async () => {
      if (m) return m === "denied" ? null : m;
      opening ??= openLeases(nc, config.cluster)
        .then(MasterFollower.open)
        .then(
          (f) => {
            if (closed) void f.close();
            else m = f;
            return f;
          },
          (err) => {
            opening = null;
            throw err;
          },
        );
      try {
        return await withDeadline(opening, config.nats.requestTimeoutMs, "reading the master lease");
      } catch (err) {
        // Denied stays denied; anything else (no cluster yet, a slow server) is tried again next time.
        if (/permission/i.test(String((err as Error)?.message ?? err))) m = "denied";
        return null;
      }
    },
    close: async () => {
      closed = true;
      // The follower ends before the connection does (MasterFollower.close says why), but a server
      // that does not answer must not hold the close: each wait has a deadline.
      const ms = Math.max(config.nats.requestTimeoutMs, CLOSE_WAIT_MIN_MS);
      const f = opening ? await withDeadline(opening, ms, "opening the master lease").catch(() => null) : null;
      if (f) await withDeadline(f.close(), ms, "closing the master lease's watch").catch(() => {});
      await nc.close();
    },
  };
}
