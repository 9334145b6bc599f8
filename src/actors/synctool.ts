/**
 * The synctool (`ferry start --role synctool`): owns the table tasks in the tasks bucket, splits
 * each into per-partition subtasks and runs one sync-task actor per subtask. One synctool is active
 * through the lease `synctool`; a standby takes over when it goes away and resumes every subtask
 * from the destination's files (and its own saved progress, if it was active before).
 *
 * While active it serves the task commands (create, delete, status, tool-status), watches the
 * tasks bucket (the one place tasks are defined), and follows the heartbeats of collectors and
 * nodes to choose a collector for each subtask: an active one whose replica has applied the
 * subtask's position, on a slave before the master, the least loaded first.
 */
import { isWrongSequence, listKeys, openWatch } from "../nats/buckets.js";
import { randomUUID } from "node:crypto";
import { isAbsolute, resolve } from "node:path";
import type { Subscription } from "@nats-io/transport-node";
import { createActor, fromPromise } from "xstate";
import type { Config } from "../config.js";
import { ClusterError, SyncError, UsageError } from "../errors.js";
import { inspectInto } from "../log.js";
import { syncTaskMachine, syncTaskState, type ChooseInput, type CollectorRef, type StepResult, type SyncTaskActor } from "../machines/sync-task.js";
import type { TaskCreateRequest } from "../nats/messages.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call, serve } from "../nats/rpc.js";
import { checkDestination } from "../storage/destination.js";
import { parseFormat } from "../storage/sink/index.js";
import { SinkEncoder } from "../storage/sink/encoder.js";
import { SyncProgress } from "../storage/sync-progress.js";
import type { TableColumns } from "../storage/repository/types.js";
import { startAgent, type AgentHandle, type RunningAgent } from "./agent.js";
import { HEARTBEAT_MS } from "./heartbeat.js";
import type { Runtime } from "./runtime.js";
import { MODE_NAMES, SubtaskIo } from "./sync-io.js";
import { decodeTask, LEASE_KEY, memberRecords, subscribeHeartbeats, taskKey, type MemberRecord, type TaskDef } from "../nats/records.js";

const STALE_MS = 3 * HEARTBEAT_MS;

export async function startSynctool(config: Config): Promise<RunningAgent> {
  return startAgent(config, "synctool", (h) => {
    const tool = new Synctool(h);
    return { leaseKey: LEASE_KEY.synctool, start: () => tool.start(), status: () => tool.status() };
  });
}

class Synctool {
  private progress: SyncProgress;
  private encoder = new SinkEncoder();
  private manager: Manager | null = null;
  /** Steps of the previous active period still running: the next one starts after them. */
  private settled: Promise<unknown> = Promise.resolve();

  constructor(private h: AgentHandle) {
    this.progress = new SyncProgress(h.level);
  }

  start(): () => void {
    const m = new Manager(this.h, this.progress, this.encoder);
    this.manager = m;
    const before = this.settled;
    void before.then(() => m.start()).catch((err) => this.h.rt.log.error({ err }, "synctool could not start its work"));
    return () => {
      m.stop();
      this.manager = null;
      this.settled = Promise.all([before, m.settled()]);
    };
  }

  status(): Record<string, unknown> {
    return this.manager?.summary() ?? { tasks: 0, subtasks: 0, packsInFlight: 0 };
  }
}

interface Subtask {
  part: number;
  io: SubtaskIo;
  actor: SyncTaskActor;
  /** The state last seen, to raise an alert once per REASSIGNING and FAILED. */
  last: string;
}

interface TaskRun {
  key: string;
  def: TaskDef;
  subtasks: Subtask[];
  completing: boolean;
}

/** What the synctool knows of the other processes, from their heartbeats. */
class ClusterView {
  private members = new Map<string, { hb: MemberRecord; at: number }>();
  private sub: Subscription | null = null;

  constructor(private rt: Runtime) {}

