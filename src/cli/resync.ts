/** `ferry resync --node ID`: backup and restore of a replica from a snapshot of the master. */
import type { Command } from "commander";
import { ReplicationError, TimeoutError } from "../errors.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import { command, printJson, requiredNode, withClient, type OptionSpec } from "./common.js";
import { cliProgress } from "./draw.js";

export function resyncCommand(): Command {
  const options: OptionSpec[] = [
    ["--node <id>", "the replica to resync"],
    ["--timeout <ms>", "give up waiting after this long", "600000"],
    ["--json", "print the outcome as JSON"],
  ];
  return command("resync", "replace a replica's repository with a consistent snapshot of the master, then stream from there", options, async (opts) => {
    const node = requiredNode(opts, "the replica to resync");
    await withClient(opts, async (c) => {
      const s = c.subj.node(node);
      const progress = c.nc.subscribe(s.resyncProgress);
      try {
        await call(c.nc, ENDPOINTS.resync, s.resync, {}, { timeoutMs: c.config.nats.requestTimeoutMs, peer: `node ${node}` });
        const drawn = !opts.json && process.stderr.isTTY ? cliProgress() : null;
        const bar = drawn && new drawn.SingleBar({ format: `resync ${node} [{bar}] {percentage}% {value}/{total} rows`, stream: process.stderr }, drawn.Presets.shades_classic);
        const deadline = setTimeout(() => progress.unsubscribe(), Number(opts.timeout));
        let outcome: Record<string, unknown> | null = null;
        for await (const m of progress) {
          const p = m.json<Record<string, unknown>>();
          if (p.phase === "started") bar?.start(Number(p.totalRows) || 0, 0);
          if (p.phase === "copying") bar?.update(Number(p.rows));
          if (!bar && !opts.json && p.phase !== "copying") process.stderr.write(`resync ${node}: ${p.phase}${p.rows !== undefined ? ` ${p.rows}/${p.totalRows} rows` : ""}\n`);
          if (p.phase === "done" || p.phase === "failed") {
            outcome = p;
            break;
          }
        }
        clearTimeout(deadline);
        bar?.update(Number(outcome?.rows ?? 0));
        bar?.stop();
        if (!outcome) throw new TimeoutError(`resync of ${node} did not finish within ${opts.timeout} ms`);
        if (outcome.phase === "failed") throw new ReplicationError("NEEDS_RESYNC", `resync of ${node} failed: ${outcome.error}`);
        if (opts.json) printJson(outcome);
        else process.stdout.write(`${node} restored ${outcome.rows} rows from ${outcome.master} at LSN ${outcome.lsn}\n`);
      } finally {
        progress.unsubscribe();
      }
    });
  });
}
