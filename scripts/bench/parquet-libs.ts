/**
 * Parquet libraries compared (`npm run bench -- parquet-libs [--rows N]`): the same rows of about
 * 100 bytes (64-bit integers, a double, text, a blob, NULLs), in files of ferry's size (one row
 * group of about sync.fileBytes of rows each), written by
 *
 *  - hyparquet-writer (pure JavaScript; snappy), the library ferry's Parquet sink uses,
 *  - parquet-wasm with apache-arrow (Rust's parquet crate in WebAssembly; snappy and zstd),
 *
 * timed from typed column arrays to file bytes (the part where the libraries differ), then read
 * back by DuckDB: its column types, and every aggregate equal to the source's.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parquetWriteBuffer } from "hyparquet-writer";
import { Binary, Float64, Int64, Table, Utf8, tableToIPC, vectorFromArray } from "apache-arrow";
import { Compression, Table as WasmTable, WriterPropertiesBuilder, writeParquet } from "parquet-wasm";
import { DuckDBInstance } from "@duckdb/node-api";
import { cleanup, tempDir } from "../../test/helpers/procs.js";
import { fmtInt, fmtMB, log, printGrid } from "./common.js";

interface Chunk {
  id: bigint[];
  ts: bigint[];
  name: string[];
  score: (number | null)[];
  note: (string | null)[];
  tag: (Uint8Array | null)[];
}

/** Rows per file: ferry combines packs until 16 MiB of rows as JSON (about 160,000 of these). */
const FILE_ROWS = 160_000;

interface Writer {
  name: string;
  write(c: Chunk): Uint8Array;
}

const WRITERS: Writer[] = [
  {
    name: "hyparquet-writer, snappy",
    write: (c) =>
      new Uint8Array(
        parquetWriteBuffer({
          columnData: [
            { name: "id", data: c.id, type: "INT64" },
            { name: "ts", data: c.ts, type: "INT64" },
            { name: "name", data: c.name, type: "STRING" },
            { name: "score", data: c.score, type: "DOUBLE" },
            { name: "note", data: c.note, type: "STRING" },
            { name: "tag", data: c.tag, type: "BYTE_ARRAY" },
          ],
          codec: "SNAPPY",
          rowGroupSize: 1 << 30,
        }),
      ),
  },
  ...([
    ["snappy", Compression.SNAPPY],
    ["zstd", Compression.ZSTD],
  ] as const).map(([label, codec]) => ({
    name: `parquet-wasm + apache-arrow, ${label}`,
    write: (c: Chunk) => {
      const table = new Table({
        id: vectorFromArray(c.id, new Int64()),
        ts: vectorFromArray(c.ts, new Int64()),
        name: vectorFromArray(c.name, new Utf8()),
        score: vectorFromArray(c.score, new Float64()),
        note: vectorFromArray(c.note, new Utf8()),
        tag: vectorFromArray(c.tag, new Binary()),
      });
      const props = new WriterPropertiesBuilder().setCompression(codec).setMaxRowGroupSize(1 << 30).build();
      return writeParquet(WasmTable.fromIPCStream(tableToIPC(table, "stream")), props);
    },
  })),
];

function chunks(rows: number): Chunk[] {
  const out: Chunk[] = [];
  for (let first = 1; first <= rows; first += FILE_ROWS) {
    const c: Chunk = { id: [], ts: [], name: [], score: [], note: [], tag: [] };
    for (let i = first; i < Math.min(first + FILE_ROWS, rows + 1); i++) {
      c.id.push(BigInt(i));
      c.ts.push(1_700_000_000_000n + BigInt(i));
      c.name.push(`name-${i}`);
      c.score.push(i % 13 === 0 ? null : i / 7);
      c.note.push(i % 5 === 0 ? null : "lorem ipsum dolor");
      c.tag.push(i % 3 === 0 ? null : Buffer.from([i & 255, (i >> 8) & 255, (i >> 16) & 255, 7]));
    }
    out.push(c);
  }
  return out;
}

const AGG = "count(*) AS n, sum(id) AS ids, sum(ts) AS ts, count(score) AS scores, round(sum(score), 3) AS score, count(note) AS notes, count(tag) AS tags, sum(length(name)) AS names";

export async function run(argv: string[] = []): Promise<object> {
  const at = argv.indexOf("--rows");
  const rows = at >= 0 ? Number(argv[at + 1]) : 1_000_000;
  const dir = tempDir("ferry-bench-parquet-");
  const db = await (await DuckDBInstance.create(":memory:")).connect();
  try {
    log(`building ${fmtInt(rows)} rows`);
    const data = chunks(rows);
    const results: Record<string, unknown>[] = [];
    let want: string | null = null;
    for (const w of WRITERS) {
      const out = join(dir, w.name.replace(/[^a-z0-9]+/gi, "-"));
      mkdirSync(out, { recursive: true });
      log(w.name);
      const t0 = performance.now();
      let bytes = 0;
      data.forEach((c, i) => {
        const buf = w.write(c);
        bytes += buf.length;
        writeFileSync(join(out, `${i}.parquet`), buf);
      });
      const seconds = (performance.now() - t0) / 1000;
      const src = `read_parquet('${out}/*.parquet')`;
      const types = (await db.runAndReadAll(`DESCRIBE SELECT * FROM ${src}`)).getRowObjects().map((r) => `${r.column_name} ${r.column_type}`);
      const agg = JSON.stringify((await db.runAndReadAll(`SELECT ${AGG} FROM ${src}`)).getRowObjects(), (_k, v) => (typeof v === "bigint" ? v.toString() : v));
      want ??= agg;
      results.push({ library: w.name, seconds: Math.round(seconds * 1000) / 1000, rowsPerSec: Math.round(rows / seconds), bytes, duckdbTypes: types.join(", "), sameAggregates: agg === want });
    }
    printGrid(
      `Parquet libraries: ${fmtInt(rows)} rows of ~100 bytes, files of ${fmtInt(FILE_ROWS)} rows (one row group), read back by DuckDB`,
      ["library", "rows/s", "size", "DuckDB types", "same aggregates"],
      results.map((r) => [String(r.library), fmtInt(Number(r.rowsPerSec)), fmtMB(Number(r.bytes)), String(r.duckdbTypes), r.sameAggregates ? "yes" : "NO"]),
    );
    return { rows, fileRows: FILE_ROWS, results };
  } finally {
    db.closeSync();
    await cleanup();
  }
}
