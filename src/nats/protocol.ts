/**
 * ferry's wire protocol in one table: every request endpoint (subject, request schema, reply kind,
 * the codes it answers with), every subject that is only published (with its body's schema), and
 * every KV record (bucket, keys, value schema). Callers reach endpoints only through call() and serve() (rpc.ts); `ferry inspect`
 * and the README's subject table are printed from this table (inventory.ts), and a test fails
 * when the README drifts from it.
 */
import type { z } from "zod";
import type { ErrorCode } from "../errors.js";
import { bucketNames } from "./buckets.js";
import {
  alertMessage,
  changesRequest,
  compareRequest,
  controlRequest,
  emptyRequest,
  notifyMessage,
  pushHeader,
  packRequest,
  pullRequest,
  resyncProgressMessage,
  resyncRequest,
  snapshotRequest,
  sqlRequest,
  switchoverRequest,
  taskCreateRequest,
  taskDeleteRequest,
} from "./messages.js";
import { LEASE_KEY, divergedRecord, leaseRecord, memberRecord, storedFailoverState, taskDef } from "./records.js";
import { subjects, type Subjects } from "./subjects.js";

/**
 * A JSON reply's body (`{ ok: true, ...body }`), a binary frame (a header and raw payloads,
 * codec.ts), or either by operation; errors are always JSON.
 */
export type ReplyKind = "json" | "frame" | "json+frame";

/** The error of a request nobody answered: its code, what it means, what to do. */
export interface Absent {
  code: ErrorCode;
  says: string;
  hint?: string;
}

const NO_MASTER: Absent = { code: "NO_ACTIVE_MASTER", says: "no active master", hint: "start a master (ferry start --role master ...) or wait for failover" };
const NO_SYNCTOOL: Absent = { code: "NO_ACTIVE_SYNCTOOL", says: "no active synctool answers", hint: "start one: ferry start --role synctool --node ID (ferry up starts one)" };
const NOT_RUNNING: Absent = { code: "NOT_FOUND", says: "the node is not running", hint: "start it first; ferry status lists the nodes" };
const NO_READER: Absent = { code: "COLLECTOR_UNAVAILABLE", says: "the collector cannot read" };

export interface Endpoint<Req = unknown, Kind extends ReplyKind = ReplyKind> {
  name: string;
  /** The subject, from the cluster's subjects and the endpoint's one argument (a node id) if it has one. */
  subject: (s: Subjects, arg: string) => string;
  /** What the argument names in documentation (`<node>`), or null for a cluster-wide subject. */
  arg: string | null;
  request: z.ZodType<Req, unknown>;
  reply: Kind;
  /** The JSON reply's body, where the table states it: call() refuses a reply that does not parse. */
  replySchema?: z.ZodType;
  /** What a caller gets when nobody answers (no responders, or no connection to the peer). */
  absent: Absent;
  /** The codes its error replies carry, besides MALFORMED_MESSAGE and INTERNAL, which any may. */
  errors: readonly ErrorCode[];
  /** Who answers, and what. */
  carries: string;
  /** A request body to try it with the nats CLI (`nats req SUBJECT BODY`), when one is safe. */
  example?: string;
}

const endpoint = <Req, Kind extends ReplyKind>(e: Endpoint<Req, Kind>): Endpoint<Req, Kind> => e;

