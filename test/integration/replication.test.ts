/**
 * Master -> slave replication with real processes: ferry SQL and an outside writer, exact types,
 * whole transactions only, and convergence after kill -9 of either side.
 */
import { test } from "uvu";
import * as assert from "uvu/assert";
import Database from "better-sqlite3";
import { TestCluster } from "../helpers/cluster.js";
import { cleanup } from "../helpers/procs.js";
import { waitFor } from "../helpers/wait.js";
import { idsIn, startWriter } from "../helpers/workload.js";
import { ClusterError } from "../../src/errors.js";
import { errorReply } from "../../src/nats/codec.js";

let cl: TestCluster;

test.after.each(async () => {
  await cl?.close();
  await cleanup();
});

async function threeNodes(config?: Record<string, unknown>) {
  return (cl = await TestCluster.masterAndSlaves({ config }));
}

const SCHEMA = `
CREATE TABLE accounts(id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
CREATE TABLE events(id INTEGER PRIMARY KEY, kind TEXT, payload BLOB, amount REAL);
CREATE TABLE tags(name TEXT PRIMARY KEY, weight REAL, note) WITHOUT ROWID`;

test("10,000 row changes over three tables, half through ferry sql and half by an outside writer: every slave ends identical", async () => {
  await threeNodes();
  await cl.sql(SCHEMA);
  // Half: ferry sql, as scripts of 50 statements (each script one transaction).
  const viaFerry = async () => {
    for (let batch = 0; batch < 50; batch++) {
      const stmts: string[] = [];
      for (let i = 0; i < 50; i++) {
        const n = batch * 50 + i;
        if (n % 10 === 7) stmts.push(`DELETE FROM accounts WHERE id = ${n - 3}`);
        else if (n % 10 === 5) stmts.push(`UPDATE accounts SET balance = balance + ${n} WHERE id = ${n - 1}`);
        else stmts.push(`INSERT INTO accounts(id, owner, balance) VALUES (${n}, 'owner-${n}', ${n * 3})`);
      }
      await cl.sql(stmts.join(";\n"));
    }
  };
  // Half: an outside program with its own connection to the master's file.
  const viaOutside = async () => {
    const db = new Database(cl.repo("m1"), { timeout: 10_000 });
    try {
      for (let batch = 0; batch < 50; batch++) {
        db.transaction(() => {
          for (let i = 0; i < 50; i++) {
            const n = batch * 50 + i;
            if (n % 10 === 9) db.prepare(`DELETE FROM events WHERE id = ?`).run(n - 4);
            else if (n % 10 === 6) db.prepare(`UPDATE events SET amount = amount * 1.5, kind = 'updated' WHERE id = ?`).run(n - 2);
            else {
              db.prepare(`INSERT INTO events(id, kind, payload, amount) VALUES (?, 'new', ?, ?)`).run(n, Buffer.from([n % 256, 0, 255]), n / 7);
              db.prepare(`INSERT OR REPLACE INTO tags(name, weight, note) VALUES (?, ?, ?)`).run(`t${n % 97}`, n * 0.25, n % 2 ? null : `n${n}`);
            }
          }
        })();
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      db.close();
    }
  };
  await Promise.all([viaFerry(), viaOutside()]);
  const dump = await cl.waitConverged("m1", ["s1", "s2"]);
  assert.ok(dump.split("\n").filter((l) => l.startsWith("accounts|")).length > 1000, "accounts rows replicated");
  assert.ok(dump.includes("X'"), "blobs replicated as blobs");
  assert.ok(/events\|\d+\|'updated'\|X'[0-9A-F]+'\|[0-9.]+/.test(dump), "reals and updates replicated");
});

test("random() and CURRENT_TIMESTAMP give identical rows on every replica (rows, not statements, replicate)", async () => {
  await threeNodes();
  await cl.sql("CREATE TABLE r(id INTEGER PRIMARY KEY, x INTEGER, at TEXT, f REAL)");
  for (let i = 0; i < 20; i++) await cl.sql("INSERT INTO r(x, at, f) VALUES (random(), CURRENT_TIMESTAMP, random() / 3.0)");
  await cl.sql("UPDATE r SET x = random() WHERE id % 2 = 0");
  const dump = await cl.waitConverged("m1", ["s1", "s2"]);
  assert.is(dump.split("\n").filter((l) => l.startsWith("r|")).length, 20);
});

test("a multi-statement transaction is never seen half-applied on a slave", async () => {
  await threeNodes();
  const N = 20;
  await cl.sql(`CREATE TABLE acct(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)`);
  await cl.sql(Array.from({ length: N }, (_, i) => `INSERT INTO acct VALUES (${i}, 1000)`).join(";"));
  await cl.waitConverged("m1", ["s1"]);
  const slave = new Database(cl.repo("s1"), { readonly: true });
  let samples = 0;
  let bad: number | null = null;
  let sampling = true;
  const sampler = (async () => {
    const q = slave.prepare(`SELECT sum(balance) AS s, count(*) AS n FROM acct`);
    while (sampling) {
      const r = q.get() as { s: number; n: number };
      samples++;
      if (r.s !== N * 1000 || r.n !== N) bad = r.s;
      await new Promise((res) => setImmediate(res));
    }
  })();
  // Transfers: each moves money between two accounts in one script (one transaction).
  for (let i = 0; i < 150; i++) {
    const a = i % N;
    const b = (i * 7 + 3) % N;
    if (a === b) continue;
    await cl.sql(`UPDATE acct SET balance = balance - ${i} WHERE id = ${a}; UPDATE acct SET balance = balance + ${i} WHERE id = ${b}`);
  }
  await cl.waitConverged("m1", ["s1"]);
  sampling = false;
  await sampler;
  slave.close();
  assert.ok(samples > 100, `sampled ${samples} times`);
  assert.is(bad, null, `a sample saw a partial transaction (sum ${bad})`);
});

test("an old master still subscribed to SQL and answering fenced: no write runs twice", async () => {
  cl = await TestCluster.start();
  cl.startNode("m1", "master");
  await cl.waitMaster("m1");
  await cl.sql("CREATE TABLE t(n INTEGER NOT NULL)");
  // What a master woken from SIGSTOP after a failover does for a moment: it refuses, not committed,
  // faster than the live master answers. The live master has run the write all the same. (Clients
  // address the lease holder's own subject, so the impostor listens there.)
  const c = await cl.client();
  let refused = 0;
  let seen = 0;
  c.nc.subscribe(c.subj.node("m1").sql, {
    callback: (_e, msg) => {
      if (seen++ % 2 === 1) return;
      refused++;
      errorReply(msg, new ClusterError("FENCED", "old master: lease not renewed in time", { details: { committed: false } }));
    },
  });
  for (let n = 0; n < 40; n++) await cl.sql("INSERT INTO t(n) VALUES (?)", [n], 10_000);
  const rows = (await cl.sql("SELECT n, count(*) AS c FROM t GROUP BY n HAVING c > 1")).results[0].rows ?? [];
  assert.equal(rows, [], "no insert ran twice");
  assert.is((await cl.sql("SELECT count(*) FROM t")).results[0].rows?.[0]?.[0], 40);
  assert.ok(refused >= 40, `the old master refused ${refused} requests first`);
});

test("kill -9 of a slave in the middle of a stream: after restart it converges, nothing lost or doubled", async () => {
  await threeNodes();
  await cl.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
  const w = startWriter(cl, { who: "a" });
  await waitFor("some writes", () => w.acked().length > 100);
  cl.nodes.get("s1")!.kill("SIGKILL");
  await cl.nodes.get("s1")!.exited;
  await waitFor("writes while s1 is down", () => w.acked().length > 300);
  cl.startNode("s1", "slave");
  await waitFor("writes after s1 is back", () => w.acked().length > 500);
  await w.stop();
  const dump = await cl.waitConverged("m1", ["s1", "s2"]);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  for (const r of w.acked()) assert.ok(ids.includes(r.id), `acknowledged row ${r.id} present`);
});

test("kill -9 of the master in the middle of a stream: after restart replicas converge, no acknowledged row lost", async () => {
  await threeNodes();
  await cl.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
  const w = startWriter(cl, { who: "b" });
  await waitFor("some writes", () => w.acked().length > 200);
  const before = w.acked().length;
  await cl.killAndRestart("m1", "master");
  await cl.waitMaster("m1");
  await cl.until("writes after the master is back", () => w.acked().length > before + 200, { timeoutMs: 30_000 }).catch((err) => {
    throw new Error(`${err.message}; the writer's last requests: ${JSON.stringify(w.records.slice(-5))}`);
  });
  await w.stop();
  const dump = await cl.waitConverged("m1", ["s1", "s2"]);
  const ids = idsIn(dump);
  assert.is(new Set(ids).size, ids.length, "no row doubled");
  for (const r of w.acked()) assert.ok(ids.includes(r.id), `acknowledged row ${r.id} present`);
  const s1 = await cl.member("s1");
  assert.ok(s1!.epoch >= 2, `slaves follow the new epoch (${s1!.epoch})`);
});

test("batches written one at a time reach caught-up slaves pushed, not pulled, and the master still learns what each holds", async () => {
  await threeNodes();
  await cl.sql("CREATE TABLE p(id INTEGER PRIMARY KEY, v TEXT)");
  await cl.waitConverged("m1", ["s1", "s2"]);
  const c = await cl.client();
  const seen = { pulls: new Map<string, number>(), acks: new Map<string, number>(), batches: 0 };
  const add = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
  const subs = [
    c.nc.subscribe(c.subj.node("m1").pull, { callback: (_e, m) => void add(m.reply ? seen.pulls : seen.acks, (m.json() as { node: string }).node) }),
    c.nc.subscribe(c.subj.notify, { callback: (_e, m) => void ((m.json() as { node: string }).node === "m1" && seen.batches++) }),
  ];
  try {
    for (let i = 0; i < 60; i++) await cl.sql(`INSERT INTO p VALUES (${i}, 'row ${i}')`);
    const dump = await cl.waitConverged("m1", ["s1", "s2"]);
    assert.is(idsIn(dump, "p").length, 60);
    assert.ok(seen.batches >= 60, `${seen.batches} batches`);
    for (const s of ["s1", "s2"]) {
      const pulls = seen.pulls.get(s) ?? 0;
      assert.ok(pulls < seen.batches / 2, `${s} pulled ${pulls} times for ${seen.batches} batches`);
      assert.ok((seen.acks.get(s) ?? 0) > 0, `${s} told the master what it holds`);
    }
    await waitFor("the master's view of both replicas caught up", async () => {
      const rows = (await cl.status()).members.filter((m) => m.node === "s1" || m.node === "s2");
      return rows.length === 2 && rows.every((r) => r.backlogBytes === 0);
    }, { timeoutMs: 10_000 });
  } finally {
    for (const sub of subs) sub.unsubscribe();
  }
});

test.run();
