/**
 * JSON Lines: the collector's packs as they are, one file per pack (ferry's first format, and what
 * tasks created before formats existed write). Snapshot rows are JSON objects, one a line, blobs
 * {"$blob": HEX}; change records are {"op","lsn","row"} with "old" for an update that changed the key.
 */
import { open } from "node:fs/promises";
import { keyOfRow } from "../sync.js";
import type { Sink, SinkBatch, SinkTable } from "./types.js";

export function jsonlSink(table: SinkTable): Sink {
  return {
    format: "jsonl",
    ext: "jsonl",
    combines: false,
    encode: (batch: SinkBatch) => (batch.payloads.length === 1 ? batch.payloads[0] : Buffer.concat(batch.payloads)),
    lastKey: async (path) => keyOfRow(await lastLine(path), table.key),
  };
}

/** The last line of a file (without its newline), read from the end. */
async function lastLine(path: string): Promise<string> {
  const fh = await open(path, "r");
  try {
    const size = (await fh.stat()).size;
    for (let want = 64 * 1024; ; want *= 4) {
      const len = Math.min(size, want);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      const end = buf[len - 1] === 10 ? len - 1 : len;
      const nl = buf.lastIndexOf(10, end - 1);
      if (nl >= 0 || len === size) return buf.subarray(nl + 1, end).toString("utf8");
    }
  } finally {
    await fh.close();
  }
}
