/** `ferry failover reset` and `ferry switchover --to NODE`. */
import { Command } from "commander";
import { asFerryError, ConfigError } from "../errors.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import { readFailoverState, writeFailoverState } from "../nats/records.js";
import { command, printJson, withClient, type OptionSpec } from "./common.js";

export function failoverCommand(): Command {
  const failover = new Command("failover").description("automatic failover");
  const reset = command("reset", "re-enable automatic failover after failover.maxAutomatic was reached (clears the failover count)", [["--json", "print JSON"]], (opts) =>
    withClient(opts, async (c) => {
      const kv = (await c.buckets()).leases;
      const before = await readFailoverState(kv);
      const after = { history: [], enabled: true, resetAt: Date.now() };
      await writeFailoverState(kv, after);
      if (opts.json) printJson({ before, after });
      else process.stdout.write(`automatic failover re-enabled (${before.history.length} earlier failover(s) cleared)\n`);
    }),
  );
  return failover.addCommand(reset);
}

const BETWEEN_MASTERS = new Set(["NO_ACTIVE_MASTER", "FENCED"]);

export function switchoverCommand(): Command {
  const options: OptionSpec[] = [
    ["--to <node>", "the replica that becomes the master"],
    ["--timeout <ms>", "give up (and keep the current master) after this long", "10000"],
    ["--json", "print JSON"],
  ];
  return command("switchover", "planned switchover: the master stops writes, the target catches up exactly, the lease passes to it", options, async (opts) => {
    if (!opts.to) throw new ConfigError("--to", "required: the node that becomes the master");
    const timeoutMs = Number(opts.timeout);
    const out = await withClient(opts, async (c) => {
      const body = { to: String(opts.to), timeoutMs };
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        try {
          return await call<{ from: string; to: string; lsn: number; epoch: number; ms: number }>(c.nc, ENDPOINTS.switchover, c.subj.switchover, body, { timeoutMs: timeoutMs + 2000 });
        } catch (err) {
          // Between two masters (a switchover or failover just ran) nobody answers for a moment:
          // ask again, so a repeated request meets the new master ("already the master").
          if (!BETWEEN_MASTERS.has(asFerryError(err).code) || Date.now() >= deadline) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    });
    if (opts.json) printJson(out);
    else process.stdout.write(`switched over from ${out.from} to ${out.to} at LSN ${out.lsn} in ${out.ms} ms (epoch ${out.epoch})\n`);
  });
}
