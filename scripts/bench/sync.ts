/**
 * The sync benchmark (`npm run bench -- sync [--quick] [--rows N]`), with real processes: a
 * nats-server, a master node on a SQLite file of 1,000,000 rows of about 100 bytes, a collector
 * reading the master's repository, and a synctool writing to a directory.
 *
 *  1. baseline  one process reads the table from the SQLite file and writes the same JSON Lines
 *               files (4 partitions by id, packs of sync.maxPackBytes, temporary name, fsync,
 *               rename, directory fsync): rows/s
 *  2. ferry     `task create -m 0` (FULL, 4 partitions) until the task is gone: rows/s, the ratio to
 *               (1) (target: at least 0.5), and the CPU seconds of each process
 *
 * The files of both runs are counted (every row once) before the figures are reported.
 */
import { mkdirSync, openSync, closeSync, fsyncSync, readdirSync, readFileSync, renameSync, writeSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { TestCluster } from "../../test/helpers/cluster.js";
import { cleanup, tempDir } from "../../test/helpers/procs.js";
import { client } from "../../src/cli/common.js";
import { ENDPOINTS } from "../../src/nats/protocol.js";
import { synctoolRequest } from "../../src/client/synctool.js";
import { cpuSeconds, fmtInt, log, printTable, round } from "./common.js";

const PARTITIONS = 4;
const PACK = 1024 * 1024;

export interface Result {
  settings: { rows: number; rowBytes: number; partitions: number; maxPackBytes: number };
  baseline: { seconds: number; rowsPerSec: number; files: number };
  ferry: { seconds: number; rowsPerSec: number; files: number; cpuSeconds: Record<string, number> };
  ratio: number;
  target: number;
  met: boolean;
}

export async function run(argv: string[] = []): Promise<Result> {
  const quick = argv.includes("--quick");
  const at = argv.indexOf("--rows");
  const ROWS = at >= 0 ? Number(argv[at + 1]) : quick ? 200_000 : 1_000_000;
  const dir = tempDir("ferry-bench-sync-");
  let cl: TestCluster | null = null;
  try {
    cl = await TestCluster.start({ config: { log: { level: "warn" }, lease: { ttlMs: 3000, safetyMarginMs: 1000 } } });
    // The master's repository, filled before the node starts (the rows are not replication traffic).
    const repoFile = cl.repo("m1");
    mkdirSync(join(cl.dir, "m1"), { recursive: true });
    log(`creating ${fmtInt(ROWS)} rows`);
    const rowBytes = fill(repoFile, ROWS);

    log("baseline: one process, SQLite to JSON Lines files");
    const baseDir = join(dir, "baseline");
    const t0 = performance.now();
    baseline(repoFile, baseDir);
    const baseSec = (performance.now() - t0) / 1000;
    const baseFiles = countRows(join(baseDir, "bench"));

    log("ferry: nats-server, master, collector, synctool; task create -m 0");
    const m1 = cl.startNode("m1", "master");
    await cl.waitMaster("m1", 60_000);
    const c1 = cl.startProcess("c1", "collector", ["--host", "h1", "--source", "m1"]);
    const st1 = cl.startProcess("st1", "synctool");
    await cl.waitMember("c1", "active", (m) => m.state === "active");
    await cl.waitMember("st1", "active", (m) => m.state === "active");
    const c = await client({ config: cl.configFile });
    const dest = join(dir, "ferry");
    // The synctool must see the collector before the task is created (its heartbeat view).
    for (const deadline = Date.now() + 10_000; ; ) {
      const s = await synctoolRequest<{ collectors: { node: string; up: boolean; state: string }[] }>(c, ENDPOINTS.toolStatus, {});
      if (s.collectors.some((x) => x.node === "c1" && x.up && x.state === "active")) break;
      if (Date.now() > deadline) throw new Error("the synctool does not see the collector");
      await new Promise((r) => setTimeout(r, 50));
    }
    const pids = { nats: cl.nats.pid, master: m1.pid, collector: c1.pid, synctool: st1.pid };
    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
    const t1 = performance.now();
    await synctoolRequest(c, ENDPOINTS.taskCreate, { db: "main", table: "bench", mode: 0, dest, partitions: PARTITIONS });
    for (;;) {
      const { tasks } = await synctoolRequest<{ tasks: { task: string; failed: boolean }[] }>(c, ENDPOINTS.tasks, {});
      const t = tasks.find((x) => x.task === "main.bench");
      if (!t) break;
      if (t.failed) throw new Error("the sync task FAILED");
      await new Promise((r) => setTimeout(r, 20));
    }
    const ferrySec = (performance.now() - t1) / 1000;
    const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, round(cpuSeconds(p) - cpu0[k], 2)]));
    await c.close();
    const ferryFiles = countRows(join(dest, "bench"));
    if (baseFiles.rows !== ROWS || ferryFiles.rows !== ROWS) throw new Error(`rows written: baseline ${baseFiles.rows}, ferry ${ferryFiles.rows}, want ${ROWS}`);

    const baseRate = ROWS / baseSec;
    const ferryRate = ROWS / ferrySec;
    const ratio = round(ferryRate / baseRate, 2);
    printTable(`sync: mode 0 of ${fmtInt(ROWS)} rows of ~${rowBytes} bytes, ${PARTITIONS} partitions, packs of ${PACK / 1024} KiB`, [
      ["baseline: one process, SQLite -> JSON Lines files", `${fmtInt(baseRate)} rows/s (${baseSec.toFixed(2)} s, ${baseFiles.files} files)`],
      ["ferry: master -> collector -> synctool -> files", `${fmtInt(ferryRate)} rows/s (${ferrySec.toFixed(2)} s, ${ferryFiles.files} files)`],
      ["ratio ferry / baseline", String(ratio), ">= 0.5", ratio >= 0.5],
      ["CPU seconds during the sync", Object.entries(cpu).map(([k, v]) => `${k} ${v}`).join(", ")],
    ]);
    return {
      settings: { rows: ROWS, rowBytes, partitions: PARTITIONS, maxPackBytes: PACK },
      baseline: { seconds: round(baseSec, 3), rowsPerSec: Math.round(baseRate), files: baseFiles.files },
      ferry: { seconds: round(ferrySec, 3), rowsPerSec: Math.round(ferryRate), files: ferryFiles.files, cpuSeconds: cpu },
      ratio,
      target: 0.5,
      met: ratio >= 0.5,
    };
  } finally {
    await cl?.close();
    await cleanup();
  }
}

