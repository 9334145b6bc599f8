/**
 * `ferry task create|delete|status` and `ferry tool-status`: requests to the active synctool, the
 * seed's synctool_helper commands.
 */
import { resolve } from "node:path";
import { Command } from "commander";
import type { Client } from "../client/client.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import { synctoolRequest } from "../client/synctool.js";
import { UsageError } from "../errors.js";
import { parseFormat } from "../storage/sink/format.js";
import { SINK_FORMATS } from "../storage/sink/types.js";
import { command, printJson, withClient, type OptionSpec } from "./common.js";
import { decodeLease, LEASE_KEY } from "../nats/records.js";
import { newTable, cliProgress } from "./draw.js";
import type { SingleBar } from "cli-progress";

/** commander takes one-letter short flags; the seed's `-ts N` is rewritten to `--ts N`. */
export function normaliseArgv(argv: string[]): string[] {
  return argv.map((a) => (a === "-ts" ? "--ts" : a.startsWith("-ts=") ? `--ts=${a.slice(4)}` : a));
}

function parseTable(value: unknown): { db: string; table: string } {
  const s = String(value ?? "");
  const dot = s.indexOf(".");
  if (!value || dot <= 0 || dot === s.length - 1) throw new UsageError(`-t must be DB.TABLE (SQLite: main.TABLE; PostgreSQL: public.TABLE), not "${s}"`);
  return { db: s.slice(0, dot), table: s.slice(dot + 1) };
}

function integer(name: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new UsageError(`${name} must be a whole number, not "${value}"`);
  return n;
}

interface SubtaskStatus {
  part: number;
  state: string;
  collector: string | null;
  position: string;
  rows: number;
  bytes: number;
  error: { code: string; message: string } | null;
}
interface TaskStatus {
  task: string;
  mode: number;
  modeName: string;
  dest: string;
  format: string;
  ts?: number;
  tsColumn?: string;
  state: string;
  failed: boolean;
  failedSubtasks: number;
  rows: number;
  bytes: number;
  subtasks: SubtaskStatus[];
}

export function renderTasks(tasks: TaskStatus[]): string {
  if (tasks.length === 0) return "no sync tasks\n";
  const out: string[] = [];
  for (const t of tasks) {
    const since = t.mode === 1 ? ` from ${t.tsColumn} >= ${t.ts}` : "";
    out.push(`${t.task}: mode ${t.mode} ${t.modeName}${since} -> ${t.dest} (${t.format})`);
    const table = newTable({ head: ["part", "state", "collector", "position", "rows", "bytes", "error"], style: { head: [], border: [] } });
    for (const s of t.subtasks) {
      table.push([String(s.part), s.state, s.collector ?? "-", s.position, String(s.rows), String(s.bytes), s.error && s.state !== "RUNNING" ? `${s.error.code}: ${s.error.message}`.slice(0, 80) : ""]);
    }
    out.push(table.toString());
    out.push(
      `table ${t.task}: ${t.state}, ${t.rows} rows, ${t.bytes} bytes of ${t.format}; ` +
        (t.failed ? `${t.failedSubtasks} of ${t.subtasks.length} subtasks FAILED (delete and create the task again, or restart the synctool to resume)` : `no subtask FAILED`),
    );
  }
  return out.join("\n") + "\n";
}

export function taskCommand(): Command {
  const task = new Command("task").description("online-to-offline sync tasks (requests to the active synctool)");
  return task.addCommand(createCommand()).addCommand(deleteCommand()).addCommand(statusCommand());
}

