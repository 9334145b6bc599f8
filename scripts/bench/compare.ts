/**
 * The compare benchmark (`npm run bench -- compare [--quick] [--rows N]`), with real processes: a
 * nats-server, a master and two slaves on SQLite files, the master's table of 1,000,000 rows of
 * about 100 bytes (the replicas get it by resync).
 *
 *  1. baseline   one process reads the table from the master's file with a full scan: rows/s
 *  2. compare    `ferry compare` of master and both replicas, identical: rows/s of the table, the
 *                ratio to (1) (target: at least 0.5)
 *  3. throttle   a ferry sql writer's latency (p99) for a while without compare, then while a
 *                compare throttled to 100,000 rows/s runs (target: p99 up by at most 20%)
 *  4. repair     100 rows changed straight in one replica's file: bytes of the repair's messages
 *                (compare requests and replies) against the bytes of a full resync's (snapshot
 *                requests and replies, measured when the replica was filled) (target: at most 1%)
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { TestCluster } from "../../test/helpers/cluster.js";
import { cleanup } from "../../test/helpers/procs.js";
import { startWriter } from "../../test/helpers/workload.js";
import { client } from "../../src/cli/common.js";
import { compare, repair } from "../../src/client/compare.js";
import { subjects } from "../../src/nats/subjects.js";
import { cpuDuring, fmtInt, fmtMB, log, percentiles, printTable, round } from "./common.js";
import { fill } from "./sync.js";

const THROTTLE = 100_000;
const STRAY = 100;

/** Bytes of the requests on `subject` (a wildcard) and of their replies, from a plain subscriber. */
class ByteCounter {
  bytes = 0;
  private inboxes = new Set<string>();
  private constructor(private nc: NatsConnection) {}

  static async start(url: string, subject: string): Promise<ByteCounter> {
    const nc = await connect({ servers: url, name: "bench-bytes" });
    const b = new ByteCounter(nc);
    nc.subscribe(subject, {
      callback: (_e, m) => {
        b.bytes += m.data.length;
        if (m.reply) b.inboxes.add(m.reply);
      },
    });
    nc.subscribe("_INBOX.>", {
      callback: (_e, m) => {
        if (b.inboxes.delete(m.subject)) b.bytes += m.data.length;
      },
    });
    await nc.flush();
    return b;
  }

  async stop(): Promise<number> {
    await this.nc.flush();
    await this.nc.drain().catch(() => {});
    return this.bytes;
  }
}

