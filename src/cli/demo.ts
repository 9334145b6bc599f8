/**
 * `ferry demo`: a guided tour on the embedded defaults that ends by itself. It starts a local
 * cluster, writes through ferry and through an outside program, kills the master, shows the
 * watchdog's decision and the failover time, brings the old master back as a slave, syncs a table
 * to a directory, checks that every replica and the offline files match, and says PASS or FAIL.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import type { Client } from "../client/client.js";
import { readStatus } from "../client/status.js";
import { FERRY_BIN, LocalCluster } from "../local/cluster.js";
import { ENDPOINTS } from "../nats/protocol.js";
import { call } from "../nats/rpc.js";
import { openRepository } from "../storage/repository/index.js";
import { newWriteGate, setAccepting } from "../storage/repository/write-gate.js";
import { UsageError } from "../errors.js";
import { client, localCommand, type OptionSpec } from "./common.js";
import { runSql } from "../client/sql.js";
import { renderStatus } from "./status.js";

/** Short timings, so the tour takes about a minute. */
const DEMO_CONFIG = {
  lease: { ttlMs: 2000, safetyMarginMs: 600 },
  nats: { requestTimeoutMs: 2000 },
  replication: { heartbeatMs: 250, pollMs: 500, syncReplicas: 1, syncTimeoutMs: 2000 },
  failover: { waitMs: 1000, prerequisites: 7, maxAutomatic: 5 },
  sync: { pollMs: 100, retryMs: 200 },
};

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export function demoCommand(): Command {
  const options: OptionSpec[] = [
    ["--dir <dir>", "where the demo cluster lives (default: a temporary directory, removed at the end)"],
    ["--keep", "keep the directory (repositories, logs, offline files) at the end"],
    ["--rows <n>", "rows written by each writer", "500"],
    ["--postgres", "run the tour on PostgreSQL servers (one per node, started and stopped by the tour)"],
  ];
  return localCommand("demo", "a guided tour: replication, a master killed and failed over, the old master back as a slave, an offline sync; ends with PASS or FAIL", options, async (o) => {
    const rows = Number(o.rows);
    if (!Number.isInteger(rows) || rows < 1 || rows > 1_000_000) throw new UsageError("--rows must be a whole number from 1 to 1000000");
    // After the flags are checked: a refused run leaves no directory behind.
    const dir = resolve((o.dir as string | undefined) ?? mkdtempSync(join(tmpdir(), "ferry-demo-")));
    const say = (s = "") => void process.stdout.write(`${s}\n`);
    const checks: Check[] = [];
    const check = (name: string, ok: boolean, detail: string) => {
      checks.push({ name, ok, detail });
      say(`   ${ok ? "PASS" : "FAIL"}  ${name}: ${detail}`);
    };
    const started = Date.now();
    let cluster: LocalCluster | null = null;
    let c: Client | null = null;
    try {
      say(`1. A local cluster in ${dir}: nats-server, master dm1, slaves dm2 (designated standby) and dm3,`);
      say(`   watchdogs w1 (primary) and w2, a collector per node and a synctool.`);
      cluster = await LocalCluster.start({ dir, cluster: "demo", slaves: 2, restart: false, config: DEMO_CONFIG, postgres: o.postgres === true, say: (l) => say(`   ${l}`) });
      c = await client({ config: cluster.configFile, logLevel: "silent" });
      await until("the master, the slaves and the watchdog", c, (s) => has(s, "dm1", "active") && has(s, "dm2", "standby", "streaming") && has(s, "dm3", "standby", "streaming") && has(s, "w1", "active"));

      say(`\n2. Writes: ${rows} rows through ferry's SQL service, ${rows} by an outside program on dm1's repository.`);
      say(`   $ ferry sql "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT, qty INTEGER, price REAL, at TEXT)"`);
      await runSql(c, "CREATE TABLE orders(id INTEGER PRIMARY KEY, item TEXT, qty INTEGER, price REAL, at TEXT)", undefined, 10_000);
      await runSql(c, `WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows}) INSERT INTO orders SELECT i, 'item-' || i, i % 7, i * 1.25, CURRENT_TIMESTAMP FROM n`, undefined, 10_000);
      await outsideWrite(cluster.member("dm1").repo!, rows);
      const converged = await identical(cluster, ["dm1", "dm2", "dm3"], 30_000);
      check("the slaves caught up", converged, converged ? `dm2 and dm3 hold the same ${2 * rows} rows as dm1` : "they differ from dm1");
      say(indent(renderStatus(await readStatus(c))));

      say(`\n3. kill -9 of the master dm1, while a client keeps writing (synchronous replication: 1 replica).`);
      const alerts: { kind: string; message: string; node: string }[] = [];
      const sub = c.nc.subscribe(c.subj.alert, {
        callback: (_e, m) => {
          const a = m.json<{ kind: string; message: string; node: string; role: string }>();
          alerts.push(a);
          if (a.role === "watchdog") say(`   alert from ${a.node}: ${a.message}`);
        },
      });
      const writer = new Writer(c);
      await writer.until(() => writer.acked.length >= 20);
      const killedAt = Date.now();
      await cluster.kill("dm1", "SIGKILL");
      // A request in flight to dm1 when it died waits out its timeout (its outcome is unknown);
      // a fresh client shows when writes are accepted again.
      const probe = new Writer(c, 900_000);
      await probe.until(() => probe.acked.length > 0, 30_000);
      await probe.stop();
      const first = probe.acked[0];
      const failoverMs = first.at - killedAt;
      check("a slave took over", first.node !== "dm1", `${first.node} accepted its first write ${failoverMs} ms after the kill (epoch ${first.epoch})`);

      say(`\n4. dm1 comes back: it sees a higher epoch and rejoins as a slave.`);
      cluster.launch(cluster.member("dm1"));
      const back = await until("dm1 as a replica", c, (s) => has(s, "dm1", "standby"));
      const dm1 = back.members.find((m) => m.node === "dm1")!;
      if (dm1.needsResync) {
        say(`   dm1 holds changes the new master never received (never acknowledged): ${String((dm1.error as { message?: string } | null)?.message ?? "")}`);
        say(`   $ ferry resync --node dm1`);
        await call(c.nc, ENDPOINTS.resync, c.subj.node("dm1").resync, {}, { timeoutMs: 5000, peer: "dm1" });
      }
      await until("dm1 streaming from the new master", c, (s) => has(s, "dm1", "standby", "streaming"));
      await writer.stop();
      sub.unsubscribe();
      const all = await identical(cluster, ["dm1", "dm2", "dm3"], 30_000, first.node);
      check("all replicas identical", all, all ? "dm1, dm2 and dm3 hold the same rows" : "they differ");
      const table = await tableIds(cluster.member(first.node).repo!);
      const acked = [...writer.acked, ...probe.acked];
      const lost = acked.filter((w) => !table.has(w.id));
      check("no acknowledged write lost", lost.length === 0, `${acked.length} writes acknowledged, ${lost.length} missing`);

      say(`\n5. An offline copy of the table: a mode-0 (full) sync task, split in 4 partitions.`);
      const dest = join(dir, "offline");
      const qualified = `${await databaseOf(cluster.member(first.node).repo!, "orders")}.orders`;
      say(`   $ ferry task create -t ${qualified} -m 0 -d ${dest} --format jsonl`);
      const created = await ferry(["task", "create", "-t", qualified, "-m", "0", "-d", dest, "--format", "jsonl", "--config", cluster.configFile]);
      if (created.code !== 0) say(indent(created.out));
      const syncStart = Date.now();
      await untilTaskGone(cluster.configFile, 60_000);
      const syncMs = Date.now() - syncStart;
      const offline = offlineIds(dest, "orders");
      const same = offline.ids.length === table.size && offline.ids.every((id) => table.has(id)) && new Set(offline.ids).size === offline.ids.length;
      check("the offline files hold exactly the table's rows", same, `${offline.ids.length} rows in ${offline.files} files, the table has ${table.size} (done in ${syncMs} ms)`);

      const failed = checks.filter((x) => !x.ok);
      say(`\nSummary (${((Date.now() - started) / 1000).toFixed(1)} s):`);
      say(`   rows written       ${2 * rows + acked.length}`);
      say(`   failover time      ${failoverMs} ms (kill -9 of the master to the first write accepted by ${first.node}; lease ${DEMO_CONFIG.lease.ttlMs} ms, wait ${DEMO_CONFIG.failover.waitMs} ms)`);
      say(`   watchdog alerts    ${alerts.filter((a) => a.node.startsWith("w")).map((a) => a.kind).join(", ")}`);
      say(`   offline sync       ${offline.ids.length} rows in ${syncMs} ms`);
      say(failed.length === 0 ? `\nPASS: every check passed.` : `\nFAIL: ${failed.map((x) => x.name).join("; ")}`);
      return failed.length === 0 ? 0 : 1;
    } finally {
      await c?.close().catch(() => {});
      await cluster?.stop().catch(() => {});
      if (o.keep) say(`kept ${dir}`);
      else if (!o.dir) rmSync(dir, { recursive: true, force: true });
    }
  });
}

