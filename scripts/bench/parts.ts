/**
 * A batch's bytes inside one process (`npm run bench -- parts [--rows N]`), per row of ~130-byte
 * changes, every figure against its baseline measured in the same run:
 *
 *  1. a replica reading spooled batches back (Spool.changesOf: the LevelDB read, the UTF-8 decode
 *     and the JSON parse of each part) with parts of 256 KiB, the old default of
 *     replication.partBytes, against 64 KiB, today's. A part's text past 128 KiB is a string V8
 *     places in its large-object space, allocated (and faulted in) anew for every part;
 *  2. JSON texts joined into one array of UTF-8 bytes (the master's parts, a PostgreSQL
 *     replica's upsert parameter): jsonArrayBytes against joining the strings and encoding the
 *     joined one.
 */
import { openLevel } from "../../src/storage/store.js";
import { Spool } from "../../src/storage/spool.js";
import { packParts, type EncodedChange } from "../../src/storage/repository/parts.js";
import { jsonArrayBytes } from "../../src/storage/repository/json-array.js";
import type { BatchMeta } from "../../src/batch.js";
import { cleanup, tempDir } from "../../test/helpers/procs.js";
import { log, printGrid, round } from "./common.js";

const BATCH_ROWS = 2000;
const RUNS = 3;

function changes(rows: number): EncodedChange[] {
  const out: EncodedChange[] = [];
  for (let i = 0; i < rows; i++) {
    const image = JSON.stringify([i, Math.floor(i / 100), 1764600000.123 + i, `${"x".repeat(70)}${i}`]);
    out.push([i + 1, "I", JSON.stringify(["bench", "I", null, image])]);
  }
  return out;
}

/** µs per row of each run, reading every batch back from a spool written with parts of `partBytes`. */
async function readBack(all: EncodedChange[], partBytes: number): Promise<number[]> {
  const db = await openLevel(tempDir("ferry-bench-parts-"));
  try {
    const spool = new Spool(db);
    await spool.load();
    const metas: BatchMeta[] = [];
    let cum = 0;
    for (let b = 0; b * BATCH_ROWS < all.length; b++) {
      const parts = [...packParts(all.slice(b * BATCH_ROWS, (b + 1) * BATCH_ROWS), partBytes)];
      const bytes = parts.reduce((n, p) => n + p.data.length, 0);
      cum += bytes;
      const meta: BatchMeta = { lsn: b + 1, epoch: 1, ts: 0, parts: parts.length, bytes, cum, firstId: 0, lastId: 0, fp: "", ddl: false };
      metas.push(meta);
      await spool.write(
        parts.map((p, i) => ({ lsn: meta.lsn, part: i, parts: parts.length, data: p.data, meta: i === parts.length - 1 ? meta : undefined })),
        [],
        false,
      );
    }
    const runs: number[] = [];
    for (let r = 0; r < RUNS; r++) {
      let n = 0;
      const t = process.hrtime.bigint();
      for (const m of metas) for (const c of spool.changesOf(m)) n += c.length;
      runs.push(Number(process.hrtime.bigint() - t) / 1e3 / all.length);
      if (n === 0) throw new Error("no change read back");
    }
    return runs;
  } finally {
    await db.close();
  }
}

/** µs per text of each run, joining `texts` into arrays of `per` texts. */
function joined(texts: string[], per: number, join: (t: string[]) => Uint8Array): number[] {
  const runs: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let bytes = 0;
    const t = process.hrtime.bigint();
    for (let i = 0; i < texts.length; i += per) bytes += join(texts.slice(i, i + per)).length;
    runs.push(Number(process.hrtime.bigint() - t) / 1e3 / texts.length);
    if (bytes === 0) throw new Error("nothing joined");
  }
  return runs;
}

export async function run(argv: string[] = []): Promise<object> {
  const at = argv.indexOf("--rows");
  const rows = at >= 0 ? Number(argv[at + 1]) : 400_000;
  const all = changes(rows);
  try {
    log(`spooled batches of ${BATCH_ROWS} rows read back, parts of 256 and 64 KiB, ${rows.toLocaleString("en-US")} rows`);
    const big = await readBack(all, 256 * 1024);
    const small = await readBack(all, 64 * 1024);
    log("JSON texts joined into arrays of 2,048");
    const images = all.map(([, , json]) => (JSON.parse(json) as string[])[3]);
    const viaString = joined(images, 2048, (t) => Buffer.from(`[${t.join(",")}]`));
    const direct = joined(images, 2048, jsonArrayBytes);
    const best = (x: number[]) => Math.min(...x);
    const fmt = (x: number[]) => x.map((v) => v.toFixed(3)).join(" / ");
    printGrid(`A batch's bytes in one process, µs per row (${RUNS} runs each)`, ["measure", "baseline", "now", "now / baseline (best runs)"], [
      ["replica reads spooled batches back (Spool.changesOf): parts of 256 KiB → 64 KiB", fmt(big), fmt(small), `${round(best(small) / best(big), 2)}x`],
      ["JSON texts into one UTF-8 array: join + encode → jsonArrayBytes", fmt(viaString), fmt(direct), `${round(best(direct) / best(viaString), 2)}x`],
    ]);
    return { rows, batchRows: BATCH_ROWS, readBackUs: { parts256KiB: big, parts64KiB: small }, joinUs: { joinThenEncode: viaString, jsonArrayBytes: direct } };
  } finally {
    await cleanup();
  }
}
