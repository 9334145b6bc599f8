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

export async function openClient(config: Config, name = "ferry-cli"): Promise<Client> {
  const nc = await connectNats(config, { name });
  let b: Buckets | null = null;
  let m: MasterFollower | "denied" | null = null;
  return {
    config,
    nc,
    subj: subjects(config.cluster),
    buckets: async () => (b ??= await openBuckets(nc, config.cluster, config.nats.kvReplicas)),
    master: async () => {
      if (m) return m === "denied" ? null : m;
      try {
        const f = await withDeadline(openLeases(nc, config.cluster).then(MasterFollower.open), config.nats.requestTimeoutMs, "reading the master lease");
        m = f;
        return f;
      } catch (err) {
        // Denied stays denied; anything else (no cluster yet, a slow server) is tried again next time.
        if (/permission/i.test(String((err as Error)?.message ?? err))) m = "denied";
        return null;
      }
    },
    close: async () => {
      if (m instanceof MasterFollower) m.close();
      await nc.close();
    },
  };
}