type Status = Awaited<ReturnType<typeof readStatus>>;

function has(s: Status, node: string, state: string, replica?: string): boolean {
  const m = s.members.find((x) => x.node === node);
  return !!m && m.up === true && m.state === state && (replica === undefined || m.replica === replica);
}

async function until(what: string, c: Client, pred: (s: Status) => boolean, timeoutMs = 60_000): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await readStatus(c).catch(() => null);
    if (s && pred(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * An outside program: its own connection to the master's repository, not ferry's SQL service
 * (the repository's SQL runner, opened here with a gate that never closes).
 */
async function outsideWrite(url: string, rows: number): Promise<void> {
  const repo = await openRepository(url);
  const gate = newWriteGate(new SharedArrayBuffer(8));
  Atomics.store(new BigInt64Array(gate.deadline), 0, BigInt(Number.MAX_SAFE_INTEGER));
  setAccepting(gate, true);
  const runner = repo.openSqlRunner(gate, { busyTimeoutMs: 5000 });
  try {
    const values = Array.from({ length: rows }, (_, k) => `(${100_001 + k}, 'outside-${k + 1}', ${(k + 1) % 5}, ${(k + 1) / 4}, '${new Date().toISOString()}')`);
    await runner.execute(`INSERT INTO orders(id, item, qty, price, at) VALUES ${values.join(",")}`, undefined);
  } finally {
    await runner.close();
    await repo.close();
  }
}

/** The database name a table is given under in DB.TABLE (the repository says: main, public). */
async function databaseOf(url: string, table: string): Promise<string> {
  const repo = await openRepository(url);
  try {
    return (await repo.tableColumns(table))?.db ?? "main";
  } finally {
    await repo.close();
  }
}

async function dumpOf(url: string): Promise<string> {
  const repo = await openRepository(url);
  try {
    return await repo.dump();
  } finally {
    await repo.close();
  }
}

async function identical(cluster: LocalCluster, nodes: string[], timeoutMs: number, reference = nodes[0]): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const want = await dumpOf(cluster.member(reference).repo!);
    const dumps = await Promise.all(nodes.map((n) => dumpOf(cluster.member(n).repo!)));
    if (dumps.every((d) => d === want)) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function tableIds(url: string): Promise<Set<number>> {
  const repo = await openRepository(url);
  const reader = await repo.openTableReader({ table: "orders" });
  const ids = new Set<number>();
  try {
    for (let chunk = await reader.next(1 << 20); chunk; chunk = await reader.next(1 << 20)) {
      for (const line of chunk.text.split("\n")) if (line) ids.add(Number((JSON.parse(line) as { id: number }).id));
    }
    return ids;
  } finally {
    await reader.close();
    await repo.close();
  }
}

/** The ids in the snapshot files of a mode-0 sync. */
function offlineIds(dest: string, table: string): { ids: number[]; files: number } {
  const ids: number[] = [];
  let files = 0;
  const root = join(dest, table);
  if (!existsSync(root)) return { ids, files };
  for (const part of readdirSync(root)) {
    for (const f of readdirSync(join(root, part)).filter((n) => n.endsWith(".jsonl"))) {
      files++;
      for (const line of readFileSync(join(root, part, f), "utf8").split("\n")) if (line) ids.push((JSON.parse(line) as { id: number }).id);
    }
  }
  return { ids, files };
}

async function untilTaskGone(configFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await ferry(["task", "status", "--json", "--config", configFile]);
    if (r.code === 0 && !r.out.includes('"orders"')) return;
    if (Date.now() > deadline) throw new Error("the sync task did not finish in time");
    await new Promise((res) => setTimeout(res, 300));
  }
}

/** Runs a ferry command as the user would. */
function ferry(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [FERRY_BIN, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("exit", (code) => res({ code, out }));
  });
}

const indent = (text: string) => text.trimEnd().replace(/^/gm, "   ");

/** A client writing unique rows until stopped, recording each acknowledgement. */
class Writer {
  acked: { id: number; node: string; epoch: number; at: number }[] = [];
  private running = true;
  private done: Promise<void>;
  constructor(c: Client, firstId = 500_000) {
    let id = firstId;
    this.done = (async () => {
      while (this.running) {
        const n = id++;
        try {
          const r = await runSql(c, `INSERT INTO orders(id, item, qty, price, at) VALUES (${n}, 'live', 1, 1.0, CURRENT_TIMESTAMP)`, undefined, 20_000);
          this.acked.push({ id: n, node: r.node, epoch: r.epoch, at: Date.now() });
        } catch {
          // not acknowledged: it may or may not exist, and the checks only count acknowledged writes
        }
      }
    })();
  }
  async until(pred: () => boolean, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error("the writer made no progress");
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }
}