export async function run(argv: string[] = []): Promise<object> {
  const quick = argv.includes("--quick");
  const at = argv.indexOf("--rows");
  const ROWS = at >= 0 ? Number(argv[at + 1]) : quick ? 200_000 : 1_000_000;
  let cl: TestCluster | null = null;
  try {
    cl = await TestCluster.start({ config: { log: { level: "warn" }, lease: { ttlMs: 3000, safetyMarginMs: 1000 }, compare: { timeoutMs: 600_000 } } });
    const repoFile = cl.repo("m1");
    mkdirSync(join(cl.dir, "m1"), { recursive: true });
    log(`creating ${fmtInt(ROWS)} rows`);
    const rowBytes = fill(repoFile, ROWS);

    log("baseline: one process, a full scan of the table from the master's file");
    const t0 = performance.now();
    const db = new Database(repoFile, { readonly: true });
    let scanned = 0;
    const it = db.prepare("SELECT * FROM bench").raw().iterate();
    while (!it.next().done) scanned++;
    db.close();
    const baseSec = (performance.now() - t0) / 1000;
    if (scanned !== ROWS) throw new Error(`the scan read ${scanned} rows`);

    log("ferry: master m1, slaves s1 and s2 filled by resync");
    const m1 = cl.startNode("m1", "master");
    await cl.waitMaster("m1", 60_000);
    await cl.sql("CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)");
    const snapshotBytes = await ByteCounter.start(cl.nats.url, subjects(cl.name).node("*").snapshot);
    const s1p = cl.startNode("s1", "slave");
    await cl.waitMember("s1", "streaming", (m) => m.replica === "streaming", 600_000);
    const resyncBytes = await snapshotBytes.stop();
    const s2p = cl.startNode("s2", "slave");
    await cl.waitMember("s2", "streaming", (m) => m.replica === "streaming", 600_000);

    const c = await client({ config: cl.configFile });
    log("compare: master and two replicas, identical");
    const t1 = performance.now();
    const { result: same, cpu } = await cpuDuring({ m1: m1.pid, s1: s1p.pid, s2: s2p.pid, nats: cl.nats.pid, cli: process.pid }, () => compare(c, {}));
    const cmpSec = (performance.now() - t1) / 1000;
    // What one node reads and sums on a core of its own: the busiest node's CPU time for the table.
    const busiest = Math.max(cpu.m1, cpu.s1, cpu.s2);
    const perCore = ROWS / busiest;
    if (!same.identical) throw new Error(`compare found differences: ${JSON.stringify(same.tables.map((t) => [t.node, t.table, t.diffs.length]))}`);
    const baseRate = ROWS / baseSec;
    const cmpRate = ROWS / cmpSec;
    const ratio = round(cmpRate / baseRate, 2);

    log(`throttle: a ferry sql writer without compare, then with compare at ${fmtInt(THROTTLE)} rows/s`);
    const writeMs = (rs: { invokedAt: number; doneAt: number }[]) => rs.map((r) => r.doneAt - r.invokedAt);
    const quiet = startWriter(cl, { table: "w", who: "quiet" });
    const quietFor = Math.max(5000, (ROWS / THROTTLE) * 1000);
    await new Promise((r) => setTimeout(r, quietFor));
    await quiet.stop();
    c.config.compare.rowsPerSecond = THROTTLE;
    let id = 10_000_000;
    const busy = startWriter(cl, { table: "w", who: "busy", nextId: () => id++ });
    const t2 = performance.now();
    const throttled = await compare(c, {});
    const thrSec = (performance.now() - t2) / 1000;
    await busy.stop();
    c.config.compare.rowsPerSecond = 0;
    if (!throttled.identical) throw new Error("the throttled compare found differences");
    const without = percentiles(writeMs(quiet.acked()));
    const withCompare = percentiles(writeMs(busy.acked()));
    const rise = round(withCompare.p99 / without.p99 - 1, 3);

    log(`repair: ${STRAY} rows changed in s1's file`);
    const s1 = new Database(cl.repo("s1"), { timeout: 10_000 });
    const step = Math.floor(ROWS / STRAY);
    s1.transaction(() => {
      for (let i = 0; i < STRAY; i++) s1.prepare("UPDATE bench SET note = 'stray' WHERE id = ?").run(1 + i * step);
    })();
    s1.close();
    const compareBytes = await ByteCounter.start(cl.nats.url, subjects(cl.name).node("*").compare);
    const t3 = performance.now();
    const fixed = await repair(c, { node: "s1" });
    const repSec = (performance.now() - t3) / 1000;
    const repairBytes = await compareBytes.stop();
    const after = await compare(c, {});
    await c.close();
    if (fixed.changed !== STRAY || !after.identical) throw new Error(`repair changed ${fixed.changed} rows; compare afterwards identical: ${after.identical}`);
    const bytesRatio = round(repairBytes / resyncBytes, 4);

    printTable(`compare: ${fmtInt(ROWS)} rows of ~${rowBytes} bytes, master and two replicas`, [
      ["baseline: one process, full scan of one file", `${fmtInt(baseRate)} rows/s (${baseSec.toFixed(2)} s)`],
      ["compare of master, s1, s2 (identical)", `${fmtInt(cmpRate)} rows/s (${cmpSec.toFixed(2)} s)`],
      ["ratio compare / baseline", String(ratio), ">= 0.5", ratio >= 0.5],
      ["CPU seconds during the compare", Object.entries(cpu).map(([k, v]) => `${k} ${v}`).join(", ")],
      ["one node's rows/s on a core of its own (busiest node)", `${fmtInt(perCore)} rows/s, ${round(perCore / baseRate, 2)} of the baseline`],
      ["writer p99 without compare", `${without.p99} ms (p50 ${without.p50}, n ${without.n})`],
      [`writer p99 with compare at ${fmtInt(THROTTLE)} rows/s (${thrSec.toFixed(1)} s)`, `${withCompare.p99} ms (p50 ${withCompare.p50}, n ${withCompare.n})`],
      ["p99 rise", `${round(rise * 100, 1)}%`, "<= 20%", rise <= 0.2],
      [`repair of ${STRAY} rows (${repSec.toFixed(2)} s)`, `${fmtInt(repairBytes)} bytes`],
      ["full resync of a replica", `${fmtMB(resyncBytes)}`],
      ["repair bytes / resync bytes", `${round(bytesRatio * 100, 2)}%`, "<= 1%", bytesRatio <= 0.01],
    ]);
    return {
      settings: { rows: ROWS, rowBytes, chunkRows: c.config.compare.chunkRows, throttle: THROTTLE, stray: STRAY },
      baseline: { seconds: round(baseSec, 3), rowsPerSec: Math.round(baseRate) },
      compare: { seconds: round(cmpSec, 3), rowsPerSec: Math.round(cmpRate), ratio, target: 0.5, met: ratio >= 0.5, cpuSeconds: cpu, perCoreRowsPerSec: Math.round(perCore) },
      throttle: { seconds: round(thrSec, 1), without, with: withCompare, p99Rise: rise, target: 0.2, met: rise <= 0.2 },
      repair: { seconds: round(repSec, 3), changed: fixed.changed, bytes: repairBytes, resyncBytes, ratio: bytesRatio, target: 0.01, met: bytesRatio <= 0.01 },
    };
  } finally {
    await cl?.close();
    await cleanup();
  }
}
