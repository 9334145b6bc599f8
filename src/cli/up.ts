/**
 * `ferry up`: a whole cluster on one machine on the embedded defaults (see src/local/cluster.ts):
 * its own nats-server with JetStream, a master and N slaves on SQLite repositories under DIR (or,
 * with --postgres, each on a PostgreSQL server of its own), two watchdogs, a collector per node and
 * a synctool. Ctrl-C stops everything.
 */
import { join } from "node:path";
import type { Command } from "commander";
import { UsageError } from "../errors.js";
import { LocalCluster } from "../local/cluster.js";
import { localCommand, type OptionSpec } from "./common.js";
import { untilSignal } from "./start.js";

export function upCommand(): Command {
  const options: OptionSpec[] = [
    ["--dir <dir>", "where repositories, spools, logs and the NATS store go", "data"],
    ["--slaves <n>", "number of slaves", "2"],
    ["--port <port>", "NATS client port (default 14222, or a free one)"],
    ["--cluster <name>", "cluster name", "ferry"],
    ["--postgres", "each node on a PostgreSQL server of its own (initdb into DIR/<node>/pg, a free port), instead of SQLite files"],
  ];
  return localCommand("up", "run a local cluster on the embedded defaults: nats-server, a master and slaves, two watchdogs, a collector per node and a synctool (Ctrl-C stops it)", options, async (o) => {
    const slaves = Number(o.slaves);
    if (!Number.isInteger(slaves) || slaves < 0 || slaves > 9) throw new UsageError("--slaves must be a whole number from 0 to 9");
    const say = (line: string) => void process.stdout.write(`${line}\n`);
    const c = await LocalCluster.start({ dir: String(o.dir), cluster: String(o.cluster), slaves, port: o.port ? Number(o.port) : undefined, restart: true, say, postgres: o.postgres === true });
    const db = o.postgres ? "public" : "main";
    say(
      [
        `ferry cluster "${o.cluster}" is up`,
        `  nats-server  ${c.nats.url} (pid ${c.nats.pid}, JetStream store ${c.nats.dir})`,
        ...[...c.pg].map(([id, s]) => `  postgres     ${id}: ${c.member(id).repo} (pid ${s.pid}, data ${s.dir}/data)`),
        ...c.describe(),
        `  config       ${c.configFile} (ferry commands in this directory use it)`,
        ``,
        `try:  npx ferry sql "CREATE TABLE notes(id ${o.postgres ? "bigserial" : "INTEGER"} PRIMARY KEY, body TEXT)"`,
        `      npx ferry sql "INSERT INTO notes(body) VALUES ('hello')"`,
        `      npx ferry status`,
        `      npx ferry task create -t ${db}.notes -m 2 -d ${join(c.opts.dir, "offline")}   (then: npx ferry task status)`,
        `      nats --server ${c.nats.url} sub 'ferry.${o.cluster}.>'`,
        `Ctrl-C stops everything.`,
      ].join("\n"),
    );
    await untilSignal();
    say("stopping...");
    await c.stop();
    say("stopped");
  });
}
