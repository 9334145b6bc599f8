/**
 * Operator tools: Prometheus metrics on every process, `ferry inspect`, `ferry status --watch`,
 * and human-readable logs.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup, FERRY } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { freePort } from "../../src/nats/server.js";
import { inventory } from "../../src/nats/inventory.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
const value = (text: string, re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);

test("every process serves Prometheus metrics: LSNs, lag, backlog per replica, lease holder, failovers, alerts, process defaults", async () => {
  cl = await TestCluster.start();
  const [pm, ps, pw] = [await freePort(), await freePort(), await freePort()];
  cl.startNode("m1", "master", ["--metrics-port", String(pm)]);
  await cl.waitMaster("m1");
  cl.startNode("s1", "slave", ["--metrics-port", String(ps)]);
  cl.startProcess("w1", "watchdog", ["--metrics-port", String(pw)]);
  await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming");
  await cl.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'x')");
  await cl.waitConverged("m1", ["s1"]);

  const m = await waitFor("master metrics with its replica", async () => {
    const t = await scrape(pm);
    return /ferry_replica_acked_lsn\{role="master",node="m1",replica="s1"\} [1-9]/.test(t) ? t : null;
  });
  assert.match(m, /ferry_up\{role="master",node="m1"\} 1/);
  assert.match(m, /ferry_state\{role="master",node="m1",state="active"\} 1/);
  assert.match(m, /ferry_replica_backlog_bytes\{role="master",node="m1",replica="s1"\} \d+/);
  assert.match(m, /ferry_alerts_total\{role="master",node="m1",kind="became-master",severity="info"\} 1/);
  assert.match(m, /process_resident_memory_bytes \d+/);
  assert.match(m, /nodejs_eventloop_lag_seconds \d/);
  const before = value(m, /ferry_applied_lsn\{role="master",node="m1"\} (\d+)/);
  await cl.sql("INSERT INTO t VALUES (2, 'y')");
  const s = await waitFor("the slave's applied LSN moving past the master's earlier one", async () => {
    const t = await scrape(ps);
    return value(t, /ferry_applied_lsn\{role="slave",node="s1"\} (\d+)/) > before ? t : null;
  });
  assert.match(s, /ferry_lag_ms\{role="slave",node="s1"\} \d+/);
  assert.match(s, /ferry_master_lease_holder\{role="slave",node="s1",holder="m1"\} 1/);
  const w = await waitFor("watchdog metrics", async () => {
    const t = await scrape(pw);
    return /ferry_failover_automatic/.test(t) ? t : null;
  });
  assert.match(w, /ferry_failovers\{role="watchdog",node="w1"\} 0/);
  assert.match(w, /ferry_failover_automatic\{role="watchdog",node="w1"\} 1/);
  assert.is((await fetch(`http://127.0.0.1:${pm}/other`)).status, 404);
});

test("ferry inspect lists every subject and bucket with a nats command; the README's table names each", async () => {
  cl = await TestCluster.start();
  const r = await cl.cli(["inspect", "--json"]);
  assert.is(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.is(out.cluster, cl.name);
  assert.ok(out.items.length >= 20);
  for (const i of out.items) assert.ok(i.name.startsWith(`ferry.${cl.name}.`) || i.name.startsWith(`ferry_${cl.name}_`), i.name);
  assert.ok(out.items.every((i: { watch: string }) => i.watch.startsWith("nats ")));
  const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
  for (const i of inventory("<cluster>")) assert.ok(readme.includes(i.name), `README lists ${i.name}`);
});

test("ferry status --watch redraws until interrupted; pretty logs on request", async () => {
  cl = await TestCluster.start();
  cl.startNode("m1", "master", [], { FERRY_LOG_PRETTY: "true" });
  await cl.waitMaster("m1");
  const watch = spawn(process.execPath, [FERRY, "status", "--watch", "200", "--config", cl.configFile], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  watch.stdout.on("data", (d) => (out += d));
  await waitFor("three redraws", () => (out.match(/master lease m1/g) ?? []).length >= 3);
  watch.kill("SIGINT");
  const code = await new Promise((r) => watch.once("exit", r));
  assert.is(code, 0);
  const log = cl.nodes.get("m1")!.log();
  assert.match(log, /master m1 .*is the master with epoch/);
  assert.not.match(log.split("\n")[0], /^\{/, "not JSON");
});

test.run();
