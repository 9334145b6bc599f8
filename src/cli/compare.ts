/** `ferry compare` (are the replicas identical with the master?) and `ferry repair` (fix the rows that differ). */
import type { Command } from "commander";
import { compare, repair, type CompareReport } from "../client/compare.js";
import { command, printJson, requiredNode, withClient, type OptionSpec } from "./common.js";

const clip = (s: string | null) => (s === null ? "-" : s.length > 120 ? `${s.slice(0, 117)}...` : s);

function printReport(r: CompareReport): void {
  const out: string[] = [`compared with master ${r.master} at LSN ${r.lsn} (epoch ${r.epoch}) in ${r.ms} ms`];
  for (const t of r.tables) {
    out.push(`${t.table} on ${t.node}: ${t.chunks} chunks, ${t.rows} rows, ${t.differingChunks} chunks differ, ${t.diffs.length} rows differ (${t.ms} ms)`);
    for (const d of t.diffs) out.push(`  ${d.kind.padEnd(7)} key ${d.key}  master ${clip(d.master)}  ${t.node} ${clip(d.replica)}`);
  }
  for (const e of r.errors) out.push(`${e.node}: not compared: ${e.message} [${e.code}]`);
  process.stdout.write(out.join("\n") + "\n");
}

export function compareCommand(): Command {
  const options: OptionSpec[] = [
    ["--node <id>", "compare only this replica"],
    ["--table <name>", "compare only this table"],
    ["--json", "print the report as JSON"],
  ];
  return command("compare", "compare every replica (or one) with the master at one LSN while writes go on; exit 1 when any differs", options, (opts) =>
    withClient(opts, async (c) => {
      const r = await compare(c, { node: opts.node as string | undefined, table: opts.table as string | undefined });
      if (opts.json) printJson(r);
      else {
        printReport(r);
        process.stdout.write(r.identical ? "identical\n" : "replicas differ\n");
      }
      return r.identical ? 0 : 1;
    }),
  );
}

export function repairCommand(): Command {
  const options: OptionSpec[] = [
    ["--node <id>", "the replica to repair"],
    ["--table <name>", "repair only this table"],
    ["--json", "print the outcome as JSON"],
  ];
  return command("repair", "fix only the rows in which a replica differs from the master, keeping its applied position", options, async (opts) => {
    const node = requiredNode(opts, "the replica to repair");
    await withClient(opts, async (c) => {
      const r = await repair(c, { node, table: opts.table as string | undefined });
      if (opts.json) printJson(r);
      else {
        printReport(r);
        process.stdout.write(`${node}: ${r.changed} rows changed at LSN ${r.lsn}\n`);
      }
    });
  });
}