function createCommand(): Command {
  const options: OptionSpec[] = [
    ["-t, --table <db.table>", "the table, DB.TABLE (SQLite: main.TABLE; PostgreSQL: SCHEMA.TABLE, e.g. public.TABLE)"],
    ["-m, --mode <mode>", "0 FULL | 1 INCREMENTAL_BY_TIMESTAMP | 2 FULL_AND_CONTINUOUS"],
    ["--ts <n>", "mode 1: rows whose timestamp column is at least N (also -ts N)"],
    ["--ts-column <col>", "mode 1: the timestamp column (default: sync.tsColumns.<table> in the config)"],
    ["-d, --dest <dir>", "destination directory; files go to DIR/<table>/part=<p>/"],
    ["--format <format>", `file format: ${SINK_FORMATS.join(" | ")}`, "parquet"],
    ["--partitions <n>", "subtasks (default: sync.partitions, 4)"],
    ["--json", "print the created task as JSON"],
  ];
  return command("create", "sync a table to a directory: mode 0 FULL, 1 INCREMENTAL_BY_TIMESTAMP, 2 FULL_AND_CONTINUOUS", options, async (o) => {
    const { db, table } = parseTable(o.table);
    if (o.mode === undefined || !/^[0-2]$/.test(String(o.mode))) {
      throw new UsageError(`-m must be 0 (FULL), 1 (INCREMENTAL_BY_TIMESTAMP) or 2 (FULL_AND_CONTINUOUS), not ${o.mode === undefined ? "missing" : `"${o.mode}"`}`);
    }
    const mode = Number(o.mode);
    const ts = integer("-ts", o.ts);
    if (mode === 1 && ts === undefined) throw new UsageError("mode 1 (INCREMENTAL_BY_TIMESTAMP) needs -ts N: rows whose timestamp is at least N");
    if (!o.dest) throw new UsageError("-d DIR is required: the destination directory");
    const partitions = integer("--partitions", o.partitions);
    const format = parseFormat(o.format);
    const body = { db, table, mode, ts, tsColumn: o.tsColumn, dest: resolve(String(o.dest)), partitions, format };
    const r = await withClient(o, (c) =>
      synctoolRequest<{ task: { id: string; dest: string; partitions: number; tsColumn?: string }; already?: boolean }>(c, ENDPOINTS.taskCreate, body),
    );
    if (o.json) return printJson({ ...r.task, already: r.already === true });
    const what = r.already ? `task ${db}.${table} already exists as asked (nothing changed)` : `created task ${db}.${table}`;
    process.stdout.write(`${what}: mode ${mode}, ${r.task.partitions} subtasks, ${format} files to ${r.task.dest}/${table}\n`);
  });
}

function deleteCommand(): Command {
  const options: OptionSpec[] = [
    ["-t, --table <db.table>", "the table, DB.TABLE"],
    ["--json", "print JSON"],
  ];
  return command("delete", "delete a table's task: its subtasks stop, the files already written stay", options, async (o) => {
    const { db, table } = parseTable(o.table);
    const r = await withClient(o, (c) => synctoolRequest<{ deleted: string; dest?: string; already?: boolean }>(c, ENDPOINTS.taskDelete, { db, table }));
    if (o.json) return printJson({ ...r, already: r.already === true });
    if (r.already) return void process.stdout.write(`task ${r.deleted} was already deleted or completed (nothing changed)\n`);
    process.stdout.write(`deleted task ${r.deleted}; its files stay in ${r.dest}\n`);
  });
}

function statusCommand(): Command {
  const options: OptionSpec[] = [
    ["--json", "print JSON"],
    ["--follow", "progress bars until every mode-0 task is done (Ctrl-C stops following)"],
  ];
  return command("status", "each subtask's state, collector, position and rows; then whether any subtask of the table FAILED", options, async (o) => {
    if (o.follow) return withClient(o, follow);
    const r = await withClient(o, (c) => synctoolRequest<{ tasks: TaskStatus[] }>(c, ENDPOINTS.tasks, {}));
    if (o.json) return printJson(r);
    process.stdout.write(renderTasks(r.tasks));
  });
}