  async start(): Promise<void> {
    for (const hb of await memberRecords(this.rt.buckets.members)) {
      if (!this.members.has(hb.node)) this.members.set(hb.node, { hb, at: Number(hb.ts) || 0 });
    }
    this.sub = subscribeHeartbeats(this.rt.nc, this.rt.subj, (hb, at) => this.members.set(hb.node, { hb, at }));
  }

  stop(): void {
    this.sub?.unsubscribe();
  }

  get(node: string): MemberRecord | null {
    const e = this.members.get(node);
    return e && Date.now() - e.at < STALE_MS ? e.hb : null;
  }

  live(role?: string): MemberRecord[] {
    return [...this.members.values()].filter((e) => Date.now() - e.at < STALE_MS && (!role || e.hb.role === role)).map((e) => e.hb);
  }

  /** Every collector heard of, with whether it is up. */
  collectors(): MemberRecord[] {
    return [...this.members.values()]
      .filter((e) => e.hb.role === "collector")
      .map((e) => ({ node: e.hb.node, host: e.hb.host, state: e.hb.state, source: e.hb.source, up: Date.now() - e.at < STALE_MS }))
      .sort((a, b) => String(a.node).localeCompare(String(b.node)));
  }

  /** The collector for a subtask at `minLsn`: active, its replica current enough, a slave's before the master's, least loaded. */
  choose(minLsn: number, { exclude, why }: ChooseInput, load: Map<string, number>): CollectorRef {
    const candidates = this.live("collector")
      .filter((c) => c.state === "active" && c.source && !(exclude && c.node === exclude.node && c.instance === exclude.instance))
      .map((c) => ({ c, src: this.get(String(c.source)) }))
      .filter((x) => x.src && (x.src.role === "master" || x.src.role === "slave") && !x.src.needsResync && Number(x.src.appliedLsn ?? 0) >= minLsn)
      .sort(
        (a, b) =>
          Number(a.src!.state === "active") - Number(b.src!.state === "active") ||
          (load.get(a.c.node) ?? 0) - (load.get(b.c.node) ?? 0) ||
          String(a.c.node).localeCompare(String(b.c.node)),
      );
    if (candidates.length === 0) {
      throw new SyncError("NO_COLLECTOR", `no active collector whose replica has applied LSN ${minLsn}${exclude ? ` (${exclude.node} was given up: ${why})` : ""}`, {
        hint: "start a collector on a host with a current replica: ferry start --role collector --node ID --host HOST",
      });
    }
    return { node: String(candidates[0].c.node), instance: String(candidates[0].c.instance) };
  }
}

