/** The sink of a task's format: one line a format. */
import { csvSink } from "./csv.js";
import { jsonlSink } from "./jsonl.js";
import { parquetSink } from "./parquet.js";
import type { Sink, SinkFormat, SinkTable } from "./types.js";

const SINKS: Record<SinkFormat, (table: SinkTable) => Sink> = { jsonl: jsonlSink, csv: csvSink, parquet: parquetSink };

export function openSink(format: SinkFormat, table: SinkTable): Sink {
  return SINKS[format](table);
}

export { SINK_FORMATS, type Sink, type SinkFormat, type SinkTable } from "./types.js";
export { parseFormat } from "./format.js";