/** The number of rows of a table on the active master (the `info` request every node answers). */
async function tableRows(c: Client, table: string): Promise<number | null> {
  const lease = await (await c.buckets()).leases.get(LEASE_KEY.master);
  const holder = lease?.operation === "PUT" ? (decodeLease(lease.value)?.node ?? null) : null;
  if (!holder) return null;
  const subject = c.subj.node(holder).snapshot;
  const r = await call<{ table: { rows: number } }>(c.nc, ENDPOINTS.snapshot, subject, { op: "info", table }, { timeoutMs: c.config.nats.requestTimeoutMs }).catch(() => null);
  return r ? r.table.rows : null;
}

/**
 * `ferry task status --follow`: a progress bar per task (rows written against the table's rows for a
 * mode-0 sync), refreshed every second until no mode-0 task is left running.
 */
async function follow(c: Client): Promise<void> {
  const { MultiBar, Presets } = cliProgress();
  const bars = new MultiBar(
    { format: "{task} [{bar}] {percentage}% {value}/{total} rows  {state}", stream: process.stderr, hideCursor: true, clearOnComplete: false },
    Presets.shades_classic,
  );
  const shown = new Map<string, SingleBar>();
  const started = Date.now();
  let stop = false;
  process.once("SIGINT", () => (stop = true));
  try {
    while (!stop) {
      const { tasks } = await synctoolRequest<{ tasks: TaskStatus[] }>(c, ENDPOINTS.tasks, {});
      for (const t of tasks) {
        let bar = shown.get(t.task);
        if (!bar) {
          const total = t.mode === 0 ? ((await tableRows(c, t.task.split(".").slice(1).join("."))) ?? 0) : 0;
          bar = bars.create(Math.max(total, t.rows, 1), 0, { task: t.task, state: t.state });
          shown.set(t.task, bar);
        }
        if (t.rows > bar.getTotal()) bar.setTotal(t.rows);
        bar.update(t.rows, { state: t.failed ? `${t.state} (${t.failedSubtasks} FAILED)` : t.state });
      }
      // A finished mode-0 task is removed by the synctool: its bar is complete.
      for (const [name, bar] of shown) if (!tasks.some((t) => t.task === name)) bar.update(bar.getTotal(), { state: "SUCCESS (task removed)" });
      if (!tasks.some((t) => t.mode === 0) && shown.size > 0 && tasks.every((t) => t.mode !== 0)) break;
      // A task created a moment ago may not have reached the synctool yet: wait a little for it.
      if (tasks.length === 0 && shown.size === 0 && Date.now() - started > 3000) {
        process.stderr.write("no sync tasks\n");
        break;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  } finally {
    bars.stop();
  }
}

/** The synctool's answer on its status subject. */
interface ToolStatus {
  node: string;
  state: string;
  epoch: number;
  tasks: number;
  subtasks: number;
  packsInFlight: number;
  synctools: { node: string; state: string; host: string }[];
  collectors: Record<string, unknown>[];
}

export function toolStatusCommand(): Command {
  return command("tool-status", "the synctool's own state: active or standby, the collectors it sees, tasks, packs in flight", [["--json", "print JSON"]], async (o) => {
    const r = await withClient(o, (c) => synctoolRequest<ToolStatus>(c, ENDPOINTS.toolStatus, {}));
    if (o.json) return printJson(r);
    const lines = [
      `synctool ${r.node}: ${r.state} (epoch ${r.epoch}); ${r.tasks} tasks, ${r.subtasks} subtasks, ${r.packsInFlight} packs in flight`,
      ...r.synctools.map((s) => `  synctool ${s.node} on ${s.host}: ${s.state}`),
    ];
    const t = newTable({ head: ["collector", "host", "state", "source", "up"], style: { head: [], border: [] } });
    for (const c of r.collectors) t.push([String(c.node), String(c.host), String(c.state), String(c.source ?? "-"), c.up ? "yes" : "DOWN"]);
    process.stdout.write(lines.join("\n") + "\n" + (r.collectors.length ? t.toString() + "\n" : "no collectors\n"));
  });
}
