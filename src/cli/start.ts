/** `ferry start --role ROLE --node ID`: one process until SIGINT/SIGTERM. */
import type { Command } from "commander";
import { ConfigError } from "../errors.js";
import { command, configFrom, type OptionSpec } from "./common.js";
import { REPOSITORY_URL_FORMS } from "../storage/repository/url.js";
import type { Config, Role } from "../config.js";

/**
 * What `ferry start` runs for each role; each returns something to stop on SIGINT/SIGTERM. Loaded
 * for the role given: a node process has no use for the sinks' Parquet libraries, nor a collector
 * for the master's services.
 */
const runners: Partial<Record<Role, () => Promise<(config: Config) => Promise<{ stop(): Promise<void> }>>>> = {
  master: async () => (await import("../actors/node.js")).startNode,
  slave: async () => (await import("../actors/node.js")).startNode,
  watchdog: async () => (await import("../actors/watchdog.js")).startWatchdog,
  collector: async () => (await import("../actors/collector.js")).startCollector,
  synctool: async () => (await import("../actors/synctool.js")).startSynctool,
};

export function startCommand(): Command {
  const options: OptionSpec[] = [
    ["--role <role>", "master | slave | watchdog | collector | synctool (env FERRY_NODE_ROLE)"],
    ["--node <id>", "this process's id, unique in the cluster (env FERRY_NODE_ID)"],
    ["--repo <url>", `the node's repository, ${REPOSITORY_URL_FORMS} (env FERRY_NODE_REPO)`],
    ["--data <dir>", "LevelDB directory for spool and progress (default data/<node>)"],
    ["--host <name>", "host label, used for collectors and conflict checks (default: this host)"],
    ["--source <node>", "collector: the node whose replica it reads (default: the node with the same --host)"],
    ["--designated <which>", "watchdog: primary | secondary; slave: standby (the designated standby)"],
    ["--metrics-port <port>", "serve Prometheus metrics on http://127.0.0.1:PORT/metrics"],
  ];
  return command("start", "run one ferry process (a node, or another role) until SIGINT/SIGTERM", options, async (opts) => {
    const config = configFrom(opts);
    const role = config.node.role;
    if (!role) throw new ConfigError("node.role", "required (give --role master|slave|watchdog|collector|synctool)");
    const runner = runners[role];
    if (!runner) throw new ConfigError("node.role", `role ${role} is not available in this version`);
    const proc = await (await runner())(config);
    await untilSignal();
    await proc.stop();
  });
}

/** Resolves on the first SIGINT or SIGTERM; a second one exits at once. */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let seen = false;
    const on = (sig: NodeJS.Signals) => {
      if (seen) process.exit(130);
      seen = true;
      resolve(sig);
    };
    process.on("SIGINT", on);
    process.on("SIGTERM", on);
  });
}