/** A table of `rows` rows whose JSON objects are about 100 bytes; returns the average size. */
export function fill(file: string, rows: number): number {
  const db = new Database(file);
  db.pragma("journal_mode = WAL");
  db.exec("CREATE TABLE bench(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, name TEXT NOT NULL, score REAL, note TEXT)");
  const ins = db.prepare("INSERT INTO bench VALUES (?, ?, ?, ?, ?)");
  const note = "lorem ipsum dolor";
  db.transaction(() => {
    for (let i = 1; i <= rows; i++) ins.run(i, 1_700_000_000_000 + i, `name-${i}`, i / 7, note);
  })();
  const sample = db.prepare("SELECT * FROM bench WHERE id = 12345").get();
  db.close();
  return JSON.stringify(sample).length;
}

/** The baseline: what one process would write itself, the same files as the synctool. */
function baseline(file: string, out: string): void {
  const db = new Database(file, { readonly: true });
  const parts = Array.from({ length: PARTITIONS }, (_, p) => ({ dir: join(out, "bench", `part-${p}`), lines: [] as string[], bytes: 0, first: 1, rows: 0 }));
  for (const p of parts) mkdirSync(p.dir, { recursive: true });
  const flush = (p: (typeof parts)[number]) => {
    if (p.lines.length === 0) return;
    const name = `snapshot-${"0".repeat(20)}-${String(p.first).padStart(12, "0")}-${String(p.first + p.lines.length - 1).padStart(12, "0")}.jsonl`;
    const tmp = join(p.dir, `.${name}.tmp`);
    const fd = openSync(tmp, "w");
    writeSync(fd, p.lines.join(""));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, join(p.dir, name));
    const dfd = openSync(p.dir, "r");
    fsyncSync(dfd);
    closeSync(dfd);
    p.first += p.lines.length;
    p.lines = [];
    p.bytes = 0;
  };
  for (const row of db.prepare("SELECT * FROM bench ORDER BY id").iterate() as IterableIterator<{ id: number }>) {
    const p = parts[row.id % PARTITIONS];
    const line = JSON.stringify(row) + "\n";
    if (p.bytes + line.length > PACK) flush(p);
    p.lines.push(line);
    p.bytes += line.length;
  }
  for (const p of parts) flush(p);
  db.close();
}

function countRows(root: string): { files: number; rows: number } {
  let files = 0;
  let rows = 0;
  for (const d of readdirSync(root)) {
    for (const f of readdirSync(join(root, d))) {
      if (!f.endsWith(".jsonl")) continue;
      files++;
      const buf = readFileSync(join(root, d, f));
      for (let i = 0; i < buf.length; i++) if (buf[i] === 10) rows++;
    }
  }
  return { files, rows };
}