/** The synctool's work while it holds the lease. */
class Manager {
  private tasks = new Map<string, TaskRun>();
  private view: ClusterView;
  private subs: Subscription[] = [];
  private watcher: { stop(): void } | null = null;
  private sweep: NodeJS.Timeout | null = null;
  private stopped = false;
  private inflight = { n: 0 };
  private renamed = { n: 0 };
  private running = new Set<Promise<unknown>>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private h: AgentHandle,
    private progress: SyncProgress,
    private encoder: SinkEncoder,
  ) {
    this.view = new ClusterView(h.rt);
  }

  private get rt(): Runtime {
    return this.h.rt;
  }

  async start(): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      try {
        await this.view.start();
        break;
      } catch (err) {
        this.rt.log.warn({ err: String(err) }, "cannot read the members bucket yet; retrying");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    if (this.stopped) return this.view.stop();
    await this.loadTasks();
    if (this.stopped) return;
    const s = this.rt.subj.synctool;
    const { nc, log } = this.rt;
    this.subs.push(
      serve(nc, log, ENDPOINTS.taskCreate, s.create, (req) => this.create(req)),
      serve(nc, log, ENDPOINTS.taskDelete, s.delete, (req) => this.remove(req)),
      serve(nc, log, ENDPOINTS.tasks, s.tasks, () => ({ tasks: this.taskStatus() })),
      serve(nc, log, ENDPOINTS.toolStatus, s.status, () => this.toolStatus()),
    );
    this.sweep = setInterval(() => this.checkCollectors(), 500);
    void this.watch();
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.subs) s.unsubscribe();
    this.watcher?.stop();
    if (this.sweep) clearInterval(this.sweep);
    this.view.stop();
    for (const run of this.tasks.values()) this.stopRun(run);
    this.tasks.clear();
  }

  /** Resolves when the steps started while active have ended (a file being renamed, a save). */
  settled(): Promise<unknown> {
    return Promise.allSettled([...this.running]);
  }

  summary(): Record<string, unknown> {
    return { tasks: this.tasks.size, subtasks: [...this.tasks.values()].reduce((n, r) => n + r.subtasks.length, 0), packsInFlight: this.inflight.n };
  }

  // ---- tasks ------------------------------------------------------------------------------

  /** Follows the tasks bucket: a task put starts its subtasks, a delete stops them. */
  private async watch(): Promise<void> {
    while (!this.stopped) {
      try {
        const w = await openWatch(this.rt.buckets.tasks, {}, () => this.stopped);
        if (!w) return;
        this.watcher = w;
        for await (const e of w) {
          if (this.stopped) break;
          if (e.operation === "PUT") {
            const def = this.taskDef(e);
            if (def) await this.serial(() => this.ensure(e.key, def));
          } else await this.serial(() => this.drop(e.key));
        }
      } catch (err) {
        if (!this.stopped) this.rt.log.warn({ err: String(err) }, "tasks watch interrupted; retrying");
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * Starts the tasks already in the bucket before the commands are served, so that a synctool
   * taking over never answers `task status` with a task missing.
   */
  private async loadTasks(): Promise<void> {
    while (!this.stopped) {
      try {
        const kv = this.rt.buckets.tasks;
        for (const key of await listKeys(kv)) {
          const e = await kv.get(key);
          const def = e?.operation === "PUT" ? this.taskDef(e) : null;
          if (def) await this.serial(() => this.ensure(key, def));
        }
        return;
      } catch (err) {
        this.rt.log.warn({ err: String(err) }, "cannot read the tasks bucket yet; retrying");
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  private taskDef(e: { key: string; value: Uint8Array }): TaskDef | null {
    const def = decodeTask(e.value);
    if (!def) this.rt.log.warn({ key: e.key }, "task entry is not a task; ignored");
    return def;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => {});
    return next;
  }

  private async ensure(key: string, def: TaskDef): Promise<void> {
    const known = this.tasks.get(key);
    if (known?.def.id === def.id) return;
    if (known) await this.drop(key);
    const run: TaskRun = { key, def, subtasks: [], completing: false };
    this.tasks.set(key, run);
    const cfg = this.rt.config.sync;
    for (let part = 0; part < def.partitions && !this.stopped; part++) {
      const io = new SubtaskIo({ rt: this.rt, def, part, progress: this.progress, inflight: this.inflight, encoder: this.encoder, renamed: this.renamed, live: () => !this.stopped && this.h.clock.valid() });
      const { resumed, done } = await io.load();
      if (this.stopped || this.tasks.get(key) !== run) return;
      const logic = syncTaskMachine.provide({
        actors: {
          choose: fromPromise<CollectorRef, ChooseInput>(async ({ input }) => {
            const c = this.view.choose(io.requiredLsn(), input, this.load());
            this.rt.log.info({ task: key, part, assigned: c.node, minLsn: io.requiredLsn() }, `${io.label}: collector ${c.node}`);
            return c;
          }),
          step: fromPromise<StepResult, { collector: CollectorRef }>(({ input }) => this.track(io.step(input.collector))),
        },
      });
      const actor = createActor(logic, {
        id: `sync-task ${io.label}`,
        input: { task: `${def.db}.${def.table}`, part, resumed, done, rows: io.rows, pollMs: cfg.pollMs, retryMs: cfg.retryMs, reassignWaitMs: cfg.reassignWaitMs, maxErrors: cfg.maxErrors },
        inspect: inspectInto(this.rt.log),
      });
      const sub: Subtask = { part, io, actor, last: "" };
      run.subtasks.push(sub);
      actor.subscribe(() => this.changed(run, sub));
      actor.start();
    }
    this.rt.log.info({ task: key, id: def.id, mode: def.mode, partitions: def.partitions, dest: def.dest }, `task ${def.db}.${def.table} running (${def.partitions} subtasks)`);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.running.add(p);
    void p.finally(() => this.running.delete(p)).catch(() => {});
    return p;
  }

  private changed(run: TaskRun, sub: Subtask): void {
    const snap = sub.actor.getSnapshot();
    const state = syncTaskState(snap.value);
    if (state !== sub.last) {
      const e = snap.context.error;
      const data = { task: run.key, part: sub.part, code: e?.code };
      if (state === "REASSIGNING") {
        this.rt.alerts.raise("sync-subtask-reassigning", "warning", `sync of ${sub.io.label} looks for another collector: ${e?.message ?? ""}`, data);
      }
      if (state === "FAILED") this.rt.alerts.raise("sync-subtask-failed", "critical", `sync of ${sub.io.label} FAILED: ${e?.message ?? "unknown error"}`, data);
      sub.last = state;
    }
    const all = run.subtasks.length === run.def.partitions && run.subtasks.every((s) => s.actor.getSnapshot().value === "success");
    if (all && !run.completing) {
      run.completing = true;
      const rows = run.subtasks.reduce((n, s) => n + s.io.rows, 0);
      this.rt.alerts.raise("sync-task-complete", "info", `sync of ${run.def.db}.${run.def.table} complete: ${rows} rows in ${run.def.dest}`, { task: run.key, rows });
      void this.rt.buckets.tasks.delete(run.key).catch((err) => {
        run.completing = false;
        this.rt.log.warn({ err: String(err), task: run.key }, "completed task not removed; will retry");
      });
    }
  }

  private stopRun(run: TaskRun): void {
    for (const s of run.subtasks) {
      s.io.stopped = true;
      s.actor.stop();
      void this.track(s.io.drained()); // a file being written is part of this period's work
    }
  }

  private async drop(key: string): Promise<void> {
    const run = this.tasks.get(key);
    if (!run) return;
    this.tasks.delete(key);
    this.stopRun(run);
    await this.progress.drop(run.def.id);
    this.rt.log.info({ task: key, id: run.def.id }, `task ${run.def.db}.${run.def.table} removed; its files stay in ${run.def.dest}`);
  }

  /** Subtasks per collector, for spreading the load. */
  private load(): Map<string, number> {
    const m = new Map<string, number>();
    for (const run of this.tasks.values()) {
      for (const s of run.subtasks) {
        const c = s.actor.getSnapshot().context.collector;
        if (c) m.set(c.node, (m.get(c.node) ?? 0) + 1);
      }
    }
    return m;
  }

  /** A collector gone quiet, gone standby or restarted: its subtasks are reassigned. */
  private checkCollectors(): void {
    for (const run of this.tasks.values()) {
      for (const s of run.subtasks) {
        const snap = s.actor.getSnapshot();
        const c = snap.context.collector;
        if (!c || snap.status !== "active") continue;
        const hb = this.view.get(c.node);
        if (!hb || hb.state !== "active" || hb.instance !== c.instance) s.actor.send({ type: "COLLECTOR_DOWN", node: c.node, instance: c.instance });
      }
    }
  }

  // ---- commands ---------------------------------------------------------------------------

  private async create(req: TaskCreateRequest): Promise<{ task: TaskDef }> {
    const cfg = this.rt.config.sync;
    if (req.mode !== 0 && req.mode !== 1 && req.mode !== 2) {
      throw new UsageError(`mode ${req.mode} is not one of 0 (FULL), 1 (INCREMENTAL_BY_TIMESTAMP), 2 (FULL_AND_CONTINUOUS)`, "give -m 0, -m 1 or -m 2");
    }
    if (/[/\\\0]/.test(req.table) || req.table === "." || req.table === "..") throw new UsageError(`table name ${JSON.stringify(req.table)} cannot name a directory`);
    if (req.mode === 1 && req.ts === undefined) throw new UsageError("mode 1 (INCREMENTAL_BY_TIMESTAMP) needs the first timestamp", "give -ts N");
    const format = parseFormat(req.format ?? "parquet");
    const partitions = req.partitions ?? cfg.partitions;
    if (!Number.isInteger(partitions) || partitions < 1 || partitions > 256) throw new UsageError(`--partitions must be from 1 to 256, not ${partitions}`);
    if (!isAbsolute(req.dest)) throw new UsageError(`destination ${req.dest} is not an absolute path`);
    const key = taskKey(req.db, req.table);
    const existing = await this.rt.buckets.tasks.get(key);
    if (existing?.operation === "PUT") return this.again(req, decodeTask(existing.value), partitions, format);
    const table = await this.tableColumns(req.table);
    if (table.db !== undefined && req.db !== table.db) {
      throw new UsageError(`database ${req.db} does not exist: the repositories name theirs ${table.db}`, `give the table as ${table.db}.${req.table}`);
    }
    let tsColumn: string | undefined;
    if (req.mode === 1) {
      tsColumn = req.tsColumn ?? cfg.tsColumns[`${req.db}.${req.table}`] ?? cfg.tsColumns[req.table];
      if (!tsColumn) {
        throw new UsageError(`mode 1 needs the timestamp column of ${req.table}`, `give --ts-column COL, or set sync.tsColumns["${req.db}.${req.table}"] in the config`);
      }
      if (!table.columns.includes(tsColumn)) throw new UsageError(`table ${req.table} has no column ${tsColumn} (its columns: ${table.columns.join(", ")})`);
    }
    const dest = resolve(req.dest);
    await checkDestination(dest, req.table);
    const def: TaskDef = {
      id: randomUUID(),
      db: req.db,
      table: req.table,
      mode: req.mode,
      ts: req.mode === 1 ? req.ts : undefined,
      tsColumn,
      dest,
      partitions,
      columns: table.columns,
      key: table.key,
      kinds: table.kinds,
      format,
      createdAt: Date.now(),
    };
    try {
      await this.rt.buckets.tasks.create(key, JSON.stringify(def));
    } catch (err) {
      if (!isWrongSequence(err)) throw err;
      // The same request twice at once: the one that lost the race answers as a repeat does.
      const won = await this.rt.buckets.tasks.get(key);
      if (won?.operation !== "PUT") throw err;
      return this.again(req, decodeTask(won.value), partitions, format);
    }
    this.rt.log.info({ task: key, id: def.id, mode: def.mode, format, dest, partitions }, `task ${req.db}.${req.table} created: mode ${def.mode} ${MODE_NAMES[def.mode]}, ${format} files to ${dest}`);
    return { task: def };
  }

  /**
   * A create for a table that has a task: the same request again (a retry, a script run twice)
   * answers with the running task, so a repeat is harmless; another definition is refused.
   */
  private again(req: TaskCreateRequest, def: TaskDef | null, partitions: number, format: string): { task: TaskDef; already: true } {
    const same =
      def !== null &&
      def.mode === req.mode &&
      (req.mode !== 1 || def.ts === req.ts) &&
      (req.tsColumn === undefined || def.tsColumn === req.tsColumn) &&
      def.dest === resolve(req.dest) &&
      def.partitions === partitions &&
      (def.format ?? "jsonl") === format;
    if (!same) {
      const what = def ? ` (mode ${def.mode}, ${def.format ?? "jsonl"} files to ${def.dest})` : " (a record ferry cannot read)";
      throw new SyncError("TASK_EXISTS", `table ${req.db}.${req.table} already has another sync task${what}`, {
        hint: `see ferry task status; ferry task delete -t ${req.db}.${req.table} removes it`,
      });
    }
    return { task: def, already: true };
  }

  /** The table's columns, from the master (the newest schema) or else any live node. */
  private async tableColumns(table: string): Promise<TableColumns> {
    const nodes = this.view
      .live()
      .filter((m) => m.role === "master" || m.role === "slave")
      .sort((a, b) => Number(b.state === "active") - Number(a.state === "active"));
    if (nodes.length === 0) throw new SyncError("NO_COLLECTOR", "no node is running: the table cannot be checked", { hint: "start the cluster's nodes first" });
    let last: unknown = null;
    for (const n of nodes) {
      const subject = this.rt.subj.node(String(n.node)).snapshot;
      try {
        return (await call<{ table: TableColumns }>(this.rt.nc, ENDPOINTS.snapshot, subject, { op: "info", table }, { timeoutMs: this.rt.config.nats.requestTimeoutMs }))
          .table;
      } catch (err) {
        if ((err as { code?: string }).code === "NOT_FOUND") {
          throw new UsageError(`table main.${table} does not exist`, "give an existing table as main.TABLE");
        }
        last = err;
      }
    }
    throw new SyncError("NO_COLLECTOR", `no node answered about table ${table}: ${String((last as Error)?.message ?? last)}`);
  }

  /**
   * Deletes by compare-and-set on the task's revision, so of two deletes at once one deletes and
   * the other, like any repeat of a delete that happened, answers `already`. A table that never
   * had a task is NOT_FOUND (a misspelt name is not a repeat).
   */
  private async remove(req: { db: string; table: string }): Promise<{ deleted: string; dest?: string; already?: true }> {
    const key = taskKey(req.db, req.table);
    const name = `${req.db}.${req.table}`;
    const e = await this.rt.buckets.tasks.get(key);
    if (!e) throw new SyncError("NOT_FOUND", `table ${name} has no sync task`, { hint: "ferry task status lists the tasks" });
    if (e.operation !== "PUT") return { deleted: name, already: true };
    const def = decodeTask(e.value);
    try {
      await this.rt.buckets.tasks.delete(key, { previousSeq: e.revision });
    } catch (err) {
      if (!isWrongSequence(err)) throw err;
      const now = await this.rt.buckets.tasks.get(key);
      if (now?.operation === "PUT") throw new ClusterError("IN_PROGRESS", `the task of ${name} changed while it was being deleted`, { hint: "ask again" });
      return { deleted: name, dest: def?.dest, already: true };
    }
    await this.serial(() => this.drop(key));
    return { deleted: name, dest: def?.dest };
  }

  private taskStatus(): Record<string, unknown>[] {
    return [...this.tasks.values()]
      .sort((a, b) => a.key.localeCompare(b.key))
      .map((run) => {
        const subtasks = run.subtasks.map((s) => {
          const snap = s.actor.getSnapshot();
          const c = snap.context.collector ?? snap.context.lost;
          return {
            part: s.part,
            state: syncTaskState(snap.value),
            collector: c?.node ?? null,
            position: s.io.describe(),
            rows: s.io.rows,
            bytes: s.io.bytes,
            error: snap.context.error,
          };
        });
        const failed = subtasks.filter((s) => s.state === "FAILED").length;
        const states = [...new Set(subtasks.map((s) => s.state))];
        return {
          task: `${run.def.db}.${run.def.table}`,
          id: run.def.id,
          mode: run.def.mode,
          modeName: MODE_NAMES[run.def.mode],
          ts: run.def.ts,
          tsColumn: run.def.tsColumn,
          dest: run.def.dest,
          format: run.def.format ?? "jsonl",
          partitions: run.def.partitions,
          state: failed > 0 ? "FAILED" : states.length === 1 ? states[0] : "RUNNING",
          failed: failed > 0,
          failedSubtasks: failed,
          rows: subtasks.reduce((n, s) => n + s.rows, 0),
          bytes: subtasks.reduce((n, s) => n + s.bytes, 0),
          subtasks,
        };
      });
  }

  private toolStatus(): Record<string, unknown> {
    return {
      node: this.rt.node,
      state: this.h.state(),
      epoch: this.h.clock.epoch,
      cluster: this.rt.config.cluster,
      collectors: this.view.collectors(),
      synctools: this.view
        .live("synctool")
        .map((m) => ({ node: m.node, state: m.node === this.rt.node ? this.h.state() : m.state, host: m.host }))
        .sort((a, b) => String(a.node).localeCompare(String(b.node))),
      ...this.summary(),
    };
  }
}
