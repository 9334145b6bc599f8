/**
 * The client library (`import { connect } from "ferry"`): the README's example runs as written
 * against a real cluster, and a client writing through a kill -9 of the master sees the failover
 * as an event and a short pause, with every acknowledged write present exactly once.
 */
import { createHook } from "node:async_hooks";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { openClient } from "../../src/client/client.js";
import { runSql } from "../../src/client/sql.js";
import { connect, FerryError, type Ferry } from "../../src/client/index.js";
import { loadConfig } from "../../src/config.js";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

const ROOT = resolve(new URL("../..", import.meta.url).pathname);
let cl: TestCluster;
let db: Ferry | null = null;

test.after.each(async () => {
  await db?.close().catch(() => {});
  db = null;
  await cl?.close();
  await cleanup();
});

/** The README's example, between its markers. */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const m = /<!-- library-example -->\s*```js\n([\s\S]*?)```\s*<!-- \/library-example -->/.exec(readme);
  assert.ok(m, "the README has the library example between its markers");
  return m![1];
}

/** Runs a module inside the package (so `import ... from "ferry"` resolves to it), to completion. */
function runModule(source: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const dir = mkdtempSync(join(ROOT, ".example-"));
  const file = join(dir, "example.mjs");
  writeFileSync(file, source);
  return new Promise((res) => {
    const p = spawn(process.execPath, [file], { cwd: dir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), 60_000);
    p.once("exit", (code) => {
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
      res({ code, stdout, stderr });
    });
  });
}

test("the README's example runs as written: a table, a transaction, typed rows, an SQL error to switch on", async () => {
  cl = await TestCluster.masterAndSlaves({ slaves: ["s1"] });
  const out = await runModule(readmeExample(), { NATS_URL: cl.nats.url, FERRY_CLUSTER: cl.name });
  assert.is(out.code, 0, out.stderr);
  assert.match(out.stdout, /^second \(read on m1 at LSN \d+\)$/m);
  assert.match(out.stdout, /^refused: .*no such table/m);
  const dump = await cl.waitConverged("m1", ["s1"]);
  assert.match(dump, /notes\|.*'first'/);
  assert.match(dump, /notes\|.*'second'/);
});

test("a statement's errors are typed, and a transaction is all or nothing", async () => {
  cl = await TestCluster.masterAndSlaves({ slaves: ["s1"] });
  db = await connect({ servers: cl.nats.url, cluster: cl.name, waitMs: 5000 });
  await db.sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  const err = await db.transaction(["INSERT INTO t VALUES (1, 'a')", "INSERT INTO t VALUES (2, NULL)"]).then(
    () => null,
    (e) => e,
  );
  assert.instance(err, FerryError);
  assert.is(err.code, "SQL_ERROR");
  const r = await db.sql<{ n: number }>("SELECT count(*) AS n FROM t");
  assert.equal(r.rows, [{ n: 0 }], "the first insert rolled back with the second");
  const both = await db.transaction(["INSERT INTO t VALUES (1, 'a')", "INSERT INTO t VALUES (2, 'b');"]);
  assert.equal(both.map((x) => x.changes), [1, 1]);
  const rows = await db.sql<{ id: number; v: string }>("SELECT id, v FROM t WHERE id > ? ORDER BY id", [0]);
  assert.equal(rows.rows, [{ id: 1, v: "a" }, { id: 2, v: "b" }]);
  assert.equal(rows.columns, ["id", "v"]);
});

test("kill -9 of the master while a client writes: a failover event, writes resume on the new master, each acknowledged write present once", async () => {
  cl = await TestCluster.start({ config: { lease: { ttlMs: 2000, safetyMarginMs: 600 }, failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 5 }, replication: { syncReplicas: 1 } } });
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  for (const s of ["s1", "s2"]) cl.startNode(s, "slave");
  for (const s of ["s1", "s2"]) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
  cl.startWatchdog("w1", "primary");
  await cl.waitMember("w1", "active", (m) => m.state === "active");
  db = await connect({ servers: cl.nats.url, cluster: cl.name, waitMs: 30_000 });
  const moves: { from: string | undefined; to: string | undefined }[] = [];
  db.on("failover", ({ from, to }) => moves.push({ from: from?.node, to: to?.node }));
  await db.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
  const acked: { id: number; node: string }[] = [];
  let running = true;
  const writer = (async () => {
    for (let id = 0; running; id++) {
      const r = await db!.sql("INSERT INTO w(id, who) VALUES (?, 'lib')", [id]);
      acked.push({ id, node: r.node });
    }
  })();
  await waitFor("writes before the kill", () => acked.length > 30);
  cl.nodes.get("m1")!.kill("SIGKILL");
  await waitFor("writes on a new master", () => acked.filter((a) => a.node !== "m1").length > 30, { timeoutMs: 30_000 });
  running = false;
  await writer;
  const to = acked.at(-1)!.node;
  assert.ok(moves.some((m) => m.from === "m1" && m.to === to), JSON.stringify(moves));
  const dump = await cl.waitConverged(to, [to === "s1" ? "s2" : "s1"]);
  const ids = dump.split("\n").filter((l) => l.startsWith("w|")).map((l) => Number(l.split("|")[1]));
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  for (const a of acked) assert.ok(ids.includes(a.id), `acknowledged write ${a.id} present`);
});

test("a client closed while its master follower is still opening leaves no NATS timer running (30 rounds)", async () => {
  cl = await TestCluster.masterAndSlaves({ slaves: [] });
  // A 1 ms deadline: reading the lease gives up at once, the statement goes to the cluster's
  // subject, and the follower goes on opening its watch, which close() may meet half made, as a
  // `ferry sql` did now and then (nats.js starts a watch's heartbeat timer before it subscribes).
  const { config } = loadConfig({ env: {}, file: null, flags: { "nats.servers": [cl.nats.url], cluster: cl.name, "nats.requestTimeoutMs": 1 } });
  const made = new Map<number, { resource: { _destroyed?: boolean }; stack: string }>();
  const hook = createHook({
    init(id, type, _trigger, resource) {
      if (type !== "Timeout") return;
      const stack = new Error().stack ?? "";
      if (stack.includes("@nats-io")) made.set(id, { resource: resource as { _destroyed?: boolean }, stack });
    },
    destroy: (id) => made.delete(id),
  });
  hook.enable();
  try {
    for (let i = 0; i < 30; i++) {
      const c = await openClient(config);
      await runSql(c, "SELECT 1", undefined, 5000, 5000);
      await c.close();
    }
  } finally {
    hook.disable();
  }
  const left = () => [...made.values()].filter((t) => t.resource._destroyed !== true);
  // Timers of a closing connection end within a moment; a leaked one repeats for good.
  await waitFor("the closed clients' timers to end", () => left().length === 0, { timeoutMs: 5000 }).catch(() => {});
  assert.equal(left().map((t) => t.stack.split("\n").find((l) => l.includes("@nats-io"))), [], "no timer of the closed clients is still running");
});

test.run();
