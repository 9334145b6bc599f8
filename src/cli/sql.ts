/** `ferry sql "SQL"`: a statement or a ;-separated script, as one transaction on the active master. */
import type { Command } from "commander";
import { runSql } from "../client/sql.js";
import { UsageError } from "../errors.js";
import { command, printJson, withClient, type OptionSpec } from "./common.js";
import { newTable } from "./draw.js";

export function sqlCommand(): Command {
  const options: OptionSpec[] = [
    ["--params <json>", "parameters for a single statement: a JSON array or object"],
    ["--wait <ms>", "retry while no master answers, up to this long", "0"],
    ["--timeout <ms>", "how long to wait for the master's answer (a long transaction needs more)", "60000"],
    ["--json", "print the reply as JSON"],
  ];
  return command("sql", "run SQL on the active master (a ;-separated script runs as one transaction)", options, async (opts, sql: string) => {
    let params: unknown;
    if (opts.params !== undefined) {
      try {
        params = JSON.parse(String(opts.params));
      } catch {
        throw new UsageError("--params is not JSON", `give a JSON array or object, e.g. --params '[1, "a"]'`);
      }
      if (typeof params !== "object" || params === null) throw new UsageError("--params must be a JSON array or object");
    }
    const wait = Number(opts.wait);
    if (!Number.isFinite(wait) || wait < 0) throw new UsageError("--wait must be a number of milliseconds");
    const timeout = Number(opts.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError("--timeout must be a number of milliseconds");
    const reply = await withClient(opts, (c) => runSql(c, sql, params, wait, timeout));
    if (opts.json) return printJson(reply);
    for (const r of reply.results) {
      if (r.columns) {
        const t = newTable({ head: r.columns, style: { head: [], border: [] } });
        for (const row of r.rows ?? []) t.push(row.map(show));
        process.stdout.write(`${t.toString()}\n(${r.rows?.length ?? 0} rows)\n`);
      } else process.stdout.write(`${r.changes} row${r.changes === 1 ? "" : "s"} changed\n`);
    }
    process.stderr.write(`committed on ${reply.node} at LSN ${reply.lsn}, epoch ${reply.epoch}\n`);
  }).argument("<sql>", "the statement or script");
}

function show(v: unknown): string {
  if (v === null) return "NULL";
  if (typeof v === "object" && v && "$blob" in v) return `x'${(v as { $blob: string }).$blob}'`;
  return String(v);
}
