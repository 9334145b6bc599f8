/**
 * Every subject and bucket of a cluster with what it carries and the `nats` CLI command that
 * shows it: what `ferry inspect` prints and the README's table lists.
 */
import { bucketNames } from "./buckets.js";
import { subjects } from "./subjects.js";

export interface InventoryItem {
  kind: "subject" | "bucket";
  name: string;
  carries: string;
  /** A nats CLI command to see it (add --server URL and credentials). */
  watch: string;
}

export function inventory(cluster: string): InventoryItem[] {
  const s = subjects(cluster);
  const b = bucketNames(cluster);
  const n = s.node("<node>");
  const sub = (name: string, carries: string, watch = `nats sub '${name.replace(/<[^>]+>/g, "*")}'`): InventoryItem => ({ kind: "subject", name, carries, watch });
  return [
    sub(s.heartbeat("<role>", "<node>"), "each process's status as JSON, every second", `nats sub '${s.heartbeatAll}'`),
    sub(s.alert, "every decision and fault as JSON (failover steps, backlog cap, fencing, repository down/up, resyncs)"),
    sub(s.sql, "SQL requests, answered by the active master", `nats req ${s.sql} '{"sql":"SELECT 1"}'`),
    sub(s.switchover, "planned switchover requests, answered by the active master", `nats req ${s.switchover} '{"to":"<node>"}'`),
    sub(s.notify, "the master's announcements of new batches {node, epoch, lsn}"),
    sub(n.pull, "replicas pulling batches from the master (binary frames)"),
    sub(n.snapshot, "snapshot sessions: resync of a replica, reads by collectors"),
    sub(n.changes, "a node's spooled batches for readers (collectors)"),
    sub(n.resync, "start a resync of that node", `nats req ${s.node("<node>").resync} '{}'`),
    sub(n.resyncProgress, "resync progress"),
    sub(n.control, "promote / promote-cancel / reach, used by watchdogs and switchover"),
    sub(s.ping("<node>"), "liveness, answered by every process", `nats req ${s.ping("<node>")} '{}'`),
    sub(s.synctool.create, "create a table sync task (ferry task create)"),
    sub(s.synctool.delete, "delete a table sync task (ferry task delete)"),
    sub(s.synctool.tasks, "table sync tasks and their subtasks (ferry task status)", `nats req ${s.synctool.tasks} '{}'`),
    sub(s.synctool.status, "the synctool's own state (ferry tool-status)", `nats req ${s.synctool.status} '{}'`),
    sub(s.collector("<node>").pack, "the synctool asking a collector for the next pack of a subtask"),
    { kind: "bucket", name: b.leases, carries: "leases master, watchdog, synctool, collector.<host> ({node, epoch, instance, ...}) and the failover count (key failover)", watch: `nats kv watch ${b.leases}` },
    { kind: "bucket", name: b.members, carries: "each process's latest heartbeat, by node id", watch: `nats kv ls ${b.members}; nats kv get ${b.members} <node>` },
    { kind: "bucket", name: b.tasks, carries: "table sync tasks and their subtasks' progress", watch: `nats kv watch ${b.tasks}` },
  ];
}
