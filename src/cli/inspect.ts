/** `ferry inspect`: every subject and bucket of the cluster, what it carries, and how to watch it. */
import type { Command } from "commander";
import { inventory } from "../nats/inventory.js";
import { redactUrl } from "../nats/connect.js";
import { command, configFrom, printJson } from "./common.js";
import { newTable } from "./draw.js";

export function inspectCommand(): Command {
  return command("inspect", "list every subject and KV bucket of the cluster, what it carries, and the nats command that shows it", [["--json", "print JSON"]], async (opts) => {
    const config = configFrom(opts);
    const items = inventory(config.cluster);
    const server = `--server ${redactUrl(config.nats.servers[0])}`;
    if (opts.json) return printJson({ cluster: config.cluster, server: redactUrl(config.nats.servers[0]), items });
    const t = newTable({ head: ["kind", "name", "carries", "watch with"], style: { head: [], border: [] }, colWidths: [9, 46, 48, 60], wordWrap: true });
    for (const i of items) t.push([i.kind, i.name, i.carries, i.watch.replace(/^nats /, `nats ${server} `)]);
    process.stdout.write(`${t.toString()}\n`);
  });
}
