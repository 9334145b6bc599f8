/** Every NATS subject ferry uses. The cluster name scopes all of them. */
export function subjects(cluster: string) {
  const root = `ferry.${cluster}`;
  return {
    root,
    /** Heartbeat JSON of each process, every second. */
    heartbeat: (role: string, node: string) => `${root}.hb.${role}.${node}`,
    heartbeatAll: `${root}.hb.>`,
    /** Alerts: one JSON object per decision or fault. */
    alert: `${root}.alert`,
    /** SQL requests, answered by the active master only. */
    sql: `${root}.sql`,
    /** Planned switchover requests, answered by the active master only. */
    switchover: `${root}.switchover`,
    /** Liveness check answered by every process (prerequisite 1). */
    ping: (node: string) => `${root}.ping.${node}`,
    /** The active master announces new batches here: { node, epoch, lsn }. */
    notify: `${root}.repl.notify`,
    /** The active master's small batches with their data, for replicas that are caught up (binary frames). */
    push: `${root}.repl.push`,
    /** Requests addressed to one node. */
    node: (node: string) => ({
      /** SQL addressed to this node as the master of one epoch (clients that follow the lease). */
      sql: `${root}.node.${node}.sql`,
      pull: `${root}.node.${node}.pull`,
      snapshot: `${root}.node.${node}.snapshot`,
      changes: `${root}.node.${node}.changes`,
      resync: `${root}.node.${node}.resync`,
      resyncProgress: `${root}.node.${node}.resync.progress`,
      control: `${root}.node.${node}.control`,
      compare: `${root}.node.${node}.compare`,
    }),
    nodeAll: `${root}.node.>`,
    /** Requests to the active synctool (JSON): task create / delete / status, and its own status. */
    synctool: {
      create: `${root}.synctool.task.create`,
      delete: `${root}.synctool.task.delete`,
      tasks: `${root}.synctool.task.status`,
      status: `${root}.synctool.status`,
    },
    /** Requests to one collector: the next pack of a subtask (reply: a binary frame of JSON Lines). */
    collector: (node: string) => ({ pack: `${root}.collector.${node}.pack` }),
  };
}
export type Subjects = ReturnType<typeof subjects>;