export const ENDPOINTS = {
  sql: endpoint({
    name: "sql",
    subject: (s) => s.sql,
    arg: null,
    request: sqlRequest,
    reply: "json",
    absent: NO_MASTER,
    errors: ["FENCED", "SQL_ERROR", "REPO_UNAVAILABLE", "SYNC_REPLICAS_TIMEOUT", "BACKLOG_EXCEEDED", "USAGE"],
    carries:
      'SQL requests, answered by the active master: `{"sql", "params"?, "id"?}`; a write sent again with the same `id` is answered from the record of the master that ran it, or of any node that replicated it, not run twice',
    example: `'{"sql":"SELECT 1"}'`,
  }),
  nodeSql: endpoint({
    name: "sql (node)",
    subject: (s, node) => s.node(node).sql,
    arg: "<node>",
    request: sqlRequest,
    reply: "json",
    absent: { code: "NO_ACTIVE_MASTER", says: "the node does not serve SQL (not the master, or not yet)", hint: "read the master lease and address its holder" },
    errors: ["NOT_MASTER", "FENCED", "SQL_ERROR", "REPO_UNAVAILABLE", "SYNC_REPLICAS_TIMEOUT", "BACKLOG_EXCEEDED", "USAGE"],
    carries:
      'the same SQL requests addressed to the lease holder, with `"epoch"`: a node that is not the master of that epoch answers NOT_MASTER at once, so a client that follows the `master` lease never waits on a stale master',
    example: `'{"sql":"SELECT 1","epoch":1}'`,
  }),
  switchover: endpoint({
    name: "switchover",
    subject: (s) => s.switchover,
    arg: null,
    request: switchoverRequest,
    reply: "json",
    absent: NO_MASTER,
    errors: ["FENCED", "NOT_MASTER", "IN_PROGRESS", "TIMEOUT"],
    carries: "planned switchover requests, answered by the active master",
    example: `'{"to":"<node>"}'`,
  }),
  ping: endpoint({
    name: "ping",
    subject: (s, node) => s.ping(node),
    arg: "<node>",
    request: emptyRequest,
    reply: "json",
    replySchema: memberRecord,
    absent: NOT_RUNNING,
    errors: [],
    carries: "liveness, answered by every process with its status now (the heartbeat's JSON)",
    example: "'{}'",
  }),
  pull: endpoint({
    name: "pull",
    subject: (s, node) => s.node(node).pull,
    arg: "<node>",
    request: pullRequest,
    reply: "frame",
    absent: NO_MASTER,
    errors: ["FENCED", "STALE_EPOCH", "DIVERGED", "NEEDS_RESYNC", "SNAPSHOT_REQUIRED", "SCHEMA_MISMATCH"],
    carries: "replicas pulling batches from the master (binary frames); the same request published without a reply subject is a replica's acknowledgement after batches it took from `repl.push` (checked and recorded alike, not answered)",
  }),
  snapshot: endpoint({
    name: "snapshot",
    subject: (s, node) => s.node(node).snapshot,
    arg: "<node>",
    request: snapshotRequest,
    reply: "json+frame",
    absent: NO_MASTER,
    errors: ["NOT_MASTER", "NOT_FOUND", "TIMEOUT", "USAGE", "REPO_UNAVAILABLE"],
    carries: "snapshot sessions: resync of a replica, reads by collectors (a table read's chunks are frames)",
  }),
  changes: endpoint({
    name: "changes",
    subject: (s, node) => s.node(node).changes,
    arg: "<node>",
    request: changesRequest,
    reply: "frame",
    absent: NO_READER,
    errors: ["SNAPSHOT_REQUIRED"],
    carries: "a node's spooled batches for readers (collectors)",
  }),
  resync: endpoint({
    name: "resync",
    subject: (s, node) => s.node(node).resync,
    arg: "<node>",
    request: resyncRequest,
    reply: "json",
    absent: NOT_RUNNING,
    errors: ["NOT_MASTER"],
    carries: "start a resync of that node",
    example: "'{}'",
  }),
  control: endpoint({
    name: "control",
    subject: (s, node) => s.node(node).control,
    arg: "<node>",
    request: controlRequest,
    reply: "json",
    absent: NOT_RUNNING,
    errors: ["NOT_MASTER"],
    carries: "promote / promote-cancel / reach, used by watchdogs and switchover",
  }),
  compare: endpoint({
    name: "compare",
    subject: (s, node) => s.node(node).compare,
    arg: "<node>",
    request: compareRequest,
    reply: "json",
    absent: NOT_RUNNING,
    errors: ["IN_PROGRESS", "NOT_MASTER", "NOT_FOUND", "TIMEOUT", "DIVERGED", "REPO_UNAVAILABLE", "SQL_ERROR"],
    carries: "compare and repair (ferry compare, ferry repair): a consistent read at one LSN, chunk checksums, rows of a key range, repair of rows on a held replica",
  }),
  taskCreate: endpoint({
    name: "task create",
    subject: (s) => s.synctool.create,
    arg: null,
    request: taskCreateRequest,
    reply: "json",
    absent: NO_SYNCTOOL,
    errors: ["USAGE", "TASK_EXISTS", "NOT_FOUND", "DESTINATION_UNWRITABLE", "DESTINATION_NOT_EMPTY", "NO_ACTIVE_MASTER"],
    carries: "create a table sync task (ferry task create)",
  }),
  taskDelete: endpoint({
    name: "task delete",
    subject: (s) => s.synctool.delete,
    arg: null,
    request: taskDeleteRequest,
    reply: "json",
    absent: NO_SYNCTOOL,
    errors: ["NOT_FOUND", "IN_PROGRESS"],
    carries: "delete a table sync task (ferry task delete)",
  }),
  tasks: endpoint({
    name: "task status",
    subject: (s) => s.synctool.tasks,
    arg: null,
    request: emptyRequest,
    reply: "json",
    absent: NO_SYNCTOOL,
    errors: [],
    carries: "table sync tasks and their subtasks (ferry task status)",
    example: "'{}'",
  }),
  toolStatus: endpoint({
    name: "tool status",
    subject: (s) => s.synctool.status,
    arg: null,
    request: emptyRequest,
    reply: "json",
    absent: NO_SYNCTOOL,
    errors: [],
    carries: "the synctool's own state (ferry tool-status)",
    example: "'{}'",
  }),
  pack: endpoint({
    name: "pack",
    subject: (s, node) => s.collector(node).pack,
    arg: "<node>",
    request: packRequest,
    reply: "frame",
    absent: NO_READER,
    errors: ["COLLECTOR_UNAVAILABLE", "SNAPSHOT_REQUIRED", "NOT_FOUND", "TIMEOUT"],
    carries: "the synctool asking a collector for the next pack of a subtask (binary frames)",
  }),
};

