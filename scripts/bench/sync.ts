/**
 * The sync benchmark (`npm run bench -- sync [--format parquet|csv|jsonl|all] [--quick] [--rows N]`),
 * with real processes: a nats-server, a master node on a SQLite file of 1,000,000 rows of about
 * 100 bytes, a collector reading the master's repository, and a synctool writing to a directory.
 * For each format (default: all three, in one run):
 *
 *  1. baseline  one process reads the table from the SQLite file and writes the same files with the
 *               same library (4 partitions by id; JSON Lines in packs of sync.maxPackBytes, CSV and
 *               Parquet in files of sync.fileBytes of rows; temporary name, fsync, rename, directory
 *               fsync): rows/s
 *  2. ferry     `task create -m 0 --format F` (FULL, 4 partitions) until the task is gone: rows/s,
 *               the ratio to (1) (targets: Parquet at least 0.7, the others 0.5), bytes written,
 *               and the CPU seconds of each process
 *
 * Parquet's bytes are also compared with the JSON Lines bytes of the same rows (target: at most
 * 0.4). The rows of every run's files are counted (every row once) before figures are reported.
 */
import { mkdirSync, openSync, closeSync, fsyncSync, readdirSync, readFileSync, renameSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { TestCluster } from "../../test/helpers/cluster.js";
import { cleanup, tempDir } from "../../test/helpers/procs.js";
import { client } from "../../src/cli/common.js";
import { ENDPOINTS } from "../../src/nats/protocol.js";
import { synctoolRequest } from "../../src/client/synctool.js";
import { parquetMetadata } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { SINK_FORMATS, type SinkFormat } from "../../src/storage/sink/index.js";
import { cpuSeconds, fmtInt, fmtMB, log, printTable, round } from "./common.js";

const PARTITIONS = 4;
const PACK = 1024 * 1024;
/** sync.fileBytes's default: CSV and Parquet files hold this many bytes of rows as JSON. */
const FILE_BYTES = 16 * 1024 * 1024;
const TARGET: Record<SinkFormat, number> = { parquet: 0.7, csv: 0.5, jsonl: 0.5 };
const PARQUET_OF_JSONL = 0.4;

interface Run {
  format: SinkFormat;
  baseline: { seconds: number; rowsPerSec: number; files: number; bytes: number };
  ferry: { seconds: number; rowsPerSec: number; files: number; bytes: number; cpuSeconds: Record<string, number> };
  ratio: number;
  target: number;
  met: boolean;
}

export interface Result {
  settings: { rows: number; rowBytes: number; partitions: number; maxPackBytes: number; fileBytes: number };
  runs: Run[];
  /** Parquet bytes / JSON Lines bytes of the same rows (ferry's files). */
  parquetOfJsonl?: { ratio: number; target: number; met: boolean };
}

export async function run(argv: string[] = []): Promise<Result> {
  const quick = argv.includes("--quick");
  const at = argv.indexOf("--rows");
  const ROWS = at >= 0 ? Number(argv[at + 1]) : quick ? 200_000 : 1_000_000;
  const f = argv.indexOf("--format");
  const asked = f >= 0 ? argv[f + 1] : "all";
  const formats: SinkFormat[] = asked === "all" ? ["parquet", "csv", "jsonl"] : [asked as SinkFormat];
  if (!formats.every((x) => SINK_FORMATS.includes(x))) throw new Error(`--format ${asked}: give parquet, csv, jsonl or all`);
  const dir = tempDir("ferry-bench-sync-");
  let cl: TestCluster | null = null;
  try {
    cl = await TestCluster.start({ config: { log: { level: "warn" }, lease: { ttlMs: 3000, safetyMarginMs: 1000 } } });
    // The master's repository, filled before the node starts (the rows are not replication traffic).
    const repoFile = cl.repo("m1");
    mkdirSync(join(cl.dir, "m1"), { recursive: true });
    log(`creating ${fmtInt(ROWS)} rows`);
    const rowBytes = fill(repoFile, ROWS);

    log("ferry: nats-server, master, collector, synctool");
    const m1 = cl.startNode("m1", "master");
    await cl.waitMaster("m1", 60_000);
    const c1 = cl.startProcess("c1", "collector", ["--host", "h1", "--source", "m1"]);
    const st1 = cl.startProcess("st1", "synctool");
    await cl.waitMember("c1", "active", (m) => m.state === "active");
    await cl.waitMember("st1", "active", (m) => m.state === "active");
    const c = await client({ config: cl.configFile });
    // The synctool must see the collector before the task is created (its heartbeat view).
    for (const deadline = Date.now() + 10_000; ; ) {
      const s = await synctoolRequest<{ collectors: { node: string; up: boolean; state: string }[] }>(c, ENDPOINTS.toolStatus, {});
      if (s.collectors.some((x) => x.node === "c1" && x.up && x.state === "active")) break;
      if (Date.now() > deadline) throw new Error("the synctool does not see the collector");
      await new Promise((r) => setTimeout(r, 50));
    }
    const pids = { nats: cl.nats.pid, master: m1.pid, collector: c1.pid, synctool: st1.pid };
    const runs: Run[] = [];
    for (const format of formats) {
      log(`baseline: one process, SQLite -> ${format} files`);
      const baseDir = join(dir, `baseline-${format}`);
      const t0 = performance.now();
      baseline(repoFile, baseDir, format);
      const baseSec = (performance.now() - t0) / 1000;
      const baseFiles = countRows(join(baseDir, "bench"), format);

      log(`ferry: task create -m 0 --format ${format}`);
      const dest = join(dir, `ferry-${format}`);
      const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
      const t1 = performance.now();
      await synctoolRequest(c, ENDPOINTS.taskCreate, { db: "main", table: "bench", mode: 0, dest, partitions: PARTITIONS, format });
      for (;;) {
        const { tasks } = await synctoolRequest<{ tasks: { task: string; failed: boolean }[] }>(c, ENDPOINTS.tasks, {});
        const t = tasks.find((x) => x.task === "main.bench");
        if (!t) break;
        if (t.failed) throw new Error("the sync task FAILED");
        await new Promise((r) => setTimeout(r, 20));
      }
      const ferrySec = (performance.now() - t1) / 1000;
      const cpu = Object.fromEntries(Object.entries(pids).map(([k, p]) => [k, round(cpuSeconds(p) - cpu0[k], 2)]));
      const ferryFiles = countRows(join(dest, "bench"), format);
      if (baseFiles.rows !== ROWS || ferryFiles.rows !== ROWS) throw new Error(`${format} rows written: baseline ${baseFiles.rows}, ferry ${ferryFiles.rows}, want ${ROWS}`);
      const ratio = round(ROWS / ferrySec / (ROWS / baseSec), 2);
      runs.push({
        format,
        baseline: { seconds: round(baseSec, 3), rowsPerSec: Math.round(ROWS / baseSec), ...baseFiles },
        ferry: { seconds: round(ferrySec, 3), rowsPerSec: Math.round(ROWS / ferrySec), ...ferryFiles, cpuSeconds: cpu },
        ratio,
        target: TARGET[format],
        met: ratio >= TARGET[format],
      });
    }
    await c.close();
    const pq = runs.find((r) => r.format === "parquet");
    const jl = runs.find((r) => r.format === "jsonl");
    const parquetOfJsonl = pq && jl ? round(pq.ferry.bytes / jl.ferry.bytes, 3) : undefined;
    printTable(`sync: mode 0 of ${fmtInt(ROWS)} rows of ~${rowBytes} bytes, ${PARTITIONS} partitions, packs of ${PACK / 1024} KiB`, [
      ...runs.flatMap((r): [string, string, string?, boolean?][] => [
        [`${r.format} baseline: one process, SQLite -> files`, `${fmtInt(r.baseline.rowsPerSec)} rows/s (${r.baseline.seconds} s, ${r.baseline.files} files, ${fmtMB(r.baseline.bytes)})`],
        [`${r.format} ferry: master -> collector -> synctool -> files`, `${fmtInt(r.ferry.rowsPerSec)} rows/s (${r.ferry.seconds} s, ${r.ferry.files} files, ${fmtMB(r.ferry.bytes)})`],
        [`${r.format} ratio ferry / baseline`, String(r.ratio), `>= ${r.target}`, r.met],
        [`${r.format} CPU seconds during the sync`, Object.entries(r.ferry.cpuSeconds).map(([k, v]) => `${k} ${v}`).join(", ")],
      ]),
      ...(parquetOfJsonl !== undefined ? [["Parquet bytes / JSON Lines bytes", String(parquetOfJsonl), `<= ${PARQUET_OF_JSONL}`, parquetOfJsonl <= PARQUET_OF_JSONL] as [string, string, string, boolean]] : []),
    ]);
    return {
      settings: { rows: ROWS, rowBytes, partitions: PARTITIONS, maxPackBytes: PACK, fileBytes: FILE_BYTES },
      runs,
      parquetOfJsonl: parquetOfJsonl !== undefined ? { ratio: parquetOfJsonl, target: PARQUET_OF_JSONL, met: parquetOfJsonl <= PARQUET_OF_JSONL } : undefined,
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

interface BenchRow {
  id: number;
  ts: number;
  name: string;
  score: number | null;
  note: string | null;
}

const csvText = (v: unknown) => (v === null ? "" : typeof v === "string" ? `"${v.replace(/"/g, '""')}"` : String(v));

/** How one process writes a file of rows itself, with the library and layout the sink uses. */
const ENCODE: Record<SinkFormat, (rows: BenchRow[]) => Uint8Array> = {
  jsonl: (rows) => Buffer.from(rows.map((r) => JSON.stringify(r) + "\n").join("")),
  csv: (rows) => Buffer.from(['"id","ts","name","score","note"\r\n', ...rows.map((r) => `${r.id},${r.ts},${csvText(r.name)},${csvText(r.score)},${csvText(r.note)}\r\n`)].join("")),
  parquet: (rows) =>
    new Uint8Array(
      parquetWriteBuffer({
        columnData: [
          { name: "id", data: rows.map((r) => BigInt(r.id)), type: "INT64" },
          { name: "ts", data: rows.map((r) => BigInt(r.ts)), type: "INT64" },
          { name: "name", data: rows.map((r) => r.name), type: "STRING" },
          { name: "score", data: rows.map((r) => r.score), type: "DOUBLE" },
          { name: "note", data: rows.map((r) => r.note), type: "STRING" },
        ],
        codec: "SNAPPY",
        rowGroupSize: 1 << 30,
      }),
    ),
};

/** The baseline: what one process would write itself, the same files as the synctool. */
function baseline(file: string, out: string, format: SinkFormat): void {
  const db = new Database(file, { readonly: true });
  const limit = format === "jsonl" ? PACK : FILE_BYTES;
  const parts = Array.from({ length: PARTITIONS }, (_, p) => ({ dir: join(out, "bench", `part=${p}`), rows: [] as BenchRow[], bytes: 0, first: 1 }));
  for (const p of parts) mkdirSync(p.dir, { recursive: true });
  const flush = (p: (typeof parts)[number]) => {
    if (p.rows.length === 0) return;
    const name = `snapshot-${"0".repeat(20)}-${String(p.first).padStart(12, "0")}-${String(p.first + p.rows.length - 1).padStart(12, "0")}.${format}`;
    const tmp = join(p.dir, `.${name}.tmp`);
    const fd = openSync(tmp, "w");
    writeSync(fd, ENCODE[format](p.rows));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, join(p.dir, name));
    const dfd = openSync(p.dir, "r");
    fsyncSync(dfd);
    closeSync(dfd);
    p.first += p.rows.length;
    p.rows = [];
    p.bytes = 0;
  };
  for (const row of db.prepare("SELECT * FROM bench ORDER BY id").iterate() as IterableIterator<BenchRow>) {
    const p = parts[row.id % PARTITIONS];
    // Files are cut where the synctool cuts them: by the rows' size as JSON.
    const size = JSON.stringify(row).length + 1;
    if (p.bytes + size > limit) flush(p);
    p.rows.push(row);
    p.bytes += size;
  }
  for (const p of parts) flush(p);
  db.close();
}

function countRows(root: string, format: SinkFormat): { files: number; rows: number; bytes: number } {
  let files = 0;
  let rows = 0;
  let bytes = 0;
  for (const d of readdirSync(root)) {
    for (const f of readdirSync(join(root, d))) {
      if (!f.endsWith(`.${format}`)) continue;
      files++;
      const path = join(root, d, f);
      bytes += statSync(path).size;
      const buf = readFileSync(path);
      if (format === "parquet") rows += Number(parquetMetadata(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length)).num_rows);
      else {
        for (let i = 0; i < buf.length; i++) if (buf[i] === 10) rows++;
        if (format === "csv") rows--; // the header
      }
    }
  }
  return { files, rows, bytes };
}
