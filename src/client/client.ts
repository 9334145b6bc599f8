/**
 * A connection to a running cluster as the commands and the dashboard use it: the config, NATS,
 * the cluster's subjects, and its buckets when first asked for.
 */
import type { Config } from "../config.js";
import { openBuckets, type Buckets } from "../nats/buckets.js";
import { connectNats, type NatsConnection } from "../nats/connect.js";
import { subjects, type Subjects } from "../nats/subjects.js";

export interface Client {
  config: Config;
  nc: NatsConnection;
  subj: Subjects;
  buckets(): Promise<Buckets>;
  close(): Promise<void>;
}

export async function openClient(config: Config): Promise<Client> {
  const nc = await connectNats(config, { name: "ferry-cli" });
  let b: Buckets | null = null;
  return {
    config,
    nc,
    subj: subjects(config.cluster),
    buckets: async () => (b ??= await openBuckets(nc, config.cluster, config.nats.kvReplicas)),
    close: () => nc.close(),
  };
}