/** A subject that is only published (no reply): who publishes, and what. */
export interface Published {
  name: string;
  subject: (s: Subjects) => string;
  watch: (s: Subjects) => string;
  /** Its JSON body (of a binary frame: the frame's header). */
  body: z.ZodType;
  carries: string;
}

export const PUBLISHED: Published[] = [
  { name: "heartbeat", subject: (s) => s.heartbeat("<role>", "<node>"), watch: (s) => s.heartbeatAll, body: memberRecord, carries: "each process's status as JSON, every second" },
  {
    name: "alert",
    subject: (s) => s.alert,
    watch: (s) => s.alert,
    body: alertMessage,
    carries: "every decision and fault as JSON (failover steps, backlog cap, fencing, repository down/up, resyncs)",
  },
  { name: "notify", subject: (s) => s.notify, watch: (s) => s.notify, body: notifyMessage, carries: "the master's announcements of new batches {node, epoch, lsn}" },
  {
    name: "push",
    subject: (s) => s.push,
    watch: (s) => s.push,
    body: pushHeader,
    carries:
      "a new batch of one part up to `replication.pushBytes`, sent with its data just before its announcement: a replica that holds everything before it spools it without a pull (binary frames: a pull reply's header with the master's node, then the batch)",
  },
  {
    name: "resync progress",
    subject: (s) => s.node("<node>").resyncProgress,
    watch: (s) => s.node("*").resyncProgress,
    body: resyncProgressMessage,
    carries: "resync progress",
  },
];

/** A KV bucket: its keys, each kind with the schema of its values (JSON), and what they hold. */
export interface Records {
  bucket: (cluster: string) => string;
  values: { keys: string; schema: z.ZodType }[];
  carries: string;
  watch: (bucket: string) => string;
}

export const RECORDS: Records[] = [
  {
    bucket: (c) => bucketNames(c).leases,
    values: [
      { keys: `${LEASE_KEY.master}, ${LEASE_KEY.watchdog}, ${LEASE_KEY.synctool}, ${LEASE_KEY.collector("<host>")}`, schema: leaseRecord },
      { keys: LEASE_KEY.failover, schema: storedFailoverState },
      { keys: LEASE_KEY.diverged("<node>"), schema: divergedRecord },
    ],
    carries:
      "leases ({node, epoch, instance, ...}), the failover count (key failover), and each replica continuous verification found different from the master (diverged.<node>: {node, master, lsn, at, rows, tables: [{table, rows, keys}]})",
    watch: (b) => `nats kv watch ${b}`,
  },
  {
    bucket: (c) => bucketNames(c).members,
    values: [{ keys: "<node>", schema: memberRecord }],
    carries: "each process's latest heartbeat, by node id",
    watch: (b) => `nats kv ls ${b}; nats kv get ${b} <node>`,
  },
  {
    bucket: (c) => bucketNames(c).tasks,
    values: [{ keys: "<db>.<table> (taskKey: other characters than letters, digits, _ and - as =HH)", schema: taskDef }],
    carries: "table sync tasks: what each syncs, how and where to (each subtask's progress is kept by the synctool and in the files)",
    watch: (b) => `nats kv watch ${b}`,
  },
];

/** An endpoint's subject in a cluster, for documentation (the argument as its placeholder). */
export function documentedSubject(cluster: string, e: Endpoint): string {
  return e.subject(subjects(cluster), e.arg ?? "");
}
