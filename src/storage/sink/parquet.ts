/**
 * Parquet through hyparquet-writer (pure JavaScript; the README's design section says why this
 * library): one row group per file, columns typed by the table's value kinds (64-bit integers
 * INT64, reals DOUBLE, text UTF8, blobs BYTE_ARRAY, booleans BOOLEAN, SQLite's untyped columns
 * UTF8), NULLs as nulls, snappy pages, statistics for readers' pruning. Modes 1 and 2 add _op
 * (UTF8), _lsn and _seq (INT64). The key image of the file's last row is kept in the footer's
 * key-value metadata, where a restarted subtask finds where its snapshot stopped.
 */
import { parquetMetadataAsync } from "hyparquet";
import { parquetWriteBuffer } from "hyparquet-writer";
import { open } from "node:fs/promises";
import { SyncError } from "../../errors.js";
import type { ValueKind } from "../repository/types.js";
import { keyOfRow, lastJsonLine } from "../sync.js";
import { sinkRecords } from "./records.js";
import { typedValue, type TypedValue } from "./values.js";
import type { Sink, SinkBatch, SinkTable } from "./types.js";

const LAST_KEY = "ferry.last_key";
/** Files are one row group: the synctool already sizes them (sync.fileBytes). */
const ONE_ROW_GROUP = 1 << 30;

const PARQUET_TYPE = { integer: "INT64", real: "DOUBLE", text: "STRING", any: "STRING", blob: "BYTE_ARRAY", boolean: "BOOLEAN" } as const satisfies Record<ValueKind, string>;

export function parquetSink(table: SinkTable): Sink {
  return {
    format: "parquet",
    ext: "parquet",
    combines: true,
    encode(batch: SinkBatch) {
      const cols: TypedValue[][] = table.columns.map(() => []);
      const ops: string[] = [];
      const lsns: bigint[] = [];
      const seqs: bigint[] = [];
      for (const r of sinkRecords(batch, table)) {
        for (let i = 0; i < cols.length; i++) cols[i].push(typedValue(r.raws[i], table.kinds[i], table.columns[i]));
        if (table.changes) {
          ops.push(r.op);
          lsns.push(BigInt(r.lsn));
          seqs.push(BigInt(r.seq));
        }
      }
      const columnData = table.columns.map((name, i) => ({ name, data: cols[i], type: PARQUET_TYPE[table.kinds[i]] }));
      if (table.changes) {
        columnData.push({ name: "_op", data: ops, type: "STRING" }, { name: "_lsn", data: lsns, type: "INT64" }, { name: "_seq", data: seqs, type: "INT64" });
      }
      const kvMetadata = batch.kind === "snapshot" ? [{ key: LAST_KEY, value: keyOfRow(lastJsonLine(batch.payloads[batch.payloads.length - 1]), table.key) }] : [];
      return new Uint8Array(parquetWriteBuffer({ columnData, codec: "SNAPPY", rowGroupSize: ONE_ROW_GROUP, kvMetadata, createdBy: "ferry" }));
    },
    async lastKey(path) {
      const fh = await open(path, "r");
      try {
        const size = (await fh.stat()).size;
        const file = {
          byteLength: size,
          slice: async (start: number, end = size) => {
            const buf = Buffer.alloc(end - start);
            await fh.read(buf, 0, end - start, start);
            return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
          },
        };
        const meta = await parquetMetadataAsync(file);
        const key = meta.key_value_metadata?.find((kv) => kv.key === LAST_KEY)?.value;
        if (key === undefined) throw new SyncError("INTERNAL", `${path} has no ${LAST_KEY} in its footer`);
        return key;
      } finally {
        await fh.close();
      }
    },
  };
}
