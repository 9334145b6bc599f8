/**
 * pgbench as the outside writer on a PostgreSQL master (its own DDL and a 200,000-row load, then
 * four concurrent clients) beside ferry sql writes: every replica ends identical to the master.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { idsIn, startWriter } from "../helpers/workload.js";
import { findPgBin } from "../../src/local/postgres.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

/** pgbench against a node's database; resolves with its output, rejects when it fails. */
function pgbench(node: string, args: string[]): Promise<string> {
  const u = new URL(cl.repoUrl(node));
  const proc = spawn(join(findPgBin(), "pgbench"), [...args, "-h", u.hostname, "-p", u.port, "-U", u.username, u.pathname.slice(1)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout.on("data", (d) => (out += d));
  proc.stderr.on("data", (d) => (out += d));
  cl.closing(async () => void proc.kill("SIGKILL"));
  return new Promise((res, rej) => proc.on("exit", (code) => (code === 0 ? res(out) : rej(new Error(`pgbench ${args.join(" ")} exited ${code}: ${out.slice(-500)}`)))));
}

test("pgbench -i, then pgbench -c 4 -j 2 -T 20 beside ferry sql writes: every replica ends identical to the master", async () => {
  // The production lease: a 200,000-row transaction on a busy 2-core machine must not fence the master.
  cl = await TestCluster.masterAndSlaves({ config: { lease: { ttlMs: 3000, safetyMarginMs: 1000 } }, postgres: true });
  await pgbench("m1", ["-i", "-s", "2", "-q"]);
  // pgbench -i is one 200,000-row transaction: replicated before the concurrent part begins.
  await cl.waitConverged("m1", ["s1", "s2"], 120_000);
  await cl.sql("CREATE TABLE w(id bigint PRIMARY KEY, who text)", undefined, 30_000);
  const w = startWriter(cl, { who: "ferry" });
  const bench = await pgbench("m1", ["-c", "4", "-j", "2", "-T", "20", "-n"]);
  await w.stop();
  const dump = await cl.waitConverged("m1", ["s1", "s2"], 120_000);
  const tx = Number(/number of transactions actually processed: (\d+)/.exec(bench)?.[1] ?? 0);
  assert.ok(tx > 100, `pgbench ran ${tx} transactions`);
  assert.is(dump.split("\n").filter((l) => l.startsWith("pgbench_history|")).length, tx, "every pgbench transaction's history row, once");
  assert.is(dump.split("\n").filter((l) => l.startsWith("pgbench_accounts|")).length, 200_000);
  const ids = idsIn(dump);
  assert.ok(w.acked().length > 20, `ferry sql wrote ${w.acked().length} rows meanwhile`);
  for (const r of w.acked()) assert.ok(ids.includes(r.id), `acknowledged row ${r.id} present`);
});

test.run();
