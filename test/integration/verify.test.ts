/**
 * Continuous verification with real processes: rows changed straight in a slave's file are found by
 * the active watchdog's own compare within two intervals (an alert naming replica, table and keys),
 * the replica shows as diverged in `ferry status` and the watchdog's metrics, a failover passes it
 * over for the clean slave, and `ferry repair` clears the mark.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import Database from "better-sqlite3";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { freePort } from "../../src/nats/server.js";
import type { ClusterStatus } from "../../src/client/status.js";

const INTERVAL = 2000;
let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

test("a slave changed behind ferry's back: alert within two intervals, diverged in status and metrics, passed over at failover, cleared by repair", async () => {
  cl = await TestCluster.start({
    config: { compare: { intervalMs: INTERVAL, rowsPerSecond: 50_000, chunkRows: 200 }, failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 5 } },
  });
  const alerts: Record<string, any>[] = [];
  const c = await cl.client();
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  const alertOf = (kind: string, timeoutMs = 20_000) => cl.until(`alert ${kind}`, () => alerts.find((a) => a.kind === kind), { timeoutMs });

  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  // s1 would be the candidate on a tie: the designated standby.
  cl.startNode("s1", "slave", ["--designated", "standby"]);
  cl.startNode("s2", "slave");
  const metricsPort = await freePort();
  cl.startProcess("w1", "watchdog", ["--designated", "primary", "--metrics-port", String(metricsPort)]);
  for (const s of ["s1", "s2"]) await cl.waitMember(s, "streaming", (m) => m.replica === "streaming");
  await cl.waitMember("w1", "active", (m) => m.state === "active");
  await cl.sql(`CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO t SELECT i, 'row-' || i FROM n`);
  await cl.waitConverged("m1", ["s1", "s2"]);

  const changedAt = Date.now();
  const db = new Database(cl.repo("s1"), { timeout: 10_000 });
  try {
    db.exec(`UPDATE t SET v = 'changed' WHERE id = 17; DELETE FROM t WHERE id = 600`);
  } finally {
    db.close();
  }
  const found = await alertOf("replica-diverged", 4 * INTERVAL);
  const after = Date.parse(found.ts) - changedAt;
  assert.ok(after <= 2 * INTERVAL, `alerted ${after} ms after the change, within two intervals of ${INTERVAL} ms`);
  assert.is(found.data.node, "s1");
  assert.equal(found.data.tables, [{ table: "t", rows: 2, keys: ["[17]", "[600]"] }]);
  assert.match(found.message, /^s1 differs from master m1 at LSN \d+: t: 2 row\(s\), key\(s\) \[17\], \[600\]\./);

  const json = await cl.cli(["status", "--json"]);
  const member = (s: ClusterStatus, n: string) => s.members.find((m) => m.node === n)!;
  const st = JSON.parse(json.stdout) as ClusterStatus;
  assert.is((member(st, "s1").diverged as { rows: number }).rows, 2);
  assert.is(member(st, "s2").diverged, undefined);
  assert.not.ok(Object.keys(st.leases).some((k) => k.startsWith("diverged")), "the mark is not a lease");
  // The watchdog's heartbeat (once a second) carries its last compare: it may not have beaten since.
  const text = await cl.until("ferry status showing the watchdog's last compare", async () => {
    const out = (await cl.cli(["status"])).stdout;
    return /verifies every 2000 ms, last at LSN \d+/.test(out) ? out : null;
  });
  assert.match(text, /DIVERGED found at LSN \d+: t 2 rows \(ferry repair --node s1\)/);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /ferry_replica_diverged_rows\{role="watchdog",node="w1",replica="s1"\} 2/);
  assert.not.match(metrics, /replica="s2"/);

  // Stopped first, the master sends nothing more, so both slaves come to hold the same and the
  // choice between them is s1's (the designated standby) but for its mark.
  const m1 = cl.nodes.get("m1")!;
  m1.kill("SIGSTOP");
  await cl.until("both slaves holding the same", async () => {
    const s = await cl.status();
    return member(s, "s1").spooledLsn === member(s, "s2").spooledLsn;
  });
  m1.kill("SIGKILL");
  const m = await cl.waitNewMaster("m1");
  assert.is(m.node, "s2", "the diverged designated standby is passed over");
  assert.match((await alertOf("diverged-passed-over")).message, /failover candidate s2 chosen over diverged s1 \(t: 2 row\(s\), key\(s\) \[17\], \[600\], found at LSN \d+\)/);
  assert.is(alerts.filter((a) => a.kind === "replica-diverged" && a.data.node === "s2").length, 0, "the clean slave was never marked");

  await cl.waitMember("s1", "streaming from s2", (x) => x.replica === "streaming");
  // The watchdog's own compare may hold s1 for a moment: a repair then answers IN_PROGRESS and is asked again.
  let lastRepair = "";
  const repaired = await cl
    .until("ferry repair --node s1", async () => {
      const r = await cl.cli(["repair", "--node", "s1", "--json"]);
      lastRepair = `exit ${r.code}: ${r.stderr.trim()}`;
      return r.code === 0 ? r : null;
    })
    .catch((err: Error) => {
      throw new Error(`${err.message}; the last repair: ${lastRepair}`, { cause: err });
    });
  assert.is(JSON.parse(repaired.stdout).changed, 2);
  const cleared = await cl.status();
  assert.is(member(cleared, "s1").diverged, undefined, "repair clears the mark");
  await waitFor("the watchdog's metrics without the mark", async () => !/ferry_replica_diverged_rows\{/.test(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()));
  await cl.waitConverged("s2", ["s1"]);
});

test.run();
