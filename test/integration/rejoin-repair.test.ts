/**
 * Rejoin by repair, not by reload: an old master that comes back holding batches nobody received
 * drops them, says which (LSNs and keys), and repairs only the rows they touched from the new
 * master; it ends identical, having changed a handful of rows where a resync ships the table.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

async function rejoinByRepair(postgres: boolean) {
  // No pushes: batches pushed to a paused slave wait in its socket and are taken when it resumes,
  // from a master it still follows; the writes below must reach no one.
  cl = await TestCluster.masterAndSlaves({ postgres, config: { failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 5 }, replication: { pushBytes: 0 } } });
  const alerts: Record<string, any>[] = [];
  const c = await cl.client();
  c.nc.subscribe(c.subj.alert, { callback: (_e, m) => void alerts.push(m.json()) });
  cl.startWatchdog("w1", "primary");
  await cl.waitMember("w1", "active", (m) => m.state === "active");
  const ROWS = 500;
  await cl.sql(
    postgres
      ? `CREATE TABLE w(id int PRIMARY KEY, who text); INSERT INTO w SELECT g, 'replicated' FROM generate_series(1, ${ROWS}) g`
      : `CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ${ROWS}) INSERT INTO w SELECT i, 'replicated' FROM n`,
  );
  await cl.waitConverged("m1", ["s1", "s2"]);
  cl.nodes.get("s1")!.kill("SIGSTOP");
  cl.nodes.get("s2")!.kill("SIGSTOP");
  await cl.sql(`INSERT INTO w(id, who) VALUES (1001, 'lost with m1')`);
  await cl.sql(`UPDATE w SET who = 'changed on m1 only' WHERE id = 7`);
  await cl.sql(`DELETE FROM w WHERE id = 8`);
  cl.nodes.get("m1")!.kill("SIGKILL");
  cl.nodes.get("s1")!.kill("SIGCONT");
  cl.nodes.get("s2")!.kill("SIGCONT");
  const m = await cl.waitNewMaster("m1", 20_000);
  await cl.sql(`INSERT INTO w(id, who) VALUES (2001, 'after failover')`);
  cl.startNode("m1", "master");

  const dropped = await waitFor("alert rejoin-by-repair", () => alerts.find((a) => a.kind === "rejoin-by-repair"), { timeoutMs: 20_000 });
  assert.match(dropped.message, /m1 discarded LSNs \d+\.\.\d+, never replicated, and repairs the \d+ rows they touched/);
  assert.equal([...dropped.data.keys.w].sort(), ["[1001]", "[7]", "[8]"], "the keys the discarded changes touched");
  assert.ok(dropped.data.from <= dropped.data.to);
  const rejoined = await cl.until("alert rejoined", () => alerts.find((a) => a.kind === "rejoined"), { timeoutMs: 30_000 });
  // Three rows of w, and the write keys of the three discarded writes: far from the table a resync ships.
  assert.ok(rejoined.data.rows >= 3 && rejoined.data.rows <= 6, `rows changed by the repair: ${rejoined.data.rows}`);
  assert.ok(rejoined.data.rows * 50 < ROWS, `a resync would ship all ${ROWS + 1} rows of w`);
  assert.not.ok(alerts.some((a) => a.kind === "resynced" && a.node === "m1"), "no full resync");

  await cl.sql(`INSERT INTO w(id, who) VALUES (2002, 'after rejoin')`);
  const dump = await cl.waitConverged(m.node, ["m1", "s1", "s2"].filter((n) => n !== m.node));
  assert.not.match(dump, /lost with m1|changed on m1 only/);
  assert.equal((await cl.sql(`SELECT who FROM w WHERE id IN (7, 8) ORDER BY id`)).results[0].rows, [["replicated"], ["replicated"]]);
  const member = await cl.member("m1");
  assert.is(member?.needsResync ?? false, false);
  const clean = await cl.cli(["compare"]);
  assert.is(clean.code, 0, clean.stdout + clean.stderr);
}

test("the new master dies while the old one repairs its rows: the other slave is promoted, never the repairing node, and the repair ends against it", async () => {
  cl = await TestCluster.masterAndSlaves({ config: { failover: { waitMs: 0, prerequisites: 7, maxAutomatic: 5 }, replication: { pushBytes: 0 } } });
  const alerts: Record<string, any>[] = [];
  let newMaster: string | null = null;
  let killed: string | null = null;
  const c = await cl.client();
  c.nc.subscribe(c.subj.alert, {
    callback: (_e, msg) => {
      const a = msg.json<Record<string, any>>();
      alerts.push(a);
      // At once: the repair that follows this alert needs the new master, which dies.
      if (a.kind === "rejoin-by-repair" && killed === null && newMaster !== null) {
        killed = newMaster;
        cl.nodes.get(killed)!.kill("SIGKILL");
      }
    },
  });
  cl.startWatchdog("w1", "primary");
  await cl.waitMember("w1", "active", (m) => m.state === "active");
  await cl.sql(`CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT); INSERT INTO w VALUES (7, 'replicated'), (8, 'replicated')`);
  await cl.waitConverged("m1", ["s1", "s2"]);
  cl.nodes.get("s1")!.kill("SIGSTOP");
  cl.nodes.get("s2")!.kill("SIGSTOP");
  await cl.sql(`UPDATE w SET who = 'changed on m1 only' WHERE id = 7`);
  cl.nodes.get("m1")!.kill("SIGKILL");
  cl.nodes.get("s1")!.kill("SIGCONT");
  cl.nodes.get("s2")!.kill("SIGCONT");
  const first = await cl.waitNewMaster("m1", 20_000);
  newMaster = first.node;
  await cl.sql(`INSERT INTO w(id, who) VALUES (2001, 'after failover')`);
  cl.startNode("m1", "master");
  await waitFor("the new master killed during the repair", () => killed);
  assert.is(killed, first.node);
  const other = first.node === "s1" ? "s2" : "s1";
  const promoted = await waitFor("the second failover", () => alerts.filter((a) => a.kind === "promoted")[1], { timeoutMs: 30_000 });
  assert.is(promoted.data.candidate, other, "the node repairing its rows is passed over");
  const rejoined = await waitFor("alert rejoined", () => alerts.find((a) => a.kind === "rejoined" && a.node === "m1"), { timeoutMs: 40_000 });
  assert.ok(rejoined.data.rows >= 1);
  cl.startNode(first.node, "slave");
  await cl.sql(`INSERT INTO w(id, who) VALUES (2002, 'after rejoin')`);
  const dump = await cl.waitConverged(other, ["m1", first.node], 60_000);
  assert.not.match(dump, /changed on m1 only/);
  assert.not.ok(alerts.some((a) => a.kind === "promoted" && a.data.candidate === "m1"), "m1 was never promoted");
});

test("an old master with unreplicated batches rejoins by repairing the rows they touched, and ends identical", () => rejoinByRepair(false));
test("PostgreSQL: an old master with unreplicated batches rejoins by repair", () => rejoinByRepair(true));

test.run();
