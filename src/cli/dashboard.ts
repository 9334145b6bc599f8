/** `ferry dashboard [--port P] [--host H]`: a live web page of the cluster, until SIGINT/SIGTERM. */
import type { Command } from "commander";
import { startDashboard } from "../dashboard/server.js";
import { UsageError } from "../errors.js";
import { command, client, type OptionSpec } from "./common.js";
import { untilSignal } from "./start.js";

export function dashboardCommand(): Command {
  const options: OptionSpec[] = [
    ["--port <port>", "HTTP port (0 takes a free one)", "7070"],
    ["--host <addr>", "address to listen on (0.0.0.0 for every interface)", "127.0.0.1"],
  ];
  return command("dashboard", "serve a live web page of the cluster: nodes, leases, lag charts, sync tasks, alerts (until Ctrl-C)", options, async (opts) => {
    const port = Number(opts.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number, not "${opts.port}"`);
    // --host here is where the page listens, not the node.host of the config.
    const c = await client({ ...opts, host: undefined });
    try {
      const d = await startDashboard(c, { port, host: String(opts.host) });
      process.stdout.write(`ferry dashboard of cluster ${c.config.cluster}: ${d.url} (Ctrl-C stops it)\n`);
      await untilSignal();
      await d.close();
    } finally {
      await c.close().catch(() => {});
    }
  });
}
